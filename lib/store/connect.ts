/** Opens the engine's postgres.js pools. */
import { createHash } from 'node:crypto'
import postgres from 'postgres'

export type Sql = postgres.Sql
export type TransactionSql = postgres.TransactionSql

/** Seconds a connection attempt may take: an unreachable database answers 503 within this. */
export const CONNECT_TIMEOUT_S = 5
/** Longest wait, in seconds, before a closed connection tries again (see reconnectDelay). */
const MAX_RECONNECT_DELAY_S = 0.5

export interface ConnectOptions {
  /**
   * The URL goes through a pooler in transaction mode (PgBouncer's
   * pool_mode = transaction): no named prepared statements, which such a
   * pooler cannot keep across transactions.
   */
  transactionPooling?: boolean
  /** Shown in pg_stat_activity. */
  name?: string
}

export function connect (url: string, poolSize: number, o: ConnectOptions = {}): Sql {
  return postgres(url, {
    max: poolSize,
    prepare: o.transactionPooling !== true,
    onnotice: () => {},
    // Connections that die while Postgres restarts are replaced on next use;
    // a short connect timeout makes an outage surface as a fast 503.
    connect_timeout: CONNECT_TIMEOUT_S,
    backoff: reconnectDelay,
    idle_timeout: 60,
    connection: { application_name: o.name ?? 'fastify-dbos' }
  })
}

/**
 * How long a closed connection waits before it connects again, in seconds,
 * given the pool's count of failed connections since the last success.
 * postgres.js's default grows to 20 s, and every failed connect of every
 * connection in the pool adds to that count: after a 4 s outage under load,
 * queries waited up to 20 s for a connection that the recovered database
 * would have accepted at once. Capped at half a second, with jitter, so that
 * many processes do not reconnect in step.
 */
export function reconnectDelay (retries: number): number {
  return Math.min(0.02 * 2 ** retries, MAX_RECONNECT_DELAY_S) * (0.5 + Math.random() / 2)
}

/**
 * The engine's connections, split four ways out of poolSize:
 * - writes: one connection for step checkpoints and outcomes. Their batcher
 *   keeps one statement in flight, so one connection is all it can use, and
 *   always the same one: a backend that served the previous statement a
 *   moment ago answers the next one faster than one the pool rotated to (one
 *   workflow at a time, about a tenth of each round trip here).
 * - starts: max(1, floor(poolSize / 6)) connections for batched starts (used
 *   while the writer is busy; see Checkpoints#flushStarts).
 * - sql: max(1, floor(poolSize / 5)) connections for reads, claims and
 *   recovery: single statements, which postgres.js pipelines.
 * - transactions: the rest (at least one), used only by sql.begin for
 *   ctx.transaction. Never anything else: postgres.js 3.4 can send a BEGIN
 *   onto a connection whose pipeline it fills without reserving it
 *   (porsager/postgres#823, #1189), which fails the transaction with
 *   UNSAFE_TRANSACTION and runs the pipelined queries inside it. A BEGIN
 *   only meets that state on a connection carrying pipelined queries; in a
 *   pool of nothing but transactions, every connection is idle, connecting,
 *   or reserved by one transaction.
 * Apart from speed, the split means that user transactions holding every
 * connection of their pool can never stall the checkpoints of running
 * workflows, the starts of new ones, or reads.
 */
export interface Pools {
  sql: Sql
  starts: Sql
  writes: Sql
  transactions: Sql
  /** One connection, outside poolSize, for the heartbeat alone: a beat never waits behind other work. */
  heartbeat: Sql
}

export function connectPools (url: string, poolSize: number, o: ConnectOptions = {}): Pools {
  const starts = Math.max(1, Math.floor(poolSize / 6))
  const reads = Math.max(1, Math.floor(poolSize / 5))
  return {
    sql: connect(url, reads, o),
    starts: connect(url, starts, o),
    writes: connect(url, 1, o),
    transactions: connect(url, poolSize - 1 - starts - reads, o),
    heartbeat: connect(url, 1, { ...o, name: 'fastify-dbos heartbeat' })
  }
}

function allPools (pools: Pools): Sql[] {
  return [pools.sql, pools.starts, pools.writes, pools.transactions, pools.heartbeat]
}

/** Opens each pool's first connection (see openPool). */
export async function openPools (pools: Pools): Promise<void> {
  await Promise.all(allPools(pools).map(openPool))
}

export async function endPools (pools: Pools): Promise<void> {
  await Promise.all(allPools(pools).map((sql) => sql.end({ timeout: 5 })))
}

/** Channel names are identifiers (at most 63 bytes): long schema names are hashed down. */
function notifyChannel (kind: string, schema: string): string {
  const channel = `fastify_dbos_${kind}:${schema}`
  return channel.length <= 63 ? channel : `fastify_dbos_${kind}:${createHash('sha256').update(schema).digest('hex').slice(0, 32)}`
}

/**
 * Opens the first connection, which loads Postgres's array types, then stops
 * later connections from loading them again. postgres.js (3.4.x) runs that
 * load without handling its rejection, so a connection that dies during it
 * (any reconnect while Postgres restarts) crashes the process with an
 * unhandled rejection. The types it loaded stay registered for the pool.
 */
export async function openPool (sql: Sql): Promise<void> {
  await sql`SELECT 1`
  sql.options.fetch_types = false
}

/** Identifiers of the engine's tables within its schema, built once. */
export interface Tables {
  schema: string
  workflows: postgres.Helper<string>
  steps: postgres.Helper<string>
  migrations: postgres.Helper<string>
  executors: postgres.Helper<string>
  messages: postgres.Helper<string>
  events: postgres.Helper<string>
  streams: postgres.Helper<string>
  queues: postgres.Helper<string>
  schedules: postgres.Helper<string>
  /** NOTIFY channel on which completions are announced to other processes. */
  channel: string
  /** NOTIFY channel on which an executor announces it stopped: the living adopt its work at once. */
  executorsChannel: string
  /** NOTIFY channel for messages sent: `<owner executor>\n<workflow id>`. */
  messagesChannel: string
  /** NOTIFY channel for events set and stream values written: `<workflow id>\n<key>`. */
  eventsChannel: string
  /** NOTIFY channel for cancellations: `<owner executor>\n<workflow id>`. */
  cancelChannel: string
  /** NOTIFY channel for queues: `<queue name>` when work is enqueued there or one of its slots frees. */
  queueChannel: string
}

export function tables (sql: Sql, schema: string): Tables {
  return {
    schema,
    workflows: sql(`${schema}.workflows`),
    steps: sql(`${schema}.steps`),
    migrations: sql(`${schema}.migrations`),
    executors: sql(`${schema}.executors`),
    messages: sql(`${schema}.messages`),
    events: sql(`${schema}.events`),
    streams: sql(`${schema}.streams`),
    queues: sql(`${schema}.queues`),
    schedules: sql(`${schema}.schedules`),
    channel: notifyChannel('done', schema),
    executorsChannel: notifyChannel('executors', schema),
    messagesChannel: notifyChannel('msg', schema),
    eventsChannel: notifyChannel('events', schema),
    cancelChannel: notifyChannel('cancel', schema),
    queueChannel: notifyChannel('queue', schema)
  }
}

/** True when the database answers a trivial query. */
export async function ping (sql: Sql): Promise<boolean> {
  try {
    await sql`SELECT 1`
    return true
  } catch {
    return false
  }
}
