/** `app.workflows`: the engine's API for code outside a request (scripts, jobs, tests). */
import type { Engine } from '../lib/engine/engine.js'
import type { StartOptions } from '../lib/start-options.js'
import type { WorkflowHandle } from '../lib/handle.js'
import type { ExecutorInfo, StepInfo, WorkflowStatus } from '../lib/status.js'
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

  start<I, O> (def: WorkflowDefinition<I, O>, input: I, options?: StartOptions): Promise<WorkflowHandle<O>> {
    return this.#engine.startWorkflow(def, input, options)
  }

  async run<I, O> (def: WorkflowDefinition<I, O>, input: I, options: RunOptions & { requestId?: string } = {}): Promise<O> {
    const { timeoutMs, ...startOptions } = options
    return (await this.start(def, input, startOptions)).getResult({ timeoutMs })
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

  /** Recorded steps in call order; 404 for an unknown workflow. */
  listSteps (workflowId: string): Promise<StepInfo[]> {
    return this.#engine.listSteps(workflowId)
  }
}
