/**
 * SQL for moving PENDING workflows between executors: adoption of a dead
 * executor's work by a live one, hand-offs on purpose, and the ownership
 * check a process makes after it was silent for longer than its lease.
 */
import type { Sql, Tables } from './connect.js'
import { UNOWNED } from './executors.js'

export interface AdoptionScope {
  /** The adopter's executor id. */
  executorId: string
  /** Definitions the adopter has: nothing it cannot run is taken. */
  names: string[]
  /** The adopter's appVersion: it takes only workflows of that version (NULL: unpinned ones). */
  appVersion: string | null
  /** Most workflows this statement takes. */
  limit: number
}

/**
 * How much of the dead executors' PENDING work there is, and how many live
 * executors share it: an adopter's share is orphans / live (rounded up).
 */
export async function adoptionShare (sql: Sql, t: Tables, dead: string[]): Promise<{ orphans: number, live: number }> {
  const [row] = await sql<{ orphans: number, live: number }[]>`
    SELECT (SELECT count(*)::int FROM ${t.workflows} WHERE executor_id = ANY(${dead}::text[]) AND status = 'PENDING') AS orphans,
           (SELECT count(*)::int FROM ${t.executors}
            WHERE stopped_at IS NULL AND heartbeat_at >= clock_timestamp() - lease_ms * interval '1 millisecond') AS live`
  return row!
}

/**
 * Makes this executor the owner of a batch of PENDING workflows whose owner
 * is dead (stopped, silent past its lease, unknown) or that were handed off
 * (UNOWNED). Only workflows it can run: its definitions, its app version.
 * The epoch is bumped in the same statement, which fences off anything the
 * old owner (a zombie) still tries to write. attempts is left alone: the run
 * that resumes the workflow counts it, as a recovery (see recovery.ts);
 * sleeping workflows keep their wake_at and wake on the new owner.
 *
 * Spread: the caller takes at most its share (adoptionShare) in one pass,
 * so that the living share the work instead of the first one to look taking
 * everything.
 *
 * Concurrency: the candidates are locked FOR UPDATE SKIP LOCKED. The lock
 * re-checks the conditions on the row's latest version, so a workflow another
 * adopter took a moment ago (its owner is no longer dead) is not taken again,
 * and adopters never wait on each other. Exactly one adopter per workflow.
 */
export async function adoptWorkflows (sql: Sql, t: Tables, dead: string[], scope: AdoptionScope): Promise<number> {
  const rows = await sql`
    WITH candidates AS (
      SELECT w.workflow_id FROM ${t.workflows} w
      WHERE w.executor_id = ANY(${dead}::text[]) AND w.status = 'PENDING'
        AND w.name = ANY(${scope.names}::text[]) AND w.app_version IS NOT DISTINCT FROM ${scope.appVersion}::text
        AND NOT EXISTS (
          SELECT 1 FROM ${t.executors} e
          WHERE e.executor_id = w.executor_id AND e.stopped_at IS NULL
            AND e.heartbeat_at >= clock_timestamp() - e.lease_ms * interval '1 millisecond')
      ORDER BY w.created_at
      LIMIT ${scope.limit}
      FOR UPDATE OF w SKIP LOCKED)
    UPDATE ${t.workflows} w
    SET executor_id = ${scope.executorId}, epoch = w.epoch + 1, updated_at = now()
    FROM candidates c
    WHERE w.workflow_id = c.workflow_id
    RETURNING w.workflow_id`
  return rows.length
}

/**
 * Of this executor's runs here, those whose workflow is no longer theirs:
 * another executor owns it now, or a newer epoch, or it is no longer
 * PENDING. A process that was silent for longer than its lease asks this,
 * and stops those runs at once. A run whose workflow has no row yet (its
 * start is carried by its first checkpoint, writes/opening.ts) is not among
 * them: nobody else can know of that workflow.
 */
export async function lostRuns (sql: Sql, t: Tables, executorId: string, runs: { workflowId: string, epoch: string }[]): Promise<{ workflowId: string, epoch: string }[]> {
  if (runs.length === 0) return []
  const rows = await sql<{ workflow_id: string, epoch: string }[]>`
    SELECT w.workflow_id, v.epoch::text AS epoch FROM ${t.workflows} w
    JOIN unnest(${runs.map((r) => r.workflowId)}::text[], ${runs.map((r) => r.epoch)}::bigint[]) AS v(workflow_id, epoch)
      ON v.workflow_id = w.workflow_id
    WHERE NOT (w.executor_id = ${executorId} AND w.epoch = v.epoch AND w.status = 'PENDING')`
  return rows.map((r) => ({ workflowId: r.workflow_id, epoch: r.epoch }))
}

/**
 * Hands this executor's PENDING workflows of other app versions to whichever
 * live instance runs that version (they become UNOWNED, with a new epoch).
 * A pinned instance does this at start: after a deploy, its own old-version
 * work must not wait for it.
 */
export async function handOffOtherVersions (sql: Sql, t: Tables, executorId: string, appVersion: string | null): Promise<number> {
  const rows = await sql`
    UPDATE ${t.workflows}
    SET executor_id = ${UNOWNED}, epoch = epoch + 1, updated_at = now()
    WHERE executor_id = ${executorId} AND status = 'PENDING' AND app_version IS DISTINCT FROM ${appVersion}::text
    RETURNING 1`
  return rows.length
}

/**
 * Moves one PENDING workflow to another app version on purpose: it becomes
 * UNOWNED with a new epoch (its current run, if any, is fenced off), for a
 * live instance of that version to adopt. False if there is no such PENDING
 * workflow.
 */
export async function setAppVersion (sql: Sql, t: Tables, workflowId: string, appVersion: string | null): Promise<boolean> {
  const rows = await sql`
    UPDATE ${t.workflows}
    SET app_version = ${appVersion}::text, executor_id = ${UNOWNED}, epoch = epoch + 1, updated_at = now()
    WHERE workflow_id = ${workflowId} AND status = 'PENDING'
    RETURNING 1`
  return rows.length === 1
}
