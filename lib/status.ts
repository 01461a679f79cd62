/** What users see of a stored workflow. */
import { deserialize } from './core/codec.js'
import type { StepRow, WorkflowRow } from './store/rows.js'

export const STATUS_NAMES = ['PENDING', 'SUCCESS', 'ERROR', 'MAX_RECOVERY_ATTEMPTS_EXCEEDED', 'CANCELLED'] as const
export type WorkflowStatusName = typeof STATUS_NAMES[number]

export interface WorkflowStatus {
  workflowId: string
  name: string
  status: WorkflowStatusName
  input: unknown
  /** The return value, once status is SUCCESS. */
  output?: unknown
  /** The thrown error, restored as an Error, once status is ERROR (or MAX_RECOVERY_ATTEMPTS_EXCEEDED). */
  error?: Error
  /** The dbos-request-id of the request that started it, if any. */
  requestId: string | null
  /** The process that owns it. */
  executorId: string
  /**
   * Runs counted toward maxRecoveryAttempts: the first run plus one per
   * recovery. A run cut short by a graceful shutdown is not counted.
   */
  attempts: number
  createdAt: Date
  updatedAt: Date
  completedAt: Date | null
  /** While a long ctx.sleep has suspended it (status PENDING): when it wakes up. Null otherwise. */
  wakeAt: Date | null
}

export interface StepInfo {
  stepId: number
  name: string
  output?: unknown
  error?: Error
  createdAt: Date
}

export function toStatus (row: WorkflowRow): WorkflowStatus {
  const status: WorkflowStatus = {
    workflowId: row.workflow_id,
    name: row.name,
    status: row.status as WorkflowStatusName,
    input: deserialize(row.input),
    requestId: row.request_id,
    executorId: row.executor_id,
    attempts: row.attempts,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    completedAt: row.completed_at,
    wakeAt: row.wake_at
  }
  if (row.output !== null) status.output = deserialize(row.output)
  if (row.error !== null) status.error = deserialize(row.error) as Error
  return status
}

export function toStepInfo (row: StepRow): StepInfo {
  const step: StepInfo = { stepId: row.step_id, name: row.name, createdAt: row.created_at }
  if (row.error !== null) step.error = deserialize(row.error) as Error
  else if (row.output !== null) step.output = deserialize(row.output)
  return step
}
