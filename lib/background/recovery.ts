/**
 * Start-up recovery: resume every PENDING workflow recorded under this
 * executor id from its last checkpoint. Runs in the background so the server
 * is ready at once, and keeps retrying while the database is unreachable, so
 * a Postgres restart during recovery cannot leave workflows stuck PENDING.
 *
 * Crash loops. A workflow that kills its process (a native crash, an
 * out-of-memory, process.exit) takes every workflow running beside it down
 * too, and each restart counts an attempt for all of them: innocent ones
 * would reach maxRecoveryAttempts with the poison one. So a workflow is a
 * suspect once it has been resumed before and was running again when the
 * process died (attempts >= 2). Those resumed for the first time go all at
 * once, as before; suspects one at a time, fewest attempts first: the next
 * starts when the previous finished, suspended, or ran for SUSPECT_PROBE_MS
 * without the process dying. A crash during a probe then counts against the
 * one suspect running (and whatever new work had started meanwhile), so the
 * poison one reaches the limit while the others finish.
 */
import { deserialize, serialize } from '../core/codec.js'
import { MaxRecoveryAttemptsError } from '../errors.js'
import type { Logger } from '../core/logger.js'
import { untilReachable } from '../core/retry.js'
import type { Sql, Tables } from '../store/connect.js'
import { listSteps } from '../store/steps.js'
import type { ClaimedRow, Completion, PendingRow, StepRow } from '../store/rows.js'
import { claimWorkflows, listPending } from '../store/workflows.js'
import type { WorkflowDefinition } from '../workflow.js'
import { isConnectionError } from '../store/pg-errors.js'

/** What recovery needs of the engine's record of its own work (engine/ownership.ts). */
export interface Claims {
  /** Running here, being started here, or being claimed here. */
  busy (workflowId: string): boolean
  /** Busy only with a run here that holds an older epoch than `epoch` (cancelled or fenced, unwinding). */
  onlyStale (workflowId: string, epoch: string): boolean
  /** The claim on a workflow (release it when done), or undefined if another path holds it. */
  claim (workflowId: string): (() => void) | undefined
  /** Resolves once the queue dispatches in flight now have launched their runs. */
  dispatched (): Promise<void>
}

export interface RecoveryDeps {
  /** For the pending list, claims and checkpoint reads. */
  sql: Sql
  tables: Tables
  /** Records the outcome of a workflow given up on (MAX_RECOVERY_ATTEMPTS_EXCEEDED). */
  complete (row: Completion): Promise<boolean>
  logger: Logger
  /** The executor id this process holds now (it changes only if another process took it over). */
  executorId (): string
  /** This process's appVersion: it resumes only workflows of that version (null: unpinned ones). */
  appVersion: string | null
  signal: AbortSignal
  maxRecoveryAttempts: number
  definition (name: string): WorkflowDefinition<any, any> | undefined
  claims: Claims
  resume (def: WorkflowDefinition<any, any>, row: ClaimedRow, input: unknown, steps: StepRow[]): void
  /** Resolves once the workflow's run here has ended, or after `ms`, or on stop. */
  settled (workflowId: string, ms: number): Promise<void>
  /** Set while a pass resumes suspects one at a time: a concurrent pass leaves them to it. */
  probing: { active: boolean }
}

/** How long a suspect runs alone before the next one is resumed beside it. */
export const SUSPECT_PROBE_MS = 3000

/** Retries the whole pass until it succeeds or the engine stops. */
export async function recoverUntilDone (deps: RecoveryDeps): Promise<void> {
  await untilReachable(() => recoverOnce(deps), {
    signal: deps.signal,
    stopped: () => undefined,
    // Any failure of a whole pass (one bad workflow is handled within it) is
    // retried: a pass only reads, and claims one workflow at a time.
    unreachable: () => !deps.signal.aborted,
    onRetry: (err, attempt) => deps.logger.warn({ event: 'recovery.retry', err, attempt, executorId: deps.executorId() }, 'workflow recovery pass failed; retrying')
  }).catch(() => {})
}

