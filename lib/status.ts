/** What users see of a stored workflow. */

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
