/**
 * SQL for suspended workflows: a long ctx.sleep records its wake-up time in
 * workflows.wake_at, and the wake-up scheduler claims the due ones. The
 * database is the only list of sleeping workflows; nothing is kept in memory.
 */
import type { Sql, Tables } from './connect.js'
import type { ClaimedRow, Suspension } from './rows.js'

/**
 * Marks running workflows suspended until their `wakeAt`; returns the ids
 * written. Fenced like every write of a run: a workflow no longer PENDING
 * under its `epoch` (a newer run owns it) is left alone and not returned. The
 * UPDATE locks each row and re-checks the epoch, so it cannot interleave with
 * a claim. One row (one workflow at a time) uses plain parameters, many use
 * unnest, as the checkpoint writes do.
 */
export async function suspendWorkflows (sql: Sql, t: Tables, rows: Suspension[]): Promise<Set<string>> {
  const written = rows.length === 1
    ? await sql<{ workflow_id: string }[]>`
      UPDATE ${t.workflows} SET wake_at = least(${rows[0]!.wakeAt}::timestamptz, deadline_at), updated_at = now()
      WHERE workflow_id = ${rows[0]!.workflowId} AND epoch = ${rows[0]!.epoch}::bigint AND status = 'PENDING'
      RETURNING workflow_id`
    : await sql<{ workflow_id: string }[]>`
      UPDATE ${t.workflows} AS w SET wake_at = least(v.wake_at, w.deadline_at), updated_at = now()
      FROM unnest(${rows.map((r) => r.workflowId)}::text[], ${rows.map((r) => r.epoch)}::bigint[],
                  ${rows.map((r) => r.wakeAt.toISOString())}::timestamptz[]) AS v(workflow_id, epoch, wake_at)
      WHERE w.workflow_id = v.workflow_id AND w.epoch = v.epoch AND w.status = 'PENDING'
      RETURNING w.workflow_id`
  return new Set(written.map((r) => r.workflow_id))
}

/**
 * Claims up to `limit` of an executor's suspended workflows whose wake-up time
 * has come by the database's clock, of the caller's app version and whose
 * definition the caller has (`names`), earliest first: a new epoch (which
 * fences off anything still holding the old one) and wake_at cleared, so the
 * woken run owns a plain PENDING workflow. `attempts` is left alone: it counts
 * recoveries after crashes, and a wake-up is not one.
 * Concurrency: FOR UPDATE SKIP LOCKED locks the chosen rows (re-checking the
 * conditions on their latest version) and passes over rows another
 * transaction holds, so two claimers never take one workflow and never wait on
 * each other; a skipped row is claimed by a later pass.
 */
export async function claimDue (sql: Sql, t: Tables, executorId: string, appVersion: string | null, names: string[], limit: number): Promise<ClaimedRow[]> {
  return sql<ClaimedRow[]>`
    UPDATE ${t.workflows}
    SET epoch = epoch + 1, wake_at = NULL, waiting_topic = NULL, updated_at = now()
    WHERE workflow_id IN (
      SELECT workflow_id FROM ${t.workflows}
      WHERE executor_id = ${executorId} AND status = 'PENDING' AND wake_at <= clock_timestamp() AND name = ANY(${names}::text[])
        AND app_version IS NOT DISTINCT FROM ${appVersion}::text
      ORDER BY wake_at
      LIMIT ${limit}
      FOR UPDATE SKIP LOCKED)
    RETURNING workflow_id, name, input, request_id, epoch::text AS epoch, attempts, deadline_at`
}

/** The earliest wake-up time (ms since the epoch) among an executor's suspended workflows of the given names, or null. */
export async function nextWakeAt (sql: Sql, t: Tables, executorId: string, appVersion: string | null, names: string[]): Promise<number | null> {
  const [row] = await sql<{ at: Date | null }[]>`
    SELECT min(wake_at) AS at FROM ${t.workflows}
    WHERE executor_id = ${executorId} AND status = 'PENDING' AND wake_at IS NOT NULL AND name = ANY(${names}::text[])
      AND app_version IS NOT DISTINCT FROM ${appVersion}::text`
  return row?.at == null ? null : row.at.getTime()
}
