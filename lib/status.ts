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
  /** The appVersion of the instance that started it (null: started without one). See docs/Guides/scale-out.md. */
  appVersion: string | null
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

/** An instance known to the database (app.workflows.executors()). */
export interface ExecutorInfo {
  executorId: string
  /** Its appVersion option; null when it does not pin workflows to a version. */
  appVersion: string | null
  leaseMs: number
  startedAt: Date
  heartbeatAt: Date
  /** How long ago its last heartbeat was, by the database's clock. */
  heartbeatAgeMs: number
  /** Beating within its lease and not stopped: the living do not adopt its work. */
  alive: boolean
  /** Set when it stopped gracefully. */
  stoppedAt: Date | null
  /** PENDING workflows it owns (running, sleeping, or waiting to be resumed or adopted). */
  pendingWorkflows: number
  /** This process. */
  self: boolean
}
