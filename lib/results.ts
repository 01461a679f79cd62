/**
 * Waking getResult callers. In this process a finished run wakes its waiters
 * directly; a workflow finished by another process is announced with NOTIFY
 * (see writeCheckpoints), which we LISTEN for only once somebody waits on a
 * workflow not running here. A slow poll covers notifications lost while the
 * listening connection was down.
 */
import { deserialize } from './codec.js'
import { MaxRecoveryAttemptsError, ResultTimeoutError, ShuttingDownError, WorkflowCancelledError, WorkflowNotFoundError } from './errors.js'
import type { Logger } from './logger.js'
import type { LocalOutcome } from './local-runs.js'
import type { Sql, Tables } from './store/connect.js'
import { ChannelListener } from './store/listener.js'
import { isConnectionError } from './store/pg-errors.js'
import { getOutcome, type WorkflowRow } from './store/workflows.js'

export class ResultWaiters {
  readonly #url: string
  readonly #channel: string
  readonly #logger: Logger
  readonly #waiters = new Map<string, Set<() => void>>()
  #listener: ChannelListener | undefined
  #listening: Promise<void> | undefined

  constructor (url: string, channel: string, logger: Logger) {
    this.#url = url
    this.#channel = channel
    this.#logger = logger
  }

  /** Starts listening for completions from other processes; never throws (the poll is the fallback). */
  listen (): Promise<void> {
    this.#listener ??= new ChannelListener(this.#url, this.#channel, {
      notify: (workflowId) => this.wake(workflowId),
      // Completions announced while we were not subscribed: everyone looks again.
      resubscribed: () => { for (const id of [...this.#waiters.keys()]) this.wake(id) }
    }, this.#logger)
    this.#listening ??= this.#listener.listen().catch((err) => {
      this.#logger.warn({ err }, 'could not LISTEN for workflow completions; polling until it can')
      this.#listening = undefined
    })
    return this.#listening
  }

  /**
   * A promise that resolves on the next wake(workflowId) or after pollMs,
   * whichever is first, and a function to stop waiting (clears the timer).
   */
  wait (workflowId: string, pollMs: number): { woken: Promise<void>, cancel (): void } {
    let set = this.#waiters.get(workflowId)
    if (set === undefined) this.#waiters.set(workflowId, set = new Set())
    let wake!: () => void
    const woken = new Promise<void>((resolve) => { wake = resolve })
    set.add(wake)
    const timer = setTimeout(wake, pollMs)
    const cancel = (): void => {
      clearTimeout(timer)
      set.delete(wake)
      if (set.size === 0 && this.#waiters.get(workflowId) === set) this.#waiters.delete(workflowId)
    }
    return { woken, cancel }
  }

  wake (workflowId: string): void {
    const set = this.#waiters.get(workflowId)
    if (set === undefined) return
    this.#waiters.delete(workflowId)
    for (const wake of set) wake()
  }

  async close (): Promise<void> {
    const listener = this.#listener
    this.#listener = undefined
    this.#listening = undefined
    await listener?.close().catch(() => {})
  }
}

export interface Deadline { at: number, timeoutMs: number | undefined }

export function deadlineAfter (timeoutMs: number | undefined): Deadline {
  return { at: timeoutMs === undefined ? Infinity : Date.now() + timeoutMs, timeoutMs }
}

/** `promise`, or DBOS_ERR_RESULT_TIMEOUT once the deadline passes. */
export function beforeDeadline<T> (promise: Promise<T>, deadline: Deadline, workflowId: string): Promise<T> {
  if (deadline.at === Infinity) return promise
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new ResultTimeoutError(workflowId, deadline.timeoutMs ?? 0)), Math.max(0, deadline.at - Date.now()))
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

/** The result of a finished workflow row (throws its error), or `pending` while it runs. */
export function storedResult (row: Pick<WorkflowRow, 'status' | 'output' | 'error'>, workflowId: string): { pending: true } | { pending: false, value: unknown } {
  if (row.status === 'PENDING') return { pending: true }
  if (row.status === 'SUCCESS') return { pending: false, value: deserialize(row.output!) }
  if (row.error !== null) throw deserialize(row.error)
  throw row.status === 'CANCELLED' ? new WorkflowCancelledError(workflowId) : new MaxRecoveryAttemptsError(workflowId, 0)
}

/** What awaitStored needs of the engine. */
export interface StoredOutcomeSource {
  sql: Sql
  tables: Tables
  results: ResultWaiters
  /** The outcome of this workflow's run in this process, if it has one. */
  local (workflowId: string): Promise<LocalOutcome> | undefined
  pollMs: number
  /** Aborted when the engine stops: waiting ends with DBOS_ERR_SHUTTING_DOWN. */
  signal: AbortSignal
}

/** Reads the outcome; until there is one, waits for a wake-up (local run, NOTIFY) or the next poll. */
export async function awaitStored (src: StoredOutcomeSource, workflowId: string, deadline: Deadline): Promise<unknown> {
  for (;;) {
    const waiter = src.results.wait(workflowId, src.pollMs)
    try {
      const row = await getOutcome(src.sql, src.tables, workflowId).catch((err) => {
        if (isConnectionError(err)) return null // keep waiting through an outage
        throw err
      })
      if (row === undefined) throw new WorkflowNotFoundError(workflowId)
      const result = row === null ? { pending: true as const } : storedResult(row, workflowId)
      if (!result.pending) return result.value
      const local = src.local(workflowId)
      // A LISTEN connection only once something elsewhere must be waited for.
      if (local === undefined) void src.results.listen()
      await beforeDeadline<unknown>(local ?? waiter.woken, deadline, workflowId)
      if (src.signal.aborted) throw new ShuttingDownError()
    } finally {
      waiter.cancel()
    }
  }
}
