/**
 * ctx.setEvent, ctx.writeStream, ctx.closeStream: values a workflow publishes
 * while it runs. Each takes a position; the value and its step's checkpoint
 * are one statement, only while the workflow is the run's (store/events.ts),
 * so a replay or a zombie never writes one twice.
 */
import { serialize } from '../core/codec.js'
import { StreamClosedError, WorkflowFencedError } from '../errors.js'
import { setEvent as writeEvent, writeStream as writeStreamValue } from '../store/events.js'
import type { DirectWrite } from '../store/owner.js'
import { checkKey } from './arguments.js'
import type { RunCore } from './run-core.js'

/** Takes a position for a published value; false when it is recorded already (a replay). */
async function publish (run: RunCore, name: string, write: (stepId: number, startedAt: Date) => Promise<DirectWrite>): Promise<void> {
  const stepId = run.takeStepId()
  run.assertNotSuspended()
  if (run.replay(stepId, name) !== undefined) return
  // Earlier checkpoints first: what this publishes must not be seen before
  // them. And the start itself: the write is one statement with the
  // workflow's row (owner check), which a first step carries only later
  // (writes/opening.ts), so a workflow whose first call publishes wrote
  // nothing and was fenced.
  await run.confirmCheckpoints()
  run.assertRunning()
  if (await write(stepId, run.startTime()) === 'fenced') {
    run.fence()
    throw new WorkflowFencedError(run.workflowId)
  }
}

/** Sets event `key` (the latest value wins; every value is kept). */
export async function setEvent (run: RunCore, key: string, value: unknown): Promise<void> {
  checkKey('an event key', key)
  const text = serialize(value, `event ${JSON.stringify(key)}`)
  const { sql, tables } = run.deps
  await publish(run, 'setEvent', (stepId, startedAt) => writeEvent(sql, tables,
    { workflowId: run.workflowId, epoch: run.epoch, stepId, name: 'setEvent', output: serialize(key), startedAt }, key, text))
}

interface StreamState { next: number, closed: boolean }

/** This run's offsets per stream key. Replays advance them too, so a value's offset is the same on every run. */
function streamState (run: RunCore, key: string): StreamState {
  let streams = run.opState.get('streams') as Map<string, StreamState> | undefined
  if (streams === undefined) run.opState.set('streams', streams = new Map())
  let state = streams.get(key)
  if (state === undefined) streams.set(key, state = { next: 0, closed: false })
  return state
}

export async function writeStream (run: RunCore, key: string, value: unknown): Promise<void> {
  checkKey('a stream key', key)
  const text = serialize(value, `a value of stream ${JSON.stringify(key)}`)
  const state = streamState(run, key)
  if (state.closed) throw new StreamClosedError(key)
  const offset = state.next++
  const { sql, tables } = run.deps
  await publish(run, 'writeStream', (stepId, startedAt) => writeStreamValue(sql, tables,
    { workflowId: run.workflowId, epoch: run.epoch, stepId, name: 'writeStream', output: serialize(key), startedAt }, key, offset, text, false))
}

export async function closeStream (run: RunCore, key: string): Promise<void> {
  checkKey('a stream key', key)
  const state = streamState(run, key)
  if (state.closed) return
  state.closed = true
  const offset = state.next++
  const { sql, tables } = run.deps
  await publish(run, 'closeStream', (stepId, startedAt) => writeStreamValue(sql, tables,
    { workflowId: run.workflowId, epoch: run.epoch, stepId, name: 'closeStream', output: serialize(key), startedAt }, key, offset, null, true))
}
