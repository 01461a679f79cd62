/** What users see of a stored workflow. */

export const STATUS_NAMES = ['ENQUEUED', 'PENDING', 'SUCCESS', 'ERROR', 'MAX_RECOVERY_ATTEMPTS_EXCEEDED', 'CANCELLED'] as const
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
  /** While a long ctx.sleep (or ctx.recv) has suspended it (status PENDING): when it wakes up. Null otherwise. */
  wakeAt: Date | null
  /** The workflow that started it with ctx.startChild, if one did. */
  parentId: string | null
  /** Its timeout, if it has one: past it, it is cancelled (DBOS_ERR_WORKFLOW_TIMEOUT). */
  deadlineAt: Date | null
  /** The queue it was enqueued on, if it was. */
  queueName: string | null
}

export interface StepInfo {
  stepId: number
  name: string
  output?: unknown
  error?: Error
  /** When it began (null for steps recorded by versions before 0.2). */
  startedAt: Date | null
  /** When its checkpoint was recorded. */
  completedAt: Date
  /** The same as completedAt (kept for compatibility). */
  createdAt: Date
  /** For a ctx.startChild step: the child's id. */
  childWorkflowId?: string
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

/** A page of list results (listPage). */
export interface WorkflowPage {
  workflows: WorkflowStatus[]
  /** Where the next page starts (pass it as `cursor`), or null after the last one. */
  nextCursor: string | null
}

/** One value a workflow set with ctx.setEvent (listEvents). */
export interface EventInfo {
  key: string
  value: unknown
  /** The position of the ctx.setEvent call that set it. */
  stepId: number
  createdAt: Date
}

/** One value of a stream (readStream), at its offset: resume a reader from offset + 1. */
export interface StreamValue<T = unknown> {
  offset: number
  value: T
}
