/**
 * How one run's step checkpoints reach the database. The run core calls
 * these and nothing else, so it does not know whether its start is written
 * yet: see opening.ts for the writer whose first checkpoint carries the start.
 */
import { WorkflowFencedError } from '../errors.js'
import type { StepWrite } from '../store/rows.js'
import type { Checkpoints } from './checkpoints.js'

export interface RunWrites {
  /**
   * Writes a step checkpoint; resolves once it is durable. Rejects with
   * DBOS_ERR_WORKFLOW_FENCED when the workflow is no longer this run's, or
   * with why the write failed.
   */
  step (row: StepWrite): Promise<void>
  /** Resolves once the run's start is durable, writing it now if no checkpoint carried it yet. */
  started (): Promise<void>
  /**
   * While the start is not durable yet: settles when it is, or rejects with
   * why it could not be written. Undefined once it is (or always was).
   */
  readonly startPending: Promise<void> | undefined
}

/** For a run whose start was written before it was launched. */
export class PlainWrites implements RunWrites {
  readonly #checkpoints: Pick<Checkpoints, 'recordStep'>
  readonly startPending = undefined

  constructor (checkpoints: Pick<Checkpoints, 'recordStep'>) {
    this.#checkpoints = checkpoints
  }

  async step (row: StepWrite): Promise<void> {
    // Not written, yet ours: an earlier try of this very write committed
    // and its answer was lost. Judged by the epoch, never by comparing
    // outputs: equal outputs would let a run that lost the workflow go on.
    if (!await this.#checkpoints.recordStep(row)) throw new WorkflowFencedError(row.workflowId)
  }

  started (): Promise<void> {
    return Promise.resolve()
  }
}
