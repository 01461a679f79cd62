/** SQL for the steps table: checkpoints of completed steps, keyed by call order. */
import type { Sql, Tables, TransactionSql } from './connect.js'
import type { StepRow, StepWrite } from './rows.js'

/**
 * The checkpoint written inside a user's transaction. If it cannot be written
 * (already recorded, or fenced) the caller rolls the whole transaction back, so
 * the transaction's own writes commit exactly once, together with this row.
 *
 * Concurrency: FOR SHARE locks the workflow row until the transaction ends,
 * so an adoption (or any claim) that bumps the epoch waits for it, and a
 * transaction that reaches this point after a claim committed finds the new
 * epoch (read committed re-checks the locked row) and rolls back. A zombie's
 * transaction therefore either commits before its workflow was taken from
 * it, or not at all.
 */
export async function insertStepInTransaction (tx: TransactionSql, t: Tables, row: StepWrite): Promise<boolean> {
  const written = await tx`
    INSERT INTO ${t.steps} (workflow_id, step_id, name, output, error, started_at)
    SELECT ${row.workflowId}, ${row.stepId}, ${row.name}, ${row.output}, ${row.error}, ${row.startedAt}::timestamptz
    FROM ${t.workflows} w
    WHERE w.workflow_id = ${row.workflowId} AND w.epoch = ${row.epoch}::bigint AND w.status = 'PENDING'
    FOR SHARE OF w
    ON CONFLICT (workflow_id, step_id) DO NOTHING
    RETURNING 1`
  return written.length === 1
}

/** Recorded steps of one workflow, in call order: what a replay returns. */
export async function listSteps (sql: Sql, t: Tables, workflowId: string): Promise<StepRow[]> {
  return sql<StepRow[]>`
    SELECT step_id, name, output, error, started_at, created_at FROM ${t.steps}
    WHERE workflow_id = ${workflowId} ORDER BY step_id`
}

export async function findStep (sql: Sql, t: Tables, workflowId: string, stepId: number): Promise<StepRow | undefined> {
  const [row] = await sql<StepRow[]>`
    SELECT step_id, name, output, error, started_at, created_at FROM ${t.steps}
    WHERE workflow_id = ${workflowId} AND step_id = ${stepId}`
  return row
}

/**
 * Step `stepId` as recorded, if the workflow is still PENDING under `epoch`:
 * then a write that found its step taken was this run's own (an earlier try
 * committed and its answer was lost), not another run's. Undefined when the
 * workflow is no longer the run's (or the step is missing). No lock: the
 * answer is only used by the run holding `epoch`, whose every later write is
 * fenced on it anyway.
 */
export async function findOwnStep (sql: Sql, t: Tables, workflowId: string, epoch: string, stepId: number): Promise<StepRow | undefined> {
  const [row] = await sql<StepRow[]>`
    SELECT s.step_id, s.name, s.output, s.error, s.started_at, s.created_at
    FROM ${t.steps} s JOIN ${t.workflows} w ON w.workflow_id = s.workflow_id
    WHERE s.workflow_id = ${workflowId} AND s.step_id = ${stepId} AND w.epoch = ${epoch}::bigint AND w.status = 'PENDING'`
  return row
}
