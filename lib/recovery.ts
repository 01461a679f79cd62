/**
 * Start-up recovery: resume every PENDING workflow recorded under this
 * executor id from its last checkpoint. Runs in the background so the server
 * is ready at once, and keeps retrying while the database is unreachable, so
 * a Postgres restart during recovery cannot leave workflows stuck PENDING.
 */
import { deserialize, serialize } from './codec.js'
import { MaxRecoveryAttemptsError } from './errors.js'
import type { Logger } from './logger.js'
import { backoff, sleep } from './retry.js'
import type { Sql, Tables } from './store/connect.js'
import { listSteps, type StepRow } from './store/steps.js'
import { claimWorkflows, listPending, type ClaimedRow } from './store/workflows.js'
import type { WorkflowDefinition } from './workflow.js'
import type { Checkpoints } from './checkpoints.js'
import { isConnectionError } from './store/pg-errors.js'

export interface RecoveryDeps {
  sql: Sql
  tables: Tables
  checkpoints: Checkpoints
  logger: Logger
  executorId: string
  signal: AbortSignal
  maxRecoveryAttempts: number
  definition (name: string): WorkflowDefinition<any, any> | undefined
  isRunning (workflowId: string): boolean
  /** Ids being claimed right now, by recovery or by a retried start, or claimed by a wake-up and not yet launched. */
  claiming: Set<string>
  resume (def: WorkflowDefinition<any, any>, row: ClaimedRow, input: unknown, steps: StepRow[]): void
}

/** Retries the whole pass until it succeeds or the engine stops. */
export async function recoverUntilDone (deps: RecoveryDeps): Promise<void> {
  for (let attempt = 1; !deps.signal.aborted; attempt++) {
    try {
      await recoverOnce(deps)
      return
    } catch (err) {
      if (deps.signal.aborted) return
      deps.logger.warn({ err, attempt, executorId: deps.executorId }, 'workflow recovery pass failed; retrying')
      await sleep(backoff(attempt, 100, 5000), deps.signal)
    }
  }
}

async function recoverOnce (deps: RecoveryDeps): Promise<void> {
  const pending = await listPending(deps.sql, deps.tables, deps.executorId)
  const ids: string[] = []
  for (const row of pending) {
    if (deps.isRunning(row.workflow_id)) continue
    if (deps.definition(row.name) === undefined) {
      deps.logger.warn({ workflowId: row.workflow_id, workflowName: row.name },
        'cannot recover workflow: no definition with this name is registered; it stays PENDING')
      continue
    }
    ids.push(row.workflow_id)
  }
  if (ids.length === 0) return
  deps.logger.info({ count: ids.length, executorId: deps.executorId }, 'recovering pending workflows')
  for (const workflowId of ids) {
    if (deps.signal.aborted) return
    if (deps.isRunning(workflowId)) continue
    try {
      await claimAndResume(deps, workflowId)
    } catch (err) {
      // An outage ends this pass (recoverUntilDone retries it); one bad workflow
      // (say, an input that no longer decodes) must not stop the others.
      if (isConnectionError(err)) throw err
      deps.logger.error({ err, workflowId }, 'could not resume workflow; it stays PENDING')
    }
  }
}

/**
 * Claims one PENDING workflow (new epoch, one more attempt) and resumes it
 * from its checkpoints. Claiming one at a time means a failure costs at most
 * one workflow one attempt. Also used when a start finds its workflow PENDING
 * here but not running (its first start's answer was lost).
 */
export async function claimAndResume (deps: RecoveryDeps, workflowId: string): Promise<void> {
  if (deps.claiming.has(workflowId)) return // recovery and a retried start may race for it
  deps.claiming.add(workflowId)
  try {
    const [row] = await claimWorkflows(deps.sql, deps.tables, deps.executorId, [workflowId])
    if (row !== undefined) await resumeOne(deps, row)
  } finally {
    deps.claiming.delete(workflowId)
  }
}

/** Resumes a workflow the wake-up scheduler claimed. No attempt check: a wake-up is not a crash. */
export async function resumeWoken (deps: RecoveryDeps, row: ClaimedRow): Promise<void> {
  const def = deps.definition(row.name)
  if (def === undefined) {
    deps.logger.warn({ workflowId: row.workflow_id, workflowName: row.name },
      'cannot wake workflow: no definition with this name is registered; it stays PENDING')
    return
  }
  // Claimed (wake_at cleared) but not running until its steps are read: a
  // start retried meanwhile, or a recovery pass, would take it for an orphan
  // and claim it again, with an attempt counted and two runs at once.
  const mine = !deps.claiming.has(row.workflow_id)
  if (mine) deps.claiming.add(row.workflow_id)
  try {
    await resumeFromCheckpoints(deps, def, row, true)
  } finally {
    if (mine) deps.claiming.delete(row.workflow_id)
  }
}

async function resumeOne (deps: RecoveryDeps, row: ClaimedRow): Promise<void> {
  const def = deps.definition(row.name)!
  const limit = def.options.maxRecoveryAttempts ?? deps.maxRecoveryAttempts
  // attempts counts the first run too, so N recoveries allow N + 1 attempts.
  if (row.attempts > limit + 1) {
    const error = new MaxRecoveryAttemptsError(row.workflow_id, limit)
    deps.logger.error({ workflowId: row.workflow_id, attempts: row.attempts }, error.message)
    await deps.checkpoints.complete({
      workflowId: row.workflow_id, epoch: row.epoch, status: 'MAX_RECOVERY_ATTEMPTS_EXCEEDED', output: null, error: serialize(error)
    })
    return
  }
  await resumeFromCheckpoints(deps, def, row, false)
}

/** Loads the recorded steps and runs the workflow again from the top: they replay, the rest runs. */
async function resumeFromCheckpoints (deps: RecoveryDeps, def: WorkflowDefinition<any, any>, row: ClaimedRow, woken: boolean): Promise<void> {
  const steps = await listSteps(deps.sql, deps.tables, row.workflow_id)
  const fields = { workflowId: row.workflow_id, workflowName: row.name, attempt: row.attempts, recordedSteps: steps.length }
  // Wake-ups are routine (thousands may fall due at once); a recovery is worth an info line.
  if (woken) deps.logger.debug(fields, 'waking workflow')
  else deps.logger.info(fields, 'resuming workflow')
  deps.resume(def, row, deserialize(row.input), steps)
}
