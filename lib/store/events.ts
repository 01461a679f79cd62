/** SQL for events (ctx.setEvent / getEvent) and streams (ctx.writeStream / readStream). */
import type { Sql, Tables } from './connect.js'
import { ownerOf, type DirectWrite, type StepOfWrite } from './owner.js'

/**
 * ctx.setEvent: the event row and its step's checkpoint in one statement,
 * only while the workflow is the run's, and announced on the events channel.
 * Keyed by the step, so a replay writes nothing twice.
 */
export async function setEvent (sql: Sql, t: Tables, s: StepOfWrite, key: string, value: string): Promise<DirectWrite> {
  return publish(sql, t, s, key, sql`
    INSERT INTO ${t.events} (workflow_id, key, step_id, value)
    SELECT ${s.workflowId}, ${key}, ${s.stepId}, ${value} FROM owner
    ON CONFLICT (workflow_id, step_id) DO NOTHING
    RETURNING 1`)
}

/**
 * A published value (`insert`, which selects FROM owner) and its step's
 * checkpoint in one statement, only while the workflow is the run's, then
 * announced on the events channel (getEvent and readStream waiters).
 */
async function publish (sql: Sql, t: Tables, s: StepOfWrite, key: string, insert: ReturnType<Sql>): Promise<DirectWrite> {
  const [row] = await sql<{ owned: boolean, written: boolean }[]>`
    WITH owner AS (${ownerOf(sql, t, s.workflowId, s.epoch)}),
    published AS (${insert}),
    step AS (
      INSERT INTO ${t.steps} (workflow_id, step_id, name, output, error, started_at)
      SELECT ${s.workflowId}, ${s.stepId}, ${s.name}, ${s.output}, NULL, ${s.startedAt} FROM owner
      ON CONFLICT (workflow_id, step_id) DO NOTHING
      RETURNING 1),
    note AS (SELECT pg_notify(${t.eventsChannel}, ${s.workflowId} || E'\\n' || ${key}) FROM published)
    SELECT EXISTS (SELECT 1 FROM owner) AS owned, (SELECT count(*) FROM step) + (SELECT count(*) FROM note) > 0 AS written`
  return !row!.owned ? 'fenced' : row!.written ? 'written' : 'recorded'
}

/** The latest value of event `key`, and the workflow's status (null when there is no such workflow). */
export async function getEvent (sql: Sql, t: Tables, workflowId: string, key: string): Promise<{ status: string | null, value: string | null }> {
  const [row] = await sql<{ status: string | null, value: string | null }[]>`
    SELECT (SELECT status FROM ${t.workflows} WHERE workflow_id = ${workflowId}) AS status,
           (SELECT value FROM ${t.events} WHERE workflow_id = ${workflowId} AND key = ${key} ORDER BY step_id DESC LIMIT 1) AS value`
  return row!
}

export interface EventRow { key: string, step_id: number, value: string, created_at: Date }

/** Every event a workflow set, in the order it set them. */
export async function listEvents (sql: Sql, t: Tables, workflowId: string): Promise<EventRow[]> {
  return sql<EventRow[]>`
    SELECT key, step_id, value, created_at FROM ${t.events} WHERE workflow_id = ${workflowId} ORDER BY step_id`
}

/**
 * ctx.writeStream / closeStream: the value at `offset` (closed: the last row)
 * and its step's checkpoint in one statement, as setEvent.
 */
export async function writeStream (sql: Sql, t: Tables, s: StepOfWrite, key: string, offset: number, value: string | null, closed: boolean): Promise<DirectWrite> {
  return publish(sql, t, s, key, sql`
    INSERT INTO ${t.streams} (workflow_id, key, "offset", step_id, value, closed)
    SELECT ${s.workflowId}, ${key}, ${offset}, ${s.stepId}, ${value}::text, ${closed} FROM owner
    ON CONFLICT (workflow_id, key, "offset") DO NOTHING
    RETURNING 1`)
}

export interface StreamRow { offset: number, value: string | null, closed: boolean }

/** Values of a stream from `from` on, at most `limit`, with the workflow's status (null: no such workflow). */
export async function readStream (sql: Sql, t: Tables, workflowId: string, key: string, from: number, limit: number): Promise<{ status: string | null, rows: StreamRow[] }> {
  // The status first: a workflow finished by then has written all its
  // values, which the second statement's newer snapshot then sees.
  const [w] = await sql<{ status: string }[]>`SELECT status FROM ${t.workflows} WHERE workflow_id = ${workflowId}`
  const rows = await sql<StreamRow[]>`
    SELECT "offset", value, closed FROM ${t.streams}
    WHERE workflow_id = ${workflowId} AND key = ${key} AND "offset" >= ${from}
    ORDER BY "offset" LIMIT ${limit}`
  return { status: w?.status ?? null, rows }
}
