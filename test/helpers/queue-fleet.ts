/**
 * Several instances of a service with queues and schedules on one schema,
 * each a real child process running test/fixtures/queue-app.js, for the
 * queue, schedule and client tests. What the instances ran is recorded in
 * <schema>.runs: one row per step execution, with its executor and pid, and
 * for the `work` step of `tracked` workflows when it started and ended (by
 * the database's clock), from which the queues' limits are checked.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import postgres from 'postgres'
import type { Test } from 'tap'
import { childEnv, request, spawnFixture, type ChildApp, type Exit, type Line } from '../fixtures/child.js'
import { databaseUrl, pollUntil, uniqueSchema } from './db.js'

export interface RunRow {
  seq: number
  workflow_id: string
  step: string
  executor: string
  pid: number
  partition_key: string | null
  tag: string | null
  started_at: Date
  ended_at: Date | null
}

export interface QueuedRow {
  workflow_id: string
  name: string
  status: string
  executor_id: string
  attempts: number
  queue_name: string | null
  partition_key: string | null
  priority: number | null
  created_at: Date
  dequeued_at: Date | null
  visible_at: Date | null
  completed_at: Date | null
  output: string | null
}

export interface QueueSpec { name: string, concurrency?: number, workerConcurrency?: number, rateLimit?: { limit: number, periodMs: number }, partitioned?: boolean }
export interface ScheduleSpec { name: string, cron: string, missed?: 'skip' | 'backfill', queue?: string }

export interface QueueInstance {
  readonly child: ChildApp
  readonly port: number
  readonly executorId: string
  readonly pid: number
  enqueue (queue: string, name: string, input: unknown, options?: Record<string, unknown>): Promise<string>
  /** Enqueues one after the other, in order, in one request. */
  enqueueMany (queue: string, name: string, items: { input: unknown, options?: Record<string, unknown> }[]): Promise<string[]>
  get (url: string): Promise<{ status: number, body: any }>
  events (event: string, match?: (line: Line) => boolean): Line[]
  kill (): Promise<Exit>
  /** SIGTERM; resolves once the process exited. */
  stop (): Promise<Exit>
}

export interface QueueFleet {
  readonly schema: string
  readonly url: string
  readonly gateDir: string
  readonly sql: postgres.Sql
  /** Spawns an instance with the fleet's environment plus `env`, and waits until it serves. */
  launch (env?: Record<string, string | undefined>): Promise<QueueInstance>
  openGate (name: string): Promise<void>
  runs (): Promise<RunRow[]>
  workflows (): Promise<QueuedRow[]>
  /** Waits until every one of `ids` exists and is neither ENQUEUED nor PENDING; returns their rows. */
  finished (ids: string[], timeoutMs?: number): Promise<QueuedRow[]>
  /** The database's clock, in ms since the epoch. */
  now (): Promise<number>
}

/**
 * A fresh schema with the runs table, and a directory for gate files; every
 * instance gets `env` (QUEUES, SCHEDULES, ... see the fixture). At teardown
 * every instance is killed, then the schema dropped (their logs are kept
 * when the test failed).
 */
