/** Handles: a workflow id plus ways to wait for and inspect that workflow. */
import type { WorkflowStatus } from './status.js'

export interface GetResultOptions {
  /** Reject with DBOS_ERR_RESULT_TIMEOUT (504) after this long. Default: wait as long as it takes. */
  timeoutMs?: number
}

/** What a handle needs from its engine. */
export interface HandleSource {
  getResult (workflowId: string, options?: GetResultOptions): Promise<unknown>
  getStatus (workflowId: string): Promise<WorkflowStatus>
}

export class WorkflowHandle<O = unknown> {
  readonly workflowId: string
  readonly #source: HandleSource

  constructor (source: HandleSource, workflowId: string) {
    this.#source = source
    this.workflowId = workflowId
  }

  /**
   * Resolves with the workflow's return value once it finishes, or rejects with
   * the error it threw. Wakes on completion (in this process directly, from
   * others by LISTEN/NOTIFY), with a slow poll as a safety net.
   */
  getResult (options?: GetResultOptions): Promise<O> {
    return this.#source.getResult(this.workflowId, options) as Promise<O>
  }

  getStatus (): Promise<WorkflowStatus> {
    return this.#source.getStatus(this.workflowId)
  }

  toJSON (): { workflowId: string } {
    return { workflowId: this.workflowId }
  }
}
