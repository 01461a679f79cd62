/**
 * The shapes of rows the store reads and writes: what its functions return
 * (snake_case, as Postgres names the columns) and what they take to write
 * (camelCase). One file, so that a column added in a migration is added here
 * once.
 */

export interface NewWorkflowRow {
  workflowId: string
  name: string
  input: string
  inputHash: string
  requestId: string | null
  executorId: string
  appVersion: string | null
  /** The workflow that started it with ctx.startChild. */
  parentId: string | null
  /** Its timeout: deadline_at is set to now plus this, by the database's clock. */
  timeoutMs: number | null
}

export interface ExistingWorkflow {
  workflow_id: string
  name: string
  input_hash: string
  status: string
  executor_id: string
}

export interface InsertedWorkflow {
  workflow_id: string
  epoch: string
  deadline_at: Date | null
}

export interface WorkflowRow {
  workflow_id: string
  name: string
  status: string
  input: string
  output: string | null
  error: string | null
  request_id: string | null
  executor_id: string
  app_version: string | null
  epoch: string
  attempts: number
  created_at: Date
  updated_at: Date
  completed_at: Date | null
  wake_at: Date | null
  parent_id: string | null
  deadline_at: Date | null
  queue_name: string | null
}

export interface PendingRow { workflow_id: string, name: string, attempts: number, epoch: string }

export interface ClaimedRow {
  workflow_id: string
  name: string
  input: string
  request_id: string | null
  epoch: string
  attempts: number
  /** Its timeout, if it has one: the run is cancelled then. */
  deadline_at: Date | null
}


export interface Completion {
  workflowId: string
  epoch: string
  status: 'SUCCESS' | 'ERROR' | 'MAX_RECOVERY_ATTEMPTS_EXCEEDED'
  output: string | null
  error: string | null
}

export interface StepRow {
  step_id: number
  name: string
  output: string | null
  error: string | null
  /** When the step began (null for steps recorded before 0004). */
  started_at: Date | null
  /** When its checkpoint committed. */
  created_at: Date
}

export interface StepWrite {
  workflowId: string
  epoch: string
  stepId: number
  name: string
  output: string | null
  error: string | null
  /** When the step began. */
  startedAt: Date | null
}

/** A new workflow's start and its first checkpoint, committed together (see writes/opening.ts). */
export interface StartWithStep {
  start: NewWorkflowRow
  step: StepWrite
}

export interface Suspension {
  workflowId: string
  epoch: string
  wakeAt: Date
}

export interface ExecutorRow {
  executor_id: string
  app_version: string | null
  lease_ms: number
  started_at: Date
  heartbeat_at: Date
  stopped_at: Date | null
  heartbeat_age_ms: number
  /** PENDING workflows it owns. */
  pending: number
}
