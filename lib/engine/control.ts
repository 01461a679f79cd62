/**
 * Managing workflows from outside their runs, from any instance, whoever
 * owns them: cancel, resume, fork, and deleting finished ones (retention).
 */
import { nanoid } from 'nanoid'
import { serialize } from '../core/codec.js'
import { invalidIdReason } from '../core/ids.js'
import { unstorableTextReason } from '../core/text.js'
import {
  InvalidArgumentError, InvalidForkStepError, InvalidWorkflowIdError, UnknownWorkflowError,
  WorkflowCancelledError, WorkflowNotFoundError, WorkflowNotResumableError, WorkflowTimeoutError
} from '../errors.js'
import type { DeleteFinishedOptions, ForkOptions } from '../calls.js'
import type { Sql, Tables } from '../store/connect.js'
import { cancelTree, deleteFinished, fork, reopen } from '../store/control.js'
import { UNOWNED, announceAdoptable } from '../store/executors.js'
import type { WorkflowDefinition } from '../workflow.js'

export interface ControlDeps {
  sql: Sql
  /** The pool that carries nothing but transactions (resume and fork are transactions). */
  transactions: Sql
  tables: Tables
  executorId (): string
  appVersion: string | null
  definition (name: string): WorkflowDefinition<any, any> | undefined
  /** The workflow's definition name and app version, or undefined if there is no such workflow. */
  identify (workflowId: string): Promise<{ name: string, appVersion: string | null } | undefined>
  /** Claims and runs a PENDING workflow of this executor here (recovery's claimAndResume). */
  runHere (workflowId: string): Promise<void>
  /** Stops the runs here of these workflows, cancelled (their owners elsewhere hear the cancel channel). */
  cancelledHere (workflowIds: string[], reason: (workflowId: string) => Error): void
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
    checkId(workflowId)
    const cancelled = await cancelTree(this.#deps.sql, this.#deps.tables, workflowId, null)
    if (cancelled === null) throw new WorkflowNotFoundError(workflowId)
    // Runs here stop now; owners elsewhere hear it on the cancel channel.
    this.#deps.cancelledHere(cancelled, (id) => new WorkflowCancelledError(id))
  }

  /** The engine's own cancellation of a workflow past its deadline (the run here stops by itself). */
  async timeOut (workflowId: string): Promise<void> {
    const cancelled = await cancelTree(this.#deps.sql, this.#deps.tables, workflowId, serialize(new WorkflowTimeoutError(workflowId)))
    this.#deps.cancelledHere(cancelled ?? [], (id) => id === workflowId ? new WorkflowTimeoutError(id) : new WorkflowCancelledError(id))
  }

  /**
   * Continues a CANCELLED, ERROR or MAX_RECOVERY_ATTEMPTS_EXCEEDED workflow
   * from its last step that completed without an error (that step's error,
   * and everything after it, run again), with no timeout. Runs here if this
   * instance has its definition (and version), else it is handed to one that
   * has. A PENDING one is left running. DBOS_ERR_WORKFLOW_NOT_RESUMABLE (409)
   * for a successful one, 404 if unknown.
   */
  async resume (workflowId: string): Promise<void> {
    checkId(workflowId)
    const d = this.#deps
    const found = await d.identify(workflowId)
    if (found === undefined) throw new WorkflowNotFoundError(workflowId)
    // Here if this instance can run it; else for an instance that can to adopt.
    const here = d.definition(found.name) !== undefined && found.appVersion === d.appVersion
    const result = await reopen(d.transactions, d.tables, workflowId, here ? d.executorId() : UNOWNED)
    if (result === 'not-found') throw new WorkflowNotFoundError(workflowId)
    if (result === 'succeeded') throw new WorkflowNotResumableError(workflowId)
    if (result !== 'resumed') return
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
    checkId(sourceId)
    const d = this.#deps
    const { fromStep } = options
    if (!Number.isSafeInteger(fromStep) || fromStep < 0) throw new InvalidForkStepError(String(fromStep), 0)
    const newId = options.workflowId ?? nanoid()
    const bad = invalidIdReason(newId) ?? unstorableTextReason(newId)
    if (bad !== undefined) throw new InvalidWorkflowIdError(bad)
    const found = await d.identify(sourceId)
    if (found === undefined) throw new WorkflowNotFoundError(sourceId)
    // The fork runs here (on this instance's code and version).
    if (d.definition(found.name) === undefined) throw new UnknownWorkflowError(found.name)
    const result = await fork(d.transactions, d.tables, { sourceId, newId, fromStep, owner: d.executorId(), appVersion: d.appVersion })
    if (result === 'source-not-found') throw new WorkflowNotFoundError(sourceId)
    if (result === 'exists') throw new InvalidWorkflowIdError(`${JSON.stringify(newId)} is taken`)
    if (typeof result === 'object') throw new InvalidForkStepError(String(fromStep), result.invalidStep)
    await d.runHere(newId)
    return newId
  }

  /**
   * Deletes workflows that finished at least `olderThanMs` ago (never a
   * PENDING one), with their steps, messages, events and stream values, in
   * batches. Returns how many workflows were deleted.
   */
  async deleteFinished (options: DeleteFinishedOptions): Promise<number> {
    const { olderThanMs } = options
    const batchSize = options.batchSize ?? 1000
    if (typeof olderThanMs !== 'number' || !(olderThanMs >= 0) || !Number.isFinite(olderThanMs)) {
      throw new InvalidArgumentError('olderThanMs must be a non-negative number of milliseconds')
    }
    if (!Number.isSafeInteger(batchSize) || batchSize < 1 || batchSize > 10_000) throw new InvalidArgumentError('batchSize must be an integer from 1 to 10,000')
    let total = 0
    for (;;) {
      const n = await deleteFinished(this.#deps.sql, this.#deps.tables, olderThanMs, batchSize)
      total += n
      if (n < batchSize) return total
    }
  }
}

function checkId (workflowId: unknown): void {
  if (typeof workflowId !== 'string') throw new InvalidWorkflowIdError('must be a string')
  const bad = unstorableTextReason(workflowId)
  if (bad !== undefined) throw new InvalidWorkflowIdError(bad)
}
