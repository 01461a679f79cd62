/** SQL for managing workflows from outside their runs: cancel, resume, fork, retention. */
import type { Sql, Tables } from './connect.js'
import { UNIQUE_VIOLATION } from './pg-errors.js'

/**
 * Cancels a workflow and its descendants (ctx.startChild) that are not
 * finished: status CANCELLED, so that their runs' next writes match nothing;
 * announced to their owners (cancel channel, `<owner>\n<id>\n<timeout|cancel>`: stop the runs now) and to
 * result waiters (done channel). `error` is stored for the workflow itself
 * (say, its timeout); descendants get none, which reads as
 * DBOS_ERR_WORKFLOW_CANCELLED. Returns the ids cancelled, or null when there
 * is no such workflow.
 */
export async function cancelTree (sql: Sql, t: Tables, workflowId: string, error: string | null, epoch: string | null = null): Promise<CancelledRun[] | null> {
  const rows = await sql<{ workflow_id: string | null, epoch: string | null }[]>`
    WITH RECURSIVE tree (workflow_id) AS (
      SELECT workflow_id FROM ${t.workflows} WHERE workflow_id = ${workflowId} AND (${epoch}::bigint IS NULL OR epoch = ${epoch}::bigint)
      UNION
      SELECT w.workflow_id FROM ${t.workflows} w JOIN tree ON w.parent_id = tree.workflow_id),
    done AS (
      UPDATE ${t.workflows} w
      SET status = 'CANCELLED', output = NULL, error = CASE WHEN w.workflow_id = ${workflowId} THEN ${error}::text END,
          completed_at = now(), updated_at = now(), wake_at = NULL, waiting_topic = NULL
      FROM tree WHERE w.workflow_id = tree.workflow_id AND w.status IN ('PENDING', 'ENQUEUED')
      RETURNING w.workflow_id, w.executor_id, w.queue_name, w.epoch),
    note AS (
      SELECT d.workflow_id, d.epoch::text AS epoch,
             pg_notify(${t.cancelChannel}, d.executor_id || E'\\n' || d.workflow_id
               || CASE WHEN d.workflow_id = ${workflowId} AND ${error}::text IS NOT NULL THEN E'\\ntimeout' ELSE E'\\ncancel' END
               || E'\\n' || d.epoch::text),
             pg_notify(${t.channel}, d.workflow_id),
             -- A queued workflow's slot is free.
             CASE WHEN d.queue_name IS NOT NULL THEN pg_notify(${t.queueChannel}, d.queue_name) END
      FROM done d)
    SELECT workflow_id, epoch FROM note
    UNION ALL
    SELECT NULL, NULL WHERE EXISTS (SELECT 1 FROM tree)`
  if (rows.length === 0) return null
  return rows.flatMap((r) => r.workflow_id === null ? [] : [{ workflowId: r.workflow_id, epoch: r.epoch! }])
}

/** A workflow cancelled, with the epoch of the run it stopped: a later run (after a resume) is not that one. */
export interface CancelledRun { workflowId: string, epoch: string }

/** 'enqueued': back on its queue (it was a queued workflow), for a dispatcher to take within the queue's limits. 'deduplicated': back on its queue it would share its deduplication id with another workflow waiting or running there. */
export type ResumeResult = 'resumed' | 'enqueued' | 'running' | 'succeeded' | 'not-found' | { deduplicated: { queue: string, deduplicationId: string } }

/**
 * Makes a CANCELLED, ERROR or MAX_RECOVERY_ATTEMPTS_EXCEEDED workflow
 * PENDING again, owned by `owner`, with a new epoch and no timeout, so that
 * it continues from its last step that completed without an error: the
 * first step recorded with an error and everything after it are forgotten
 * (messages those steps consumed are unconsumed, events they set dropped),
 * so they run again. A queued workflow goes back on its queue instead
 * (ENQUEUED, nobody's), so that its queue's limits hold for it as for the
 * others. In one transaction: the workflow row is locked first. `sql` must
 * be a pool that carries nothing but transactions (see Pools).
 */