async function recoverOnce (deps: RecoveryDeps): Promise<void> {
  const pending = await listPending(deps.sql, deps.tables, deps.executorId(), deps.appVersion)
  // A row a dispatch here had just taken when the list was read is ours and
  // not running yet: wait for those dispatches to launch their runs before
  // judging any row (see Ownership.dispatching).
  await deps.claims.dispatched()
  const fresh: PendingRow[] = []
  const suspects: PendingRow[] = []
  for (const row of pending) {
    if (deps.claims.busy(row.workflow_id) && !deps.claims.onlyStale(row.workflow_id, row.epoch)) continue
    if (deps.definition(row.name) === undefined) {
      deps.logger.warn({ event: 'recovery.unknown_definition', workflowId: row.workflow_id, workflowName: row.name },
        'cannot recover workflow: no definition with this name is registered; it stays PENDING')
      continue
    }
    if (row.attempts <= 1) fresh.push(row)
    else if (!deps.probing.active) suspects.push(row)
  }
  if (fresh.length + suspects.length === 0) return
  deps.logger.info({ event: 'recovery.started', count: fresh.length + suspects.length, suspects: suspects.length, executorId: deps.executorId() },
    'recovering pending workflows')
  for (const row of fresh) await resumeUnlessRunning(deps, row)
  if (suspects.length === 0) return
  // Fewest attempts first; the sort is stable, so oldest first among equals.
  suspects.sort((a, b) => a.attempts - b.attempts)
  deps.probing.active = true
  try {
    for (const row of suspects) {
      if (deps.signal.aborted) return
      deps.logger.info({ event: 'recovery.suspect', workflowId: row.workflow_id, attempts: row.attempts },
        'resuming a workflow that was running during more than one crash, alone for a while')
      if (await resumeUnlessRunning(deps, row)) await deps.settled(row.workflow_id, SUSPECT_PROBE_MS)
    }
  } finally {
    deps.probing.active = false
  }
}

/** Claims and resumes one workflow unless it runs here already (a stale run aside); true if it was resumed. */
async function resumeUnlessRunning (deps: RecoveryDeps, { workflow_id: workflowId, epoch }: PendingRow): Promise<boolean> {
  if (deps.signal.aborted || (deps.claims.busy(workflowId) && !deps.claims.onlyStale(workflowId, epoch))) return false
  try {
    await claimAndResume(deps, workflowId)
    return deps.claims.busy(workflowId)
  } catch (err) {
    // An outage ends this pass (recoverUntilDone retries it); one bad workflow
    // (say, an input that no longer decodes) must not stop the others.
    if (isConnectionError(err)) throw err
    deps.logger.error({ event: 'recovery.failed', err, workflowId }, 'could not resume workflow; it stays PENDING')
    return false
  }
}

/**
 * Claims one PENDING workflow (new epoch, one more attempt) and resumes it
 * from its checkpoints. Claiming one at a time means a failure costs at most
 * one workflow one attempt. Also used when a start finds its workflow PENDING
 * here but not running (its first start's answer was lost).
 */
export async function claimAndResume (deps: RecoveryDeps, workflowId: string): Promise<void> {
  const release = deps.claims.claim(workflowId)
  if (release === undefined) return // recovery and a retried start may race for it
  try {
    const [row] = await claimWorkflows(deps.sql, deps.tables, deps.executorId(), deps.appVersion, [workflowId])
    if (row !== undefined) await resumeOne(deps, row)
  } finally {
    release()
  }
}

/** Resumes a workflow the wake-up scheduler claimed. No attempt check: a wake-up is not a crash. */
export async function resumeWoken (deps: RecoveryDeps, row: ClaimedRow): Promise<void> {
  const def = deps.definition(row.name)
  if (def === undefined) {
    deps.logger.warn({ event: 'wakeup.unknown_definition', workflowId: row.workflow_id, workflowName: row.name },
      'cannot wake workflow: no definition with this name is registered; it stays PENDING')
    return
  }
  // Claimed (wake_at cleared) but not running until its steps are read: a
  // start retried meanwhile, or a recovery pass, would take it for an orphan
  // and claim it again, with an attempt counted and two runs at once.
  const release = deps.claims.claim(row.workflow_id)
  try {
    await resumeFromCheckpoints(deps, def, row, true)
  } finally {
    release?.()
  }
}

async function resumeOne (deps: RecoveryDeps, row: ClaimedRow): Promise<void> {
  const def = deps.definition(row.name)!
  const limit = def.options.maxRecoveryAttempts ?? deps.maxRecoveryAttempts
  // attempts counts the first run too, so N recoveries allow N + 1 attempts.
  if (row.attempts > limit + 1) {
    const error = new MaxRecoveryAttemptsError(row.workflow_id, limit)
    deps.logger.error({ event: 'recovery.abandoned', workflowId: row.workflow_id, attempts: row.attempts }, error.message)
    await deps.complete({
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
  if (woken) deps.logger.debug({ event: 'workflow.woken', ...fields }, 'waking workflow')
  else deps.logger.info({ event: 'workflow.resumed', ...fields }, 'resuming workflow')
  deps.resume(def, row, deserialize(row.input), steps)
}
