/** SQL for the steps table: checkpoints of completed steps, keyed by call order. */
import type { Sql, Tables, TransactionSql } from './connect.js'

export interface StepWrite {
  workflowId: string
  epoch: string
  stepId: number
  name: string
  output: string | null
  error: string | null
}

export interface StepRow {
  step_id: number
  name: string
  output: string | null
  error: string | null
  created_at: Date
}

/**
 * Records many steps in one statement. A row is written only while its
 * workflow is PENDING under the writer's epoch. Returns the keys written; a
 * missing key was either recorded before (first writer wins on the primary
 * key, so a replay always sees one outcome) or fenced off: see findSteps.
 *
 * The epoch join takes no row lock on purpose: a stale owner can at worst
 * record a step the new owner would then read back, never a second outcome,
 * and the epoch-checked UPDATE in completeWorkflows is what truly fences.
 */
export async function insertSteps (sql: Sql, t: Tables, rows: StepWrite[]): Promise<{ workflow_id: string, step_id: number }[]> {
  return sql<{ workflow_id: string, step_id: number }[]>`
    INSERT INTO ${t.steps} (workflow_id, step_id, name, output, error)
    SELECT v.workflow_id, v.step_id, v.name, v.output, v.error
    FROM unnest(${rows.map((r) => r.workflowId)}::text[], ${rows.map((r) => r.epoch)}::bigint[],
                ${rows.map((r) => r.stepId)}::int[], ${rows.map((r) => r.name)}::text[],
                ${rows.map((r) => r.output)}::text[], ${rows.map((r) => r.error)}::text[])
         AS v(workflow_id, epoch, step_id, name, output, error)
    JOIN ${t.workflows} w ON w.workflow_id = v.workflow_id AND w.epoch = v.epoch AND w.status = 'PENDING'
    ON CONFLICT (workflow_id, step_id) DO NOTHING
    RETURNING workflow_id, step_id`
}

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
