/**
 * ctx.startChild and ctx.runChild: workflows started by a workflow. The
 * child's id is deterministic (the parent's id and the call's position,
 * unless given), and its start is recorded, so a replay never starts a
 * second child; waiting for its result is recorded too.
 */
import { deserialize, serialize, serializeError } from '../core/codec.js'
import type { ChildHandle, ChildOptions } from '../context.js'
import type { WorkflowDefinition } from '../workflow.js'
import { checkKey } from './arguments.js'
import { encodeResult, type RunCore } from './run-core.js'

/** A child workflow, seen from its parent: its result, recorded in the parent. */
export class RunChildHandle<O> implements ChildHandle<O> {
  readonly workflowId: string
  readonly #run: RunCore

  constructor (run: RunCore, workflowId: string) {
    this.#run = run
    this.workflowId = workflowId
  }

  /**
   * The child's result (throws its error). Recorded at the parent's next
   * position: a replay returns it without waiting again.
   */
  async getResult (): Promise<O> {
    const run = this.#run
    const stepId = run.takeStepId()
    run.assertNotSuspended()
    const replayed = run.replay(stepId, 'getResult')
    if (replayed !== undefined) return replayed.value as O
    await run.confirmIssued()
    run.assertRunning()
    const startedAt = run.startTime()
    let outcome: { output: string | null, error: string | null, thrown?: unknown }
    try {
      outcome = encodeResult(await run.deps.resultOf(this.workflowId), `the result of child workflow ${this.workflowId}`)
    } catch (err) {
      // The parent was stopped meanwhile: nothing to record.
      run.assertRunning()
      outcome = { output: null, error: serializeError(err), thrown: err }
    }
    run.issueWrite(stepId, 'getResult', { output: outcome.output, error: outcome.error }, startedAt)
    if (outcome.error !== null) throw outcome.thrown
    // The stored form, as for steps: what a replay returns.
    return deserialize(outcome.output!) as O
  }

  toJSON (): { workflowId: string } {
    return { workflowId: this.workflowId }
  }
}

export async function startChild<I, O> (run: RunCore, def: WorkflowDefinition<I, O>, input: I, options: ChildOptions = {}): Promise<RunChildHandle<O>> {
  if (options.workflowId !== undefined) checkKey('a child workflow id', options.workflowId)
  const stepId = run.takeStepId()
  run.assertNotSuspended()
  const replayed = run.replay(stepId, 'startChild')
  if (replayed !== undefined) return new RunChildHandle<O>(run, replayed.value as string)
  await run.confirmIssued()
  run.assertRunning()
  const startedAt = run.startTime()
  const workflowId = options.workflowId ?? `${run.workflowId}-${stepId}`
  const { queue, priority, partitionKey, delayMs } = options
  const enqueue = queue === undefined ? undefined : { queue, priority, partitionKey, delayMs }
  await run.deps.startChild(def, input, { workflowId, parentId: run.workflowId, requestId: run.requestId, enqueue })
  run.issueWrite(stepId, 'startChild', { output: serialize(workflowId), error: null }, startedAt)
  return new RunChildHandle<O>(run, workflowId)
}