export async function queueFleet (t: Test, { env: common = {} }: { env?: Record<string, string | undefined> } = {}): Promise<QueueFleet> {
  const schema = uniqueSchema('qfleet')
  const gateDir = await mkdtemp(path.join(tmpdir(), 'fastify-dbos-qfleet-'))
  const sql = postgres(databaseUrl, { max: 3, onnotice: () => {} })
  const children: ChildApp[] = []
  await sql`CREATE SCHEMA ${sql(schema)}`
  await sql`CREATE TABLE ${sql(`${schema}.runs`)} (
    seq bigserial PRIMARY KEY, workflow_id text NOT NULL, step text NOT NULL, executor text NOT NULL, pid int NOT NULL,
    token uuid NOT NULL UNIQUE, partition_key text, tag text,
    started_at timestamptz NOT NULL DEFAULT clock_timestamp(), ended_at timestamptz)`
  t.teardown(async () => {
    await Promise.all(children.map((c) => c.kill()))
    if (!t.passing() || process.env.TEST_KEEP_LOGS === '1') {
      for (const [i, c] of children.entries()) {
        const file = path.join(tmpdir(), `${schema}-${i}-${c.process.pid}.log`)
        await writeFile(file, [...c.lines.map((l) => JSON.stringify(l)), ...c.stderr].join('\n'))
        t.comment(`instance log: ${file}`)
      }
    }
    await sql`DROP SCHEMA IF EXISTS ${sql(schema)} CASCADE`.catch(() => {})
    await sql.end({ timeout: 5 })
    await rm(gateDir, { recursive: true, force: true })
  })
  const launch = async (env: Record<string, string | undefined> = {}): Promise<QueueInstance> => {
    const child = spawnFixture(t, './queue-app.js', childEnv({
      DATABASE_URL: databaseUrl, SCHEMA: schema, GATE_DIR: gateDir, DBOS_EXECUTOR_ID: undefined, ...common, ...env
    }))
    children.push(child)
    const ready = await child.waitForLine((l) => l.fixture === 'listening' || l.fixture === 'error', 'the instance to listen', 30_000)
    if (ready.fixture === 'error') throw new Error(`the instance did not start: ${ready.code} ${ready.message}`)
    return instance(child, ready)
  }
  const workflows = async (): Promise<QueuedRow[]> => sql<QueuedRow[]>`
    SELECT workflow_id, name, status, executor_id, attempts, queue_name, partition_key, priority, created_at, dequeued_at,
           visible_at, completed_at, output
    FROM ${sql(`${schema}.workflows`)} ORDER BY queue_seq NULLS LAST, workflow_id`
  return {
    schema,
    url: databaseUrl,
    gateDir,
    sql,
    launch,
    openGate: (name) => writeFile(path.join(gateDir, name), ''),
    runs: async () => sql<RunRow[]>`SELECT * FROM ${sql(`${schema}.runs`)} ORDER BY seq`,
    workflows,
    finished: async (ids, timeoutMs = 60_000) => {
      let rows: QueuedRow[] = []
      const wanted = new Set(ids)
      await pollUntil(async () => {
        rows = (await workflows()).filter((r) => wanted.has(r.workflow_id))
        return rows.length === ids.length && rows.every((r) => r.status !== 'PENDING' && r.status !== 'ENQUEUED')
      }, { timeoutMs, intervalMs: 100, what: `${ids.length} workflows to finish` }).catch((err) => {
        const open = rows.filter((r) => r.status === 'PENDING' || r.status === 'ENQUEUED')
        throw new Error(`${err.message}: ${rows.length} found, ${open.length} not finished, e.g. ${JSON.stringify(open.slice(0, 3))}`)
      })
      return rows
    },
    now: async () => {
      const [{ now }] = await sql<{ now: number }[]>`SELECT (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS now`
      return now
    }
  }
}

function instance (child: ChildApp, ready: Line): QueueInstance {
  const port = ready.port as number
  const ok = (what: string, res: { status: number, body: any }): any => {
    if (res.status !== 200) throw new Error(`${what} answered ${res.status}: ${JSON.stringify(res.body)}`)
    return res.body
  }
  return {
    child,
    port,
    executorId: ready.executorId,
    pid: ready.pid,
    enqueue: async (queue, name, input, options) =>
      ok(`enqueue ${name}`, await request(port, 'POST', '/enqueue', { queue, name, input, options })).workflowId,
    enqueueMany: async (queue, name, items) =>
      ok(`enqueue-many ${name}`, await request(port, 'POST', '/enqueue-many', { queue, name, items })).workflowIds,
    get: (url) => request(port, 'GET', url),
    events: (event, match) => child.lines.filter((l) => l.event === event && (match === undefined || match(l))),
    kill: () => child.kill(),
    stop: async () => {
      if (child.exit === undefined) process.kill(child.process.pid!, 'SIGTERM')
      return child.exited
    }
  }
}

export interface Interval { start: number, end: number }

/**
 * The most intervals open at one instant. An interval that ends exactly when
 * another starts does not overlap it (the slot was handed over).
 */
export function maxOverlap (intervals: Interval[]): number {
  const edges = intervals.flatMap((i) => [{ at: i.start, d: 1 }, { at: i.end, d: -1 }])
  // Ends before starts at the same instant.
  edges.sort((a, b) => a.at - b.at || a.d - b.d)
  let open = 0
  let most = 0
  for (const e of edges) {
    open += e.d
    most = Math.max(most, open)
  }
  return most
}

/** The most of `times` (ms) within any window (x - periodMs, x]. */
export function maxInWindow (times: number[], periodMs: number): number {
  const sorted = [...times].sort((a, b) => a - b)
  let most = 0
  let first = 0
  for (let i = 0; i < sorted.length; i++) {
    while (sorted[first]! <= sorted[i]! - periodMs) first++
    most = Math.max(most, i - first + 1)
  }
  return most
}

/** The `work` intervals of these runs; a run that never ended (its process was killed) ends at `openUntil`. */
export function workIntervals (runs: RunRow[], openUntil = Infinity): (Interval & RunRow)[] {
  return runs.filter((r) => r.step === 'work').map((r) => ({ ...r, start: r.started_at.getTime(), end: r.ended_at?.getTime() ?? openUntil }))
}

/** Groups by a key. */
export function groupBy<T> (rows: T[], key: (row: T) => string): Map<string, T[]> {
  const out = new Map<string, T[]>()
  for (const row of rows) {
    const k = key(row)
    const list = out.get(k) ?? []
    list.push(row)
    out.set(k, list)
  }
  return out
}
