/**
 * The ownership check every write of a run makes outside the batched
 * checkpoints (messages consumed, events set, stream values written): the
 * workflow is PENDING under the run's epoch. FOR SHARE holds the row until
 * the statement's transaction ends, so a claim or adoption bumping the epoch
 * waits for the write, and a write after a claim sees the new epoch (read
 * committed re-checks the locked row): a zombie's write lands before its
 * workflow was taken from it, or not at all.
 */
import type postgres from 'postgres'
import type { Sql, Tables } from './connect.js'

export function ownerOf (sql: Sql, t: Tables, workflowId: string, epoch: string): postgres.PendingQuery<postgres.Row[]> {
  return sql`SELECT 1 FROM ${t.workflows} WHERE workflow_id = ${workflowId} AND epoch = ${epoch}::bigint AND status = 'PENDING' FOR SHARE`
}

/** What a run's write outside the batched checkpoints found. */
export type DirectWrite = 'written' | 'recorded' | 'fenced'

/** The step row of a direct write: inserted with it, by the same statement. */
export interface StepOfWrite {
  workflowId: string
  epoch: string
  stepId: number
  name: string
  /** Serialised output recorded for the step. */
  output: string | null
  startedAt: Date | null
}
