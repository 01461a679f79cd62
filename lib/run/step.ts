/** ctx.step: run a function once and checkpoint its result (at least once across crashes). */
import { deserialize, serializeError } from '../core/codec.js'
import { retryDelay, sleep } from '../core/retry.js'
import type { StepOptions } from '../context.js'
import { MAX_TIMER_MS } from '../core/timers.js'
import { EngineStoppedError, InvalidCallError, StepTimeoutError } from '../errors.js'
import { checkStepName, encodeResult, type RunCore } from './run-core.js'

export async function step<T> (run: RunCore, name: string, fn: (signal: AbortSignal) => T | Promise<T>, options: StepOptions = {}): Promise<T> {
  checkStepName(name)
  const timeoutMs = options.timeoutMs === undefined ? undefined : checkStepTimeout(options.timeoutMs)
  const stepId = run.takeStepId()
  run.assertNotSuspended()
  const replayed = run.replay(stepId, name)
  if (replayed !== undefined) return replayed.value as T
  // Not the start: this step's checkpoint may carry it.
  await run.confirmIssued()
  const startedAt = run.startTime()
  const attempt = await attempts(run, name, fn, options, timeoutMs)
  // Stopped meanwhile (cancelled, fenced off, the engine stopping): nothing to record.
  if (run.stopped !== undefined) throw run.stopped
  // Suspended meanwhile (a sleep in parallel): the run records nothing more; a wake-up runs the step again.
  const settling = run.settleSuspension()
  if (settling !== undefined) await settling
  const outcome = attempt.ok
    ? encodeResult(attempt.value, `the result of step ${JSON.stringify(name)}`)
    : { output: null, error: serializeError(attempt.error) }
  run.issueWrite(stepId, name, outcome, startedAt)
  if (!attempt.ok) throw attempt.error
  if (outcome.error !== null) throw (outcome as { thrown?: unknown }).thrown
  // The stored form, not the original: a replay returns exactly this, so the
  // first run and a recovery see the same value (a class instance's toJSON,
  // -0, ... would otherwise differ between them).
  return deserialize(outcome.output!) as T
}

/** Runs a step's function, retrying per its policy; the last attempt's outcome counts. */
async function attempts<T> (run: RunCore, name: string, fn: (signal: AbortSignal) => T | Promise<T>, options: StepOptions, timeoutMs: number | undefined): Promise<{ ok: true, value: T } | { ok: false, error: unknown }> {
  const maxAttempts = Math.max(1, options.retries?.maxAttempts ?? 1)
  for (let attempt = 1; ; attempt++) {
    // A thawed process does not begin a step of a workflow adopted meanwhile.
    const current = run.deps.heartbeatCurrent()
    if (current !== undefined) await current
    run.assertRunning()
    try {
      return { ok: true, value: await (timeoutMs === undefined ? fn(run.signal) : withTimeout(run, name, fn, timeoutMs)) }
    } catch (error) {
      if (attempt >= maxAttempts || error instanceof EngineStoppedError) return { ok: false, error }
      await sleep(retryDelay(options.retries!, attempt), run.signal)
    }
  }
}

/**
 * One attempt with a time limit: the function's signal aborts at the limit
 * (also on cancel, fence and engine stop), and the attempt fails with
 * DBOS_ERR_STEP_TIMEOUT then, even if the function ignores its signal.
 */
async function withTimeout<T> (run: RunCore, name: string, fn: (signal: AbortSignal) => T | Promise<T>, timeoutMs: number): Promise<T> {
  const limit = new AbortController()
  const error = new StepTimeoutError(name, timeoutMs)
  let timer: NodeJS.Timeout | undefined
  const timedOut = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => {
      limit.abort(error)
      reject(error)
    }, timeoutMs)
  })
  try {
    return await Promise.race([Promise.resolve().then(() => fn(AbortSignal.any([run.signal, limit.signal]))), timedOut])
  } finally {
    clearTimeout(timer)
  }
}

function checkStepTimeout (timeoutMs: unknown): number {
  if (typeof timeoutMs !== 'number' || !(timeoutMs > 0) || timeoutMs > MAX_TIMER_MS) {
    throw new InvalidCallError(`a step's timeoutMs must be a number of milliseconds from 1 to ${MAX_TIMER_MS}, got ${String(timeoutMs)}`)
  }
  return timeoutMs
}