export async function reopen (sql: Sql, t: Tables, workflowId: string, owner: string): Promise<ResumeResult> {
  return sql.begin(async (tx) => {
    const [w] = await tx<{ status: string, queue_name: string | null, deduplication_id: string | null }[]>`
      SELECT status, queue_name, deduplication_id FROM ${t.workflows} WHERE workflow_id = ${workflowId} FOR UPDATE`
    if (w === undefined) return 'not-found'
    if (w.status === 'PENDING' || w.status === 'ENQUEUED') return 'running'
    if (w.status === 'SUCCESS') return 'succeeded'
    const [first] = await tx<{ step: number | null }[]>`
      SELECT min(step_id) AS step FROM ${t.steps} WHERE workflow_id = ${workflowId} AND error IS NOT NULL`
    if (first!.step !== null) {
      await tx`DELETE FROM ${t.steps} WHERE workflow_id = ${workflowId} AND step_id >= ${first!.step}`
      await tx`UPDATE ${t.messages} SET consumed_step = NULL WHERE workflow_id = ${workflowId} AND consumed_step >= ${first!.step}`
      await tx`DELETE FROM ${t.events} WHERE workflow_id = ${workflowId} AND step_id >= ${first!.step}`
      await tx`DELETE FROM ${t.streams} WHERE workflow_id = ${workflowId} AND step_id >= ${first!.step}`
    }
    if (w.queue_name !== null) {
      try {
        await tx.savepoint((sp) => sp`
          UPDATE ${t.workflows}
          -- attempts 1, as a new enqueue: a dispatch counts none (its run is the first).
          SET status = 'ENQUEUED', output = NULL, error = NULL, completed_at = NULL, attempts = 1, epoch = epoch + 1,
              executor_id = '', deadline_at = NULL, wake_at = NULL, waiting_topic = NULL, updated_at = now(),
              queue_seq = nextval(${t.schema + '.queue_seq'}), visible_at = clock_timestamp(), dequeued_at = NULL,
              debounce_key = NULL
          WHERE workflow_id = ${workflowId}`)
      } catch (err) {
        if ((err as { code?: unknown }).code === UNIQUE_VIOLATION) return { deduplicated: { queue: w.queue_name, deduplicationId: w.deduplication_id ?? '' } }
        throw err
      }
      await tx`SELECT pg_notify(${t.queueChannel}, ${w.queue_name})`
      return 'enqueued'
    }
    await tx`
      UPDATE ${t.workflows}
      SET status = 'PENDING', output = NULL, error = NULL, completed_at = NULL, attempts = 0, epoch = epoch + 1,
          executor_id = ${owner}, deadline_at = NULL, wake_at = NULL, waiting_topic = NULL, updated_at = now()
      WHERE workflow_id = ${workflowId}`
    return 'resumed'
  }) as Promise<ResumeResult>
}

/** 'enqueued': forked from a queued workflow, the fork waits on the same queue (within its limits). */
export type ForkResult = 'forked' | 'enqueued' | 'exists' | 'source-not-found' | { invalidStep: number }

/**
 * A new PENDING workflow `newId` with the definition and input of `sourceId`
 * and copies of its steps before `fromStep` (with the events and stream
 * values those steps wrote), owned by `owner`: run, it replays those and runs
 * the rest. `fromStep` may be at most one past the source's last recorded
 * step. One transaction; `sql` carries nothing but transactions.
 */
