/**
 * One run from start to end: the workflow function over its ctx, then its
 * outcome recorded under the run's epoch. A run that cannot record an
 * outcome (it was suspended by a sleep, fenced off, stopped, or a checkpoint
 * failed) ends without one and leaves the workflow PENDING for whoever owns
 * it now.
 */
import { deserialize, serializeError, serializeResult } from '../core/codec.js'
import type { Logger } from '../core/logger.js'
import { EngineStoppedError, WorkflowFencedError } from '../errors.js'
import type { Completion } from '../store/rows.js'
import type { WorkflowDefinition } from '../workflow.js'
import type { RunCore } from './run-core.js'
import { RunContext } from './workflow-context.js'

/** How a run ended: its value or error, as every getResult caller sees it. */
export type LocalOutcome = { ok: true, value: unknown } | { ok: false, error: unknown }

export interface ExecuteDeps {
  logger: Logger
  /** Records a final outcome; false if it was not this run's to write (fenced, or already final). */
  complete (row: Completion): Promise<boolean>
}

/** Runs the body and records its outcome; never rejects. */
export async function execute (deps: ExecuteDeps, def: WorkflowDefinition<any, any>, run: RunCore, input: unknown): Promise<LocalOutcome> {
  try {
    return await executeBody(deps, def, run, input)
  } finally {
    run.dispose()
  }
}

async function executeBody (deps: ExecuteDeps, def: WorkflowDefinition<any, any>, run: RunCore, input: unknown): Promise<LocalOutcome> {
  const { logger } = deps
  const workflowId = run.workflowId
  let local: LocalOutcome
  let output: string | null = null
  let error: string | null = null
  // The body starts once the run is registered: its first lines may look up
  // their own workflow, whose start may not be written yet.
  await undefined
  try {
    const value = await def.fn(new RunContext(run), input)
    if (run.suspension !== undefined) return suspended(logger, run)
    if (run.stopped !== undefined) return run.stopped instanceof WorkflowFencedError ? abandoned(logger, workflowId, run.stopped) : cancelled(logger, run)
    output = serializeResult(value, `the output of workflow ${JSON.stringify(def.name)}`)
    // What every other caller of getResult gets back from the database.
    local = { ok: true, value: deserialize(output) }
  } catch (err) {
    // Suspended by a sleep: whatever the code did after that (say, caught the signal and threw something else) is not an outcome.
    if (run.suspension !== undefined) return suspended(logger, run)
    if (err instanceof EngineStoppedError || err instanceof WorkflowFencedError) return abandoned(logger, workflowId, err)
    // Cancelled (or timed out): the database says so already; this run records nothing.
    if (run.stopped !== undefined) return cancelled(logger, run)
    error = serializeError(err)
    local = { ok: false, error: err }
  }
  // The outcome's UPDATE needs the workflow row: a run launched before its
  // start was written (a workflow without steps) writes it now. If it could
  // not be written, start() has reported why, and there is no workflow.
  const startFailure = await run.ensureStarted().then(() => undefined, (err: unknown) => err ?? new Error('start failed'))
  if (startFailure !== undefined) {
    logger.debug({ event: 'workflow.start_failed', workflowId, err: startFailure }, 'the workflow could not be started; the run stopped')
    return { ok: false, error: startFailure }
  }
  if (run.checkpointFailure !== undefined) return abandoned(logger, workflowId, run.checkpointFailure)
  try {
    const written = await deps.complete({ workflowId, epoch: run.epoch, status: local.ok ? 'SUCCESS' : 'ERROR', output, error })
    // Usually already settled: the last step's write shared the completion's statement.
    await run.confirmCheckpoints()
    if (!written) return abandoned(logger, workflowId, new WorkflowFencedError(workflowId))
  } catch (err) {
    if (err instanceof EngineStoppedError || err instanceof WorkflowFencedError) return abandoned(logger, workflowId, err)
    logger.error({ event: 'workflow.outcome_failed', err, workflowId }, 'could not record the outcome of a workflow; it stays PENDING')
    return { ok: false, error: err }
  }
  if (!local.ok) logger.debug({ event: 'workflow.failed', workflowId, err: local.error }, 'workflow finished with an error')
  return local
}

/** The run ends without an outcome; the workflow stays PENDING with wake_at set, for the wake-up scheduler. */
function suspended (logger: Logger, run: RunCore): LocalOutcome {
  logger.debug({ event: 'workflow.suspended', workflowId: run.workflowId }, 'workflow suspended by a sleep; it resumes at its wake-up time')
  return { ok: false, error: run.suspension }
}

/** The run ends without writing: the workflow was cancelled (its status says so); waiters here get why. */
function cancelled (logger: Logger, run: RunCore): LocalOutcome {
  logger.info({ event: 'workflow.cancelled', workflowId: run.workflowId, code: (run.stopped as { code?: string }).code }, 'workflow cancelled; its run stopped')
  return { ok: false, error: run.stopped }
}

/** The run ends without an outcome: the workflow stays PENDING for whoever owns it now. */
function abandoned (logger: Logger, workflowId: string, err: unknown): LocalOutcome {
  if (err instanceof WorkflowFencedError) {
    logger.warn({ event: 'workflow.fenced', workflowId }, 'workflow taken over by another run; this run stopped without writing')
  } else if (err instanceof EngineStoppedError) {
    logger.info({ event: 'workflow.stopped', workflowId }, 'engine stopped before the workflow finished; it stays PENDING')
  } else {
    logger.error({ event: 'workflow.checkpoint_failed', err, workflowId },
      'a step checkpoint could not be written; the workflow stays PENDING and resumes on the next start (or when its start is retried)')
  }
  return { ok: false, error: err }
}
