/**
 * Managing workflows from outside their runs, from any instance, whoever
 * owns them: cancel, resume, fork, and deleting finished ones (retention).
 */
import { serialize } from '../core/codec.js'
import { UnknownWorkflowError, WorkflowCancelledError, WorkflowNotFoundError, WorkflowTimeoutError } from '../errors.js'
import type { DeleteFinishedOptions, ForkOptions } from '../calls.js'
import {
  cancelWorkflow, checkId, deleteFinishedInBatches, forkTarget, forkWorkflow, reopenWorkflow, type ControlSql
} from '../client/control.js'
import { cancelTree, type CancelledRun } from '../store/control.js'
import { UNOWNED, announceAdoptable } from '../store/executors.js'
import type { WorkflowDefinition } from '../workflow.js'

export interface ControlDeps extends ControlSql {
  executorId (): string
  appVersion: string | null
  definition (name: string): WorkflowDefinition<any, any> | undefined
  /** The workflow's definition name and app version, or undefined if there is no such workflow. */
  identify (workflowId: string): Promise<{ name: string, appVersion: string | null } | undefined>
  /** Claims and runs a PENDING workflow of this executor here (recovery's claimAndResume). */
  runHere (workflowId: string): Promise<void>
  /** Stops the runs here of these workflows at these epochs, cancelled (their owners elsewhere hear the cancel channel). */
  cancelledHere (cancelled: CancelledRun[], reason: (workflowId: string) => Error): void
}

export class Control {
  readonly #deps: ControlDeps

  constructor (deps: ControlDeps) {
    this.#deps = deps
  }

  /**
   * Cancels a workflow that has not finished, and its children: status
   * CANCELLED, waiters get DBOS_ERR_WORKFLOW_CANCELLED (409), and its run
   * (wherever it runs) stops at its next step, a running step seeing its
   * signal abort. A finished workflow is left as it is. 404 if unknown.
   */
  async cancel (workflowId: string): Promise<void> {
    const cancelled = await cancelWorkflow(this.#deps, workflowId)
    // Runs here stop now; owners elsewhere hear it on the cancel channel.
    this.#deps.cancelledHere(cancelled, (id) => new WorkflowCancelledError(id))
  }

  /**
   * The engine's own cancellation of a workflow past its deadline (the run
   * here stops by itself). Only while it is still at the run's epoch: a run
   * that was cancelled and resumed meanwhile is not this run's to time out.
   */
  async timeOut (workflowId: string, epoch: string): Promise<void> {
    const cancelled = await cancelTree(this.#deps.sql, this.#deps.tables, workflowId, serialize(new WorkflowTimeoutError(workflowId)), epoch)
    this.#deps.cancelledHere(cancelled ?? [], (id) => id === workflowId ? new WorkflowTimeoutError(id) : new WorkflowCancelledError(id))
  }

  /**
   * Continues a CANCELLED, ERROR or MAX_RECOVERY_ATTEMPTS_EXCEEDED workflow
   * from its last step that completed without an error (that step's error,
   * and everything after it, run again), with no timeout. Runs here if this
   * instance has its definition (and version), else it is handed to one that
   * has; a queued one goes back on its queue. A PENDING one is left running.
   * DBOS_ERR_WORKFLOW_NOT_RESUMABLE (409) for a successful one, 404 if unknown.
   */
  async resume (workflowId: string): Promise<void> {
    checkId(workflowId)
    const d = this.#deps
    const found = await d.identify(workflowId)
    if (found === undefined) throw new WorkflowNotFoundError(workflowId)
    // Here if this instance can run it; else for an instance that can to adopt.
    const here = d.definition(found.name) !== undefined && found.appVersion === d.appVersion
    if (await reopenWorkflow(d, workflowId, here ? d.executorId() : UNOWNED) !== 'resumed') return
    if (here) await d.runHere(workflowId)
    else await announceAdoptable(d.sql, d.tables)
  }

  /**
   * A new workflow with the source's definition and input that reuses its
   * recorded results for steps before `fromStep` and runs the rest. Returns
   * the new id. 404 if the source is unknown; DBOS_ERR_INVALID_FORK_STEP
   * (400) past one after its last recorded step.
   */
  async fork (sourceId: string, options: ForkOptions): Promise<string> {
    const d = this.#deps
    const { fromStep, newId } = forkTarget(sourceId, options)
    const found = await d.identify(sourceId)
    if (found === undefined) throw new WorkflowNotFoundError(sourceId)
    // The fork runs here (on this instance's code and version).
    if (d.definition(found.name) === undefined) throw new UnknownWorkflowError(found.name)
    // A fork of a queued workflow waits on its queue instead.
    if (await forkWorkflow(d, { sourceId, newId, fromStep, owner: d.executorId(), appVersion: d.appVersion }) === 'forked') await d.runHere(newId)
    return newId
  }

  /**
   * Deletes workflows that finished at least `olderThanMs` ago (never a
   * PENDING one), with their steps, messages, events and stream values, in
   * batches. Returns how many workflows were deleted.
   */
  async deleteFinished (options: DeleteFinishedOptions): Promise<number> {
    return deleteFinishedInBatches(this.#deps, options)
  }
}
