import type { PreparedInput } from './core/inputs.js'

/** The options of the engine's calls (start, fork, getEvent, readStream, deleteFinished): part of the public surface. */

export interface StartOptions {
  /** Use this id instead of a generated one. Starting again with the same id returns the same workflow. */
  workflowId?: string
  /** Stored with the workflow and filterable in list(). Set from dbos-request-id by the Fastify plugin. */
  requestId?: string | null
  /**
   * Cancels the workflow (and its children) if it has not finished this
   * long after it started: status CANCELLED, DBOS_ERR_WORKFLOW_TIMEOUT. The
   * deadline is stored, so it holds across restarts and adoption. Default:
   * the definition's timeoutMs, else none.
   */
  timeoutMs?: number
}

export type { SendOptions } from './context.js'

export interface ForkOptions {
  /** Steps before this position are reused (their recorded results), the rest runs again. */
  fromStep: number
  /** The new workflow's id. Default: a generated one. */
  workflowId?: string
}

export interface DeleteFinishedOptions {
  /** Only workflows that finished at least this long ago. */
  olderThanMs: number
  /** Workflows deleted per statement. Default 1000. */
  batchSize?: number
}

export interface GetEventOptions {
  /** Return null after this long. Default: wait as long as it takes (null at once if the workflow finished without it). */
  timeoutMs?: number
}

export interface ReadStreamOptions {
  /** The first offset to read (resume where a reader left off). Default 0. */
  from?: number
}

export interface EnqueueOptions extends StartOptions {
  /** Lower runs first; equal priorities run first in, first out. An integer; default 0. */
  priority?: number
  /** While a workflow with this id is ENQUEUED or PENDING in the queue, another enqueue is refused (409). */
  deduplicationId?: string
  /** Not taken before this long from now. */
  delayMs?: number
  /** With a partitioned queue, the limits hold per key. Default: none (one shared partition). */
  partitionKey?: string
  /**
   * Collapses a burst: while a workflow with this key waits in the queue, an
   * enqueue gives it the new input and makes it wait `periodMs` more instead
   * of adding one; the workflow starts `periodMs` after the last enqueue, with
   * the last input. Its id is generated.
   */
  debounce?: { key: string, periodMs: number }
  /**
   * The caller's own postgres.js transaction, on the engine's database: the
   * workflow exists if and only if that transaction commits.
   */
  sql?: { unsafe: (...args: any[]) => any }
}

/** For the Fastify plugin's request layer and the engine's own starts (children, schedules), not for users. */
export interface InternalStart {
  prepared?: PreparedInput
  /** The id was derived from a validated key, so it may be longer than a caller's own. */
  derivedId?: boolean
  /** Started by this workflow's ctx.startChild. */
  parentId?: string
  /** Told whether the start inserted the workflow (false: it existed, an idempotent repeat). */
  report?: (r: { inserted: boolean }) => void
}
