/** ctx.sleep: a durable sleep; long ones suspend the workflow until its wake-up time. */
import { serialize } from '../core/codec.js'
import { sleep as wait } from '../core/retry.js'
import { InvalidSleepDurationError, NondeterminismError } from '../errors.js'
import type { RunCore } from './run-core.js'

/** The step name under which ctx.sleep records its wake-up time. */
export const SLEEP_STEP = 'sleep'
/**
 * About 3,170 years: keeps every wake-up time within years 0 to 9999 for
 * millennia to come. A valid Date is not enough: postgres.js sends Dates as
 * toISOString(), which writes later years as "+010000-...", and Postgres
 * refuses that text, so a later wake-up time could never be recorded.
 */
const MAX_SLEEP_MS = 1e14

export async function sleep (run: RunCore, ms: number): Promise<void> {
  // Refused before taking a step id, so a bad call leaves no trace in the numbering.
  if (typeof ms !== 'number' || !(ms >= 0 && ms <= MAX_SLEEP_MS)) throw new InvalidSleepDurationError(String(ms))
  const stepId = run.takeStepId()
  run.assertRunning()
  const wakeAt = wakeUpTime(run, stepId, ms)
  const remaining = wakeAt - run.deps.now()
  if (remaining <= 0) return
  if (remaining > run.deps.sleepInMemoryMaxMs) return run.suspend(wakeAt)
  await wait(remaining, run.signal)
  run.assertRunning()
}

/** The wake-up time recorded for sleep `stepId`, or a new one, checkpointed like a step result. */
function wakeUpTime (run: RunCore, stepId: number, ms: number): number {
  const replayed = run.replay(stepId, SLEEP_STEP)
  if (replayed !== undefined) {
    // A step the code named "sleep" where it now sleeps: not the same call.
    if (typeof replayed.value !== 'number') throw new NondeterminismError(run.workflowId, stepId, 'a step named sleep', SLEEP_STEP)
    return replayed.value
  }
  const wakeAt = run.deps.now() + Math.ceil(ms)
  run.issueWrite(stepId, SLEEP_STEP, { output: serialize(wakeAt), error: null })
  return wakeAt
}
