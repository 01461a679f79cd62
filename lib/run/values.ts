/** ctx.now() and ctx.randomUUID(): values recorded like steps, so a replay gets the same ones. */
import { randomUUID as uuid } from 'node:crypto'
import { deserialize, serialize } from '../core/codec.js'
import type { RunCore } from './run-core.js'

/** A value made once and recorded at the next position; replays return the recorded one. */
function recorded<T> (run: RunCore, name: string, make: () => T): T {
  const stepId = run.takeStepId()
  run.assertNotSuspended()
  const replayed = run.replay(stepId, name)
  if (replayed !== undefined) return replayed.value as T
  run.assertRunning()
  const text = serialize(make())
  run.issueWrite(stepId, name, { output: text, error: null })
  // The stored form, as for steps.
  return deserialize(text) as T
}

/** Milliseconds since the epoch, by this process's clock, at the first run. */
export async function now (run: RunCore): Promise<number> {
  return recorded(run, 'now', () => Date.now())
}

export async function randomUUID (run: RunCore): Promise<string> {
  return recorded(run, 'randomUUID', () => uuid())
}