export async function fork (sql: Sql, t: Tables, f: { sourceId: string, newId: string, fromStep: number, owner: string, appVersion: string | null }): Promise<ForkResult> {
  return sql.begin(async (tx) => {
    const [source] = await tx<{ name: string, queue_name: string | null }[]>`SELECT name, queue_name FROM ${t.workflows} WHERE workflow_id = ${f.sourceId}`
    if (source === undefined) return 'source-not-found'
    const [last] = await tx<{ step: number | null }[]>`SELECT max(step_id) AS step FROM ${t.steps} WHERE workflow_id = ${f.sourceId}`
    const limit = (last!.step ?? -1) + 1
    if (f.fromStep > limit) return { invalidStep: limit }
    // attempts 0: the claim that runs it counts the first; queued, 1, as a new
    // enqueue (a dispatch counts none). A fork of a queued workflow waits on
    // its queue (no deduplication id: it is another workflow).
    const queued = source.queue_name !== null
    const inserted = await tx`
      INSERT INTO ${t.workflows} (workflow_id, name, status, input, input_hash, request_id, executor_id, app_version, epoch, attempts,
                                  queue_name, priority, queue_seq, visible_at, partition_key, timeout_ms)
      SELECT ${f.newId}, name, ${queued ? 'ENQUEUED' : 'PENDING'}, input, input_hash, request_id, ${queued ? '' : f.owner}, ${f.appVersion}::text, 1, ${queued ? 1 : 0},
             queue_name, priority, CASE WHEN ${queued} THEN nextval(${t.schema + '.queue_seq'}) END,
             CASE WHEN ${queued} THEN clock_timestamp() END, partition_key, timeout_ms
      FROM ${t.workflows} WHERE workflow_id = ${f.sourceId}
      ON CONFLICT (workflow_id) DO NOTHING
      RETURNING 1`
    if (inserted.length === 0) return 'exists'
    await tx`
      INSERT INTO ${t.steps} (workflow_id, step_id, name, output, error, started_at, created_at)
      SELECT ${f.newId}, step_id, name, output, error, started_at, created_at FROM ${t.steps}
      WHERE workflow_id = ${f.sourceId} AND step_id < ${f.fromStep}`
    await tx`
      INSERT INTO ${t.events} (workflow_id, key, step_id, value, created_at)
      SELECT ${f.newId}, key, step_id, value, created_at FROM ${t.events}
      WHERE workflow_id = ${f.sourceId} AND step_id < ${f.fromStep}`
    await tx`
      INSERT INTO ${t.streams} (workflow_id, key, "offset", step_id, value, closed, created_at)
      SELECT ${f.newId}, key, "offset", step_id, value, closed, created_at FROM ${t.streams}
      WHERE workflow_id = ${f.sourceId} AND step_id < ${f.fromStep}`
    if (!queued) return 'forked'
    await tx`SELECT pg_notify(${t.queueChannel}, ${source.queue_name})`
    return 'enqueued'
  }) as Promise<ForkResult>
}

/**
 * Deletes up to `limit` workflows that finished more than `olderThanMs` ago
 * (never a PENDING or queued one), with their steps, messages, events and
 * stream values. One statement per batch, rows locked SKIP LOCKED: no long
 * locks, and two deleters never wait on each other. Returns how many.
 */
export async function deleteFinished (sql: Sql, t: Tables, olderThanMs: number, limit: number): Promise<number> {
  const rows = await sql`
    WITH doomed AS (
      SELECT workflow_id FROM ${t.workflows}
      WHERE completed_at < clock_timestamp() - ${olderThanMs}::float8 * interval '1 millisecond'
        AND status NOT IN ('PENDING', 'ENQUEUED')
      ORDER BY completed_at
      LIMIT ${limit}
      FOR UPDATE SKIP LOCKED),
    s AS (DELETE FROM ${t.steps} WHERE workflow_id IN (SELECT workflow_id FROM doomed)),
    m AS (DELETE FROM ${t.messages} WHERE workflow_id IN (SELECT workflow_id FROM doomed)),
    e AS (DELETE FROM ${t.events} WHERE workflow_id IN (SELECT workflow_id FROM doomed)),
    v AS (DELETE FROM ${t.streams} WHERE workflow_id IN (SELECT workflow_id FROM doomed))
    DELETE FROM ${t.workflows} WHERE workflow_id IN (SELECT workflow_id FROM doomed)
    RETURNING 1`
  return rows.length
}
