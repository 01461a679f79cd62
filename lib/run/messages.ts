/**
 * ctx.recv and ctx.send: messages to workflows, each consumed exactly once.
 *
 * recv takes two positions: first its deadline (recorded like a sleep's
 * wake-up time, so a replay waits only what is left), then the message it
 * got, or null at the deadline. Consuming a message and recording it are one
 * statement (store/messages.ts), so a message is consumed if and only if the
 * step returning it is recorded. While it waits: in memory when at most
 * sleepInMemoryMaxMs is left, woken by the messages channel; longer, the
 * workflow suspends (nothing held in memory) and a message wakes it where it
 * is owned, as a sleeper wakes at its time.
 */
import type { RecvOptions, SendOptions } from '../context.js'
import { deserialize, serialize, serializeError } from '../core/codec.js'
import { NondeterminismError, WorkflowFencedError, WorkflowFinishedError, WorkflowNotFoundError } from '../errors.js'
import { findOwnStep } from '../store/steps.js'
import { receiveMessage, sendMessage, suspendForMessage } from '../store/messages.js'
import { checkKey, checkTimeoutMs, MAX_WAIT_MS } from './arguments.js'
import { restore, type RunCore } from './run-core.js'
import type { AnnouncementWatch } from '../core/announcements.js'

const DEADLINE_STEP = 'recv.deadline'
const RECV_STEP = 'recv'

export async function recv<T> (run: RunCore, topic: string = '', options: RecvOptions = {}): Promise<T | null> {
  checkKey('a topic', topic)
  const timeoutMs = checkTimeoutMs(options.timeoutMs)
  // Both taken at once, so parallel calls keep their order.
  const deadlineStep = run.takeStepId()
  const recvStep = run.takeStepId()
  run.assertNotSuspended()
  const deadline = recordedDeadline(run, deadlineStep, timeoutMs)
  const replayed = run.replay(recvStep, RECV_STEP)
  if (replayed !== undefined) return replayed.value as T | null
  // The deadline, and every earlier step, durable before a message is consumed.
  await run.confirmIssued()
  const sentBy = deadline === Infinity ? null : new Date(deadline)
  // Watched from before the first read: a message announced while a read
  // runs wakes the next wait at once, not at its poll.
  const watch = run.deps.watchMessages(run.workflowId)
  try {
    return await receive<T>(run, topic, recvStep, deadline, sentBy, watch)
  } finally {
    watch.close()
  }
}

async function receive<T> (run: RunCore, topic: string, recvStep: number, deadline: number, sentBy: Date | null, watch: AnnouncementWatch): Promise<T | null> {
  const { sql, tables } = run.deps
  for (;;) {
    run.assertRunning()
    const startedAt = run.startTime()
    const got = await receiveMessage(sql, tables, { workflowId: run.workflowId, epoch: run.epoch, topic, stepId: recvStep, name: RECV_STEP, startedAt, sentBy })
    if (got.outcome === 'received') return deserialize(got.message) as T
    if (got.outcome === 'recorded') return ownRecord(run, recvStep) as T
    if (got.outcome === 'fenced') {
      run.fence()
      throw new WorkflowFencedError(run.workflowId)
    }
    const left = deadline - run.deps.now()
    if (left <= 0) {
      // A message that comes now is the next recv's.
      run.issueWrite(recvStep, RECV_STEP, { output: 'null', error: null }, startedAt)
      return null
    }
    if (left > run.deps.sleepInMemoryMaxMs) await suspendUntilMessage(run, topic, deadline, sentBy)
    else await watch.next(Math.min(left, MESSAGE_POLL_MS))
  }
}

/** A poll for messages while waiting in memory, should a notification be lost. */
const MESSAGE_POLL_MS = 1000

/** The recorded deadline (ms since the epoch, database clock), or a new one, checkpointed. */
function recordedDeadline (run: RunCore, stepId: number, timeoutMs: number): number {
  const replayed = run.replay(stepId, DEADLINE_STEP)
  if (replayed !== undefined) {
    const at = replayed.value
    if (at !== null && typeof at !== 'number') throw new NondeterminismError(run.workflowId, stepId, 'a step named recv.deadline', DEADLINE_STEP)
    return at === null ? Infinity : at
  }
  const deadline = timeoutMs === Infinity ? null : run.deps.now() + Math.ceil(timeoutMs)
  run.issueWrite(stepId, DEADLINE_STEP, { output: serialize(deadline), error: null })
  return deadline ?? Infinity
}

/**
 * Ends the run until a message on `topic` comes (or the deadline): the
 * workflow is resumed by replay then, and this recv finds the message. If
 * one is waiting already, returns so that the caller receives it.
 */
async function suspendUntilMessage (run: RunCore, topic: string, deadline: number, sentBy: Date | null): Promise<void> {
  // Woken by the workflow's own deadline if that is earlier, to be cancelled then.
  const wakeAt = new Date(Math.min(deadline, run.deadline, run.deps.now() + MAX_WAIT_MS))
  const { sql, tables } = run.deps
  return run.suspendWith(wakeAt.getTime(), async () => {
    const result = await suspendForMessage(sql, tables, { workflowId: run.workflowId, epoch: run.epoch, topic, wakeAt, sentBy })
    if (result === 'fenced') throw new WorkflowFencedError(run.workflowId)
    if (result === 'message-waiting') return false
    // The wake-up scheduler must know of the timeout, or the recv would
    // return null only once some message woke it. And a message sent while
    // the suspension was written may have been announced before it
    // committed: look once more, now that it has.
    run.deps.recvSuspended(run.workflowId, wakeAt.getTime())
    return true
  })
}

/** The step recorded by an earlier try of this very call (its answer was lost). */
async function ownRecord (run: RunCore, stepId: number): Promise<unknown> {
  const row = await findOwnStep(run.deps.sql, run.deps.tables, run.workflowId, run.epoch, stepId)
  if (row === undefined) {
    run.fence()
    throw new WorkflowFencedError(run.workflowId)
  }
  return restore(row)
}

/**
 * ctx.send: exactly once, also across replays and adoption: without a key of
 * the caller's, the send's key is this workflow's id and the call's position.
 */
export async function send (run: RunCore, to: string, message: unknown, options: SendOptions = {}): Promise<void> {
  checkKey('a workflow id', to)
  const topic = checkKey('a topic', options.topic ?? '')
  if (options.idempotencyKey !== undefined) checkKey('an idempotency key', options.idempotencyKey)
  const text = serialize(message, 'a message')
  const stepId = run.takeStepId()
  run.assertNotSuspended()
  const replayed = run.replay(stepId, 'send')
  if (replayed !== undefined) return
  await run.confirmIssued()
  run.assertRunning()
  const startedAt = run.startTime()
  const idempotencyKey = options.idempotencyKey ?? `${run.workflowId}:send:${stepId}`
  const sent = await sendMessage(run.deps.sql, run.deps.tables, { to, topic, message: text, idempotencyKey })
  const error = sent === 'not-found' ? new WorkflowNotFoundError(to) : sent === 'finished' ? new WorkflowFinishedError(to) : undefined
  run.issueWrite(stepId, 'send', { output: error === undefined ? 'null' : null, error: error === undefined ? null : serializeError(error) }, startedAt)
  if (error !== undefined) throw error
}
