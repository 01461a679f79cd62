/** ctx.sleep: a durable sleep; long ones suspend the workflow until its wake-up time. */
import { serialize } from '../core/codec.js'
import { sleep as wait } from '../core/retry.js'
import { InvalidSleepDurationError, NondeterminismError } from '../errors.js'
import type { RunCore } from './run-core.js'
import { MAX_DURATION_MS } from '../core/timers.js'

/** The step name under which ctx.sleep records its wake-up time. */
export const SLEEP_STEP = 'sleep'
const MAX_SLEEP_MS = MAX_DURATION_MS
/**
 * A replayed sleep with at most this much left waits in memory, whatever
 * sleepInMemoryMaxMs says. A run woken because the database's clock passed
 * its wake-up time may still find a few ms left by this process's estimate
 * of that clock (its error grows with load); suspending again for them would
 * cost a claim and a new epoch, once more per late estimate.
 */
const REPLAYED_SLACK_MS = 1000

export async function sleep (run: RunCore, ms: number): Promise<void> {
  // Refused before taking a step id, so a bad call leaves no trace in the numbering.
  if (typeof ms !== 'number' || !(ms >= 0 && ms <= MAX_SLEEP_MS)) throw new InvalidSleepDurationError(String(ms))
  const stepId = run.takeStepId()
  run.assertRunning()
  const { wakeAt, replayed } = wakeUpTime(run, stepId, ms)
  const remaining = wakeAt - run.deps.now()
  if (remaining <= 0) return
  const inMemoryMaxMs = replayed ? Math.max(run.deps.sleepInMemoryMaxMs, REPLAYED_SLACK_MS) : run.deps.sleepInMemoryMaxMs
  if (remaining > inMemoryMaxMs) return run.suspend(wakeAt)
  await wait(remaining, run.signal)
  run.assertRunning()
}

/** The wake-up time recorded for sleep `stepId`, or a new one, checkpointed like a step result. */
function wakeUpTime (run: RunCore, stepId: number, ms: number): { wakeAt: number, replayed: boolean } {
  const replayed = run.replay(stepId, SLEEP_STEP)
  if (replayed !== undefined) {
    // A step the code named "sleep" where it now sleeps: not the same call.
    if (typeof replayed.value !== 'number') throw new NondeterminismError(run.workflowId, stepId, 'a step named sleep', SLEEP_STEP)
    return { wakeAt: replayed.value, replayed: true }
  }
  const wakeAt = run.deps.now() + Math.ceil(ms)
  run.issueWrite(stepId, SLEEP_STEP, { output: serialize(wakeAt), error: null })
  return { wakeAt, replayed: false }
}
