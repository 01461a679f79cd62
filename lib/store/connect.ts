/** Opens the engine's postgres.js pools. */
import { createHash } from 'node:crypto'
import postgres from 'postgres'

export type Sql = postgres.Sql
export type TransactionSql = postgres.TransactionSql

export function connect (url: string, poolSize: number): Sql {
  return postgres(url, {
    max: poolSize,
    onnotice: () => {},
    // Connections that die while Postgres restarts are replaced on next use;
    // a short connect timeout makes an outage surface as a fast 503.
    connect_timeout: 5,
    idle_timeout: 60,
    connection: { application_name: 'fastify-dbos' }
  })
}

/**
 * The engine's connections, split three ways out of poolSize:
 * - writes: one connection for step checkpoints and outcomes. Their batcher
 *   keeps one statement in flight, so one connection is all it can use, and
 *   always the same one: a backend that served the previous statement a
 *   moment ago answers the next one faster than one the pool rotated to (one
 *   workflow at a time, about a tenth of each round trip here).
 * - starts: max(1, floor(poolSize / 6)) connections for batched starts (used
 *   while the writer is busy; see Checkpoints#flushStarts).
 * - sql: the rest (at least one) for user transactions, reads and recovery.
 * Apart from speed, the split means that user transactions holding every
 * connection of their pool can never stall the checkpoints of running
 * workflows or the starts of new ones.
 */
export interface Pools {
  sql: Sql
  starts: Sql
  writes: Sql
}

export const MIN_POOL_SIZE = 3

export function connectPools (url: string, poolSize: number): Pools {
  const starts = Math.max(1, Math.floor(poolSize / 6))
  return { sql: connect(url, poolSize - 1 - starts), starts: connect(url, starts), writes: connect(url, 1) }
}

/** Opens each pool's first connection (see openPool). */
export async function openPools (pools: Pools): Promise<void> {
  await Promise.all([openPool(pools.sql), openPool(pools.starts), openPool(pools.writes)])
}

export async function endPools (pools: Pools): Promise<void> {
  await Promise.all([pools.sql.end({ timeout: 5 }), pools.starts.end({ timeout: 5 }), pools.writes.end({ timeout: 5 })])
}

/** Channel names are identifiers (at most 63 bytes): hash long schema names down. */
function notifyChannel (schema: string): string {
  const channel = `fastify_dbos_done:${schema}`
  return channel.length <= 63 ? channel : `fastify_dbos_done:${createHash('sha256').update(schema).digest('hex').slice(0, 32)}`
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
  /** NOTIFY channel on which completions are announced to other processes. */
  channel: string
}

export function tables (sql: Sql, schema: string): Tables {
  return {
    schema,
    workflows: sql(`${schema}.workflows`),
    steps: sql(`${schema}.steps`),
    migrations: sql(`${schema}.migrations`),
    channel: notifyChannel(schema)
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
