/**
 * Cancel, resume, fork and retention as the engine and the WorkflowClient
 * both do them: the checks of their arguments, and what each answer of the
 * database means to the caller. Where the work then runs (here, or handed to
 * an instance that has the definition) is the caller's part.
 */
import { nanoid } from 'nanoid'
import type { DeleteFinishedOptions, ForkOptions } from '../calls.js'
import { invalidIdReason } from '../core/ids.js'
import { unstorableTextReason } from '../core/text.js'
import {
  InvalidArgumentError, InvalidForkStepError, InvalidWorkflowIdError, QueueDeduplicatedError,
  WorkflowNotFoundError, WorkflowNotResumableError
} from '../errors.js'
import type { Sql, Tables } from '../store/connect.js'
import { cancelTree, deleteFinished, fork, reopen, type CancelledRun } from '../store/control.js'

export interface ControlSql {
  sql: Sql
  /** The pool that carries nothing but transactions (resume and fork are transactions). */
  transactions: Sql
  tables: Tables
}

export function checkId (workflowId: unknown): asserts workflowId is string {
  if (typeof workflowId !== 'string') throw new InvalidWorkflowIdError('must be a string')
  const bad = unstorableTextReason(workflowId)
  if (bad !== undefined) throw new InvalidWorkflowIdError(bad)
}

/** Cancels a workflow and its unfinished descendants; the ids cancelled. 404 if unknown. */
export async function cancelWorkflow (d: ControlSql, workflowId: string, error: string | null = null): Promise<CancelledRun[]> {
  checkId(workflowId)
  const cancelled = await cancelTree(d.sql, d.tables, workflowId, error)
  if (cancelled === null) throw new WorkflowNotFoundError(workflowId)
  return cancelled
}

/**
 * Reopens a CANCELLED, ERROR or MAX_RECOVERY_ATTEMPTS_EXCEEDED workflow for
 * `owner` (store/control.ts reopen). 'resumed': PENDING and the owner's to
 * run; 'enqueued': back on its queue; 'running': it had not finished. 404 if
 * unknown, 409 for a successful one, 409 DBOS_ERR_QUEUE_DEDUPLICATED when
 * another workflow holds its deduplication id on its queue.
 */
export async function reopenWorkflow (d: ControlSql, workflowId: string, owner: string): Promise<'resumed' | 'enqueued' | 'running'> {
  checkId(workflowId)
  const result = await reopen(d.transactions, d.tables, workflowId, owner)
  if (result === 'not-found') throw new WorkflowNotFoundError(workflowId)
  if (result === 'succeeded') throw new WorkflowNotResumableError(workflowId)
  if (typeof result === 'object') throw new QueueDeduplicatedError(result.deduplicated.queue, result.deduplicated.deduplicationId)
  return result
}

/** A fork's step and new id, checked before anything is read. */
export function forkTarget (sourceId: string, options: ForkOptions): { fromStep: number, newId: string } {
  checkId(sourceId)
  const fromStep = options?.fromStep
  if (!Number.isSafeInteger(fromStep) || fromStep < 0) throw new InvalidForkStepError(String(fromStep), 0)
  const newId = options.workflowId ?? nanoid()
  const bad = invalidIdReason(newId) ?? unstorableTextReason(newId)
  if (bad !== undefined) throw new InvalidWorkflowIdError(bad)
  return { fromStep, newId }
}

/**
 * Forks `sourceId` into `newId` for `owner` (store/control.ts fork).
 * 'forked': PENDING and the owner's to run; 'enqueued': the source was
 * queued, and so waits the fork, on its queue.
 */
export async function forkWorkflow (d: ControlSql, f: { sourceId: string, newId: string, fromStep: number, owner: string, appVersion: string | null }): Promise<'forked' | 'enqueued'> {
  const result = await fork(d.transactions, d.tables, f)
  if (result === 'source-not-found') throw new WorkflowNotFoundError(f.sourceId)
  if (result === 'exists') throw new InvalidWorkflowIdError(`${JSON.stringify(f.newId)} is taken`)
  if (typeof result === 'object') throw new InvalidForkStepError(String(f.fromStep), result.invalidStep)
  return result
}

/**
 * Deletes workflows that finished at least `olderThanMs` ago (never a
 * PENDING or queued one), with their steps, messages, events and stream
 * values, in batches. Returns how many workflows were deleted.
 */
export async function deleteFinishedInBatches (d: ControlSql, options: DeleteFinishedOptions): Promise<number> {
  const olderThanMs = options?.olderThanMs
  const batchSize = options?.batchSize ?? 1000
  if (typeof olderThanMs !== 'number' || !(olderThanMs >= 0) || !Number.isFinite(olderThanMs)) {
    throw new InvalidArgumentError('olderThanMs must be a non-negative number of milliseconds')
  }
  if (!Number.isSafeInteger(batchSize) || batchSize < 1 || batchSize > 10_000) throw new InvalidArgumentError('batchSize must be an integer from 1 to 10,000')
  let total = 0
  for (;;) {
    const n = await deleteFinished(d.sql, d.tables, olderThanMs, batchSize)
    total += n
    if (n < batchSize) return total
  }
}
