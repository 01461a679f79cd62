/** `app.workflows`: the engine's API for code outside a request (scripts, jobs, tests). */
import type { Engine } from '../lib/engine/engine.js'
import type { DeleteFinishedOptions, EnqueueOptions, ForkOptions, GetEventOptions, ReadStreamOptions, SendOptions, StartOptions } from '../lib/calls.js'
import type { Schedules } from '../lib/engine/schedules.js'
import type { QueueDefinition } from '../lib/queue.js'
import type { WorkflowHandle } from '../lib/handle.js'
import type { EventInfo, ExecutorInfo, StepInfo, StreamValue, WorkflowPage, WorkflowStatus } from '../lib/status.js'
import type { ListFilter } from '../lib/list-filter.js'
import type { WorkflowDefinition } from '../lib/workflow.js'
import type { RunOptions } from './request-workflows.js'

export class AppWorkflows {
  readonly #engine: Engine

  constructor (engine: Engine) {
    this.#engine = engine
  }

  /** This process's executor id: the owner recorded on the workflows it starts. */
  get executorId (): string { return this.#engine.executorId }

  /**
   * The URL of the database the engine uses, once it is ready: the given
   * one, or the embedded Postgres's (with its password), for a
   * WorkflowClient in a script to reach the same workflows.
   */
  get databaseUrl (): string | undefined { return this.#engine.databaseUrl }

  start<I, O> (def: WorkflowDefinition<I, O>, input: I, options?: StartOptions): Promise<WorkflowHandle<O>> {
    return this.#engine.startWorkflow(def, input, options)
  }

  async run<I, O> (def: WorkflowDefinition<I, O>, input: I, options: RunOptions & { requestId?: string } = {}): Promise<O> {
    const { waitMs, ...startOptions } = options
    return (await this.start(def, input, startOptions)).getResult({ timeoutMs: waitMs })
  }

  retrieve<O = unknown> (workflowId: string): Promise<WorkflowHandle<O>> {
    return this.#engine.retrieve<O>(workflowId)
  }

  /** Throws DBOS_ERR_WORKFLOW_NOT_FOUND (404) for an unknown id. */
  getStatus (workflowId: string): Promise<WorkflowStatus> {
    return this.#engine.getStatus(workflowId)
  }

  /** Newest first; filter by name, status, requestId, executorId, creation time; limit (default 100) and offset. */
  list (filter?: ListFilter): Promise<WorkflowStatus[]> {
    return this.#engine.list(filter)
  }

  /** The instances known to the database: heartbeat age, version, PENDING workflows each owns. */
  executors (): Promise<ExecutorInfo[]> {
    return this.#engine.executors()
  }

  /** Moves a PENDING workflow to another app version, for an instance of that version to adopt (see docs/Guides/scale-out.md). */
  setAppVersion (workflowId: string, appVersion: string | null): Promise<void> {
    return this.#engine.setAppVersion(workflowId, appVersion)
  }

  /** Delivers a message to a workflow's ctx.recv. 404 for an unknown workflow, 409 DBOS_ERR_WORKFLOW_FINISHED for a finished one. */
  send (workflowId: string, message: unknown, options?: SendOptions): Promise<void> {
    return this.#engine.send(workflowId, message, options)
  }

  /** The latest value of a workflow's event `key`, waiting up to `timeoutMs` for one to be set; null then. */
  getEvent<T = unknown> (workflowId: string, key: string, options?: GetEventOptions): Promise<T | null> {
    return this.#engine.getEvent<T>(workflowId, key, options)
  }

  /** Every value a workflow set with ctx.setEvent, in order. */
  listEvents (workflowId: string): Promise<EventInfo[]> {
    return this.#engine.listEvents(workflowId)
  }

  /**
   * The values of a workflow's stream `key` from offset `from` on, as they
   * are written; ends when the stream is closed or the workflow finishes.
   * See sse() for Server-Sent Events.
   */
  readStream<T = unknown> (workflowId: string, key: string, options?: ReadStreamOptions): AsyncGenerator<StreamValue<T>, void, undefined> {
    return this.#engine.readStream<T>(workflowId, key, options)
  }

  /** Cancels a workflow and its children, from any instance. */
  cancel (workflowId: string): Promise<void> {
    return this.#engine.cancel(workflowId)
  }

  /** Continues a CANCELLED, ERROR or MAX_RECOVERY_ATTEMPTS_EXCEEDED workflow from its last completed step. */
  resume<O = unknown> (workflowId: string): Promise<WorkflowHandle<O>> {
    return this.#engine.resume<O>(workflowId)
  }

  /** A new workflow with the same input that reuses the source's results before `fromStep` and runs the rest. */
  fork<O = unknown> (workflowId: string, options: ForkOptions): Promise<WorkflowHandle<O>> {
    return this.#engine.fork<O>(workflowId, options)
  }

  /** Deletes workflows that finished at least `olderThanMs` ago, with their steps, messages, events and streams. */
  deleteFinished (options: DeleteFinishedOptions): Promise<number> {
    return this.#engine.deleteFinished(options)
  }

  /** A page of workflows and the cursor of the next one (keyset paging). */
  listPage (filter?: ListFilter): Promise<WorkflowPage> {
    return this.#engine.listPage(filter)
  }

  /** Enqueues a workflow on a queue (status ENQUEUED until an instance takes it); the handle comes back at once. */
  enqueue<I, O> (queue: QueueDefinition | string, def: WorkflowDefinition<I, O>, input: I, options?: EnqueueOptions): Promise<WorkflowHandle<O>> {
    return this.#engine.enqueue(queue, def, input, options)
  }

  /** Cron schedules: list(), pause(name), resume(name), for every instance. */
  get schedules (): Schedules {
    return this.#engine.schedules
  }

  /** Recorded steps in call order; 404 for an unknown workflow. */
  listSteps (workflowId: string): Promise<StepInfo[]> {
    return this.#engine.listSteps(workflowId)
  }
}
