/** SQL for the steps table: checkpoints of completed steps, keyed by call order. */
import type { Sql, Tables, TransactionSql } from './connect.js'
import type { StepRow, StepWrite } from './rows.js'

/**
 * The checkpoint written inside a user's transaction. If it cannot be written
 * (already recorded, or fenced) the caller rolls the whole transaction back, so
 * the transaction's own writes commit exactly once, together with this row.
 */
export async function insertStepInTransaction (tx: TransactionSql, t: Tables, row: StepWrite): Promise<boolean> {
  const written = await tx`
    INSERT INTO ${t.steps} (workflow_id, step_id, name, output, error)
    SELECT ${row.workflowId}, ${row.stepId}, ${row.name}, ${row.output}, ${row.error}
    FROM ${t.workflows} w
    WHERE w.workflow_id = ${row.workflowId} AND w.epoch = ${row.epoch}::bigint AND w.status = 'PENDING'
    ON CONFLICT (workflow_id, step_id) DO NOTHING
    RETURNING 1`
  return written.length === 1
}

/** Recorded steps of one workflow, in call order: what a replay returns. */
export async function listSteps (sql: Sql, t: Tables, workflowId: string): Promise<StepRow[]> {
  return sql<StepRow[]>`
    SELECT step_id, name, output, error, created_at FROM ${t.steps}
    WHERE workflow_id = ${workflowId} ORDER BY step_id`
}

export async function findStep (sql: Sql, t: Tables, workflowId: string, stepId: number): Promise<StepRow | undefined> {
  const [row] = await sql<StepRow[]>`
    SELECT step_id, name, output, error, created_at FROM ${t.steps}
    WHERE workflow_id = ${workflowId} AND step_id = ${stepId}`
  return row
}
