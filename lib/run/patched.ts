/**
 * ctx.patched(name): lets workflow code change while old runs are in flight.
 * New code puts the changed part behind `if (await ctx.patched('name'))`:
 * a run that reaches that point on new code records a marker there and
 * gets true, now and on every replay; a run that had already gone past that
 * point on old code (its recorded step at this position is something else)
 * gets false, takes no position, and replays the old path unchanged.
 */
import { checkStepName, type RunCore } from './run-core.js'

/** Prefix of the marker's step name: no step of the code can be confused with it. */
export const PATCH_PREFIX = 'patched:'

export async function patched (run: RunCore, name: string): Promise<boolean> {
  checkStepName(name)
  const marker = PATCH_PREFIX + name
  const stepId = run.peekStepId()
  const recorded = run.peek(stepId)
  // Old code went on past here: this run keeps to the old path.
  if (recorded !== undefined && recorded.name !== marker) return false
  run.takeStepId()
  run.assertNotSuspended()
  if (recorded !== undefined) return run.replay(stepId, marker)!.value === true
  run.issueWrite(stepId, marker, { output: 'true', error: null })
  return true
}
