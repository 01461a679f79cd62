/**
 * Waiting for workflow results (getResult).
 *
 * All callers waiting on one workflow in this process share one watch: one
 * look at a time, however many wait. A run in this process hands its outcome
 * to the watch directly; a workflow finished elsewhere is announced with
 * NOTIFY (see writeCheckpoints), which we LISTEN for only once somebody waits
 * on a workflow not running here; a slow poll covers notifications lost while
 * the listening connection was down. A caller that times out leaves nothing
 * behind: its timer is cleared and, if it was the last, the watch ends.
 */
import { deserialize } from '../core/codec.js'
import {
  MaxRecoveryAttemptsError, ResultTimeoutError, ShuttingDownError,
  WorkflowCancelledError, WorkflowFencedError, WorkflowNotFoundError, WorkflowSuspendedError
} from '../errors.js'
import type { ChannelHandler } from '../store/listener.js'
import { isConnectionError } from '../store/pg-errors.js'
import type { WorkflowRow } from '../store/rows.js'
import { checkTimeout, LongTimer } from '../core/timers.js'

export type LocalOutcome = { ok: true, value: unknown } | { ok: false, error: unknown }

type StoredOutcome = Pick<WorkflowRow, 'status' | 'output' | 'error'>

export interface ResultSources {
  /** The stored outcome; undefined when there is no such workflow. */
  read (workflowId: string): Promise<StoredOutcome | undefined>
  /**
   * Calls `listener` once with the outcome of the workflow's run in this
   * process, if it runs here; returns how to stop listening, or undefined.
   */
  subscribeLocal (workflowId: string, listener: (outcome: LocalOutcome) => void): (() => void) | undefined
  pollMs: number
  /** Aborted when the engine stops: waiting ends with DBOS_ERR_SHUTTING_DOWN. */
  signal: AbortSignal
  /** Subscribes to the completions channel (store/listener.ts); never rejects. */
  listen (handler: ChannelHandler): Promise<void>
}

interface Waiter {
  resolve (value: unknown): void
  reject (err: unknown): void
}

/** The shared wait for one workflow's outcome. */
class Watch {
  readonly waiters = new Set<Waiter>()
  /** wake() was called: the workflow finished, here or elsewhere. */
  woken = false
  #nudge: (() => void) | undefined

  /** Resolves on the next nudge(). */
  nudged (): Promise<void> {
    return new Promise<void>((resolve) => { this.#nudge = resolve })
  }

  nudge (): void {
    const nudge = this.#nudge
    this.#nudge = undefined
    nudge?.()
  }

  settle (outcome: LocalOutcome): void {
    for (const w of this.waiters) outcome.ok ? w.resolve(outcome.value) : w.reject(outcome.error)
    this.waiters.clear()
  }
}

export class ResultWaiters {
  readonly #watches = new Map<string, Watch>()
  #sources: ResultSources | undefined
  #listening: Promise<void> | undefined

  /** Where outcomes come from; set once the engine's runs exist. */
  connect (sources: ResultSources): void {
    this.#sources = sources
    // Every watch looks once more, sees the stop, and ends its waiters.
    sources.signal.addEventListener('abort', () => { for (const watch of this.#watches.values()) watch.nudge() }, { once: true })
  }

  /** Workflows being watched: none once every waiter is gone. */
  get watching (): number { return this.#watches.size }
  /** Outcome reads made so far: one per look, however many wait. */
  looks = 0

  /**
   * The workflow's result once it finishes (rejects with its error), or
   * DBOS_ERR_RESULT_TIMEOUT after `timeoutMs`.
   */
  wait (workflowId: string, timeoutMs: number | undefined): Promise<unknown> {
    const ms = checkTimeout(timeoutMs)
    let watch = this.#watches.get(workflowId)
    const fresh = watch === undefined
    if (watch === undefined) this.#watches.set(workflowId, watch = new Watch())
    const w = watch
    const result = new Promise<unknown>((resolve, reject) => {
      let timer: LongTimer | undefined
      const waiter: Waiter = {
        resolve: (value) => { timer?.clear(); resolve(value) },
        reject: (err) => { timer?.clear(); reject(err) }
      }
      if (ms !== Infinity) {
        timer = new LongTimer(ms, () => {
          w.waiters.delete(waiter)
          // The last one gone: the watch ends now rather than at its next look.
          if (w.waiters.size === 0) w.nudge()
          reject(new ResultTimeoutError(workflowId, ms))
        })
      }
      w.waiters.add(waiter)
    })
    if (fresh) void this.#watch(workflowId, w)
    return result
  }

  /** A workflow finished (in this process, or announced by NOTIFY): its watch looks again. */
  wake (workflowId: string): void {
    const watch = this.#watches.get(workflowId)
    if (watch === undefined) return
    watch.woken = true
    watch.nudge()
  }

  /** Looks until the outcome is known or nobody waits any more; never rejects. */
  async #watch (workflowId: string, watch: Watch): Promise<void> {
    const src = this.#sources!
    try {
      while (watch.waiters.size > 0) {
        if (src.signal.aborted) return watch.settle({ ok: false, error: new ShuttingDownError() })
        let next = watch.nudged()
        let localOutcome: LocalOutcome | undefined
        const unsubscribe = src.subscribeLocal(workflowId, (outcome) => {
          localOutcome = outcome
          watch.nudge()
        })
        if (unsubscribe !== undefined) {
          // Runs here: its outcome comes straight from the run, no reads.
          // Not even a stop ends this wait: a stopped run ends soon after
          // with DBOS_ERR_ENGINE_STOPPED, which is what its waiters get.
          watch.woken = false
          while (localOutcome === undefined && !watch.woken && watch.waiters.size > 0) {
            await next
            next = watch.nudged()
          }
          unsubscribe()
          if (watch.waiters.size === 0) return
          if (localOutcome !== undefined && !stoppedWithoutOutcome(localOutcome)) return watch.settle(localOutcome)
          // Fenced or suspended (whoever holds it now writes the outcome), or
          // woken by a NOTIFY from another process: look in the database.
          next = watch.nudged()
        }
        if (src.signal.aborted) continue
        const stored = await this.#look(src, workflowId)
        if (stored !== 'pending') return watch.settle(stored)
        if (unsubscribe === undefined) void this.#listen()
        let timer: NodeJS.Timeout | undefined
        await Promise.race([next, new Promise<void>((resolve) => { timer = setTimeout(resolve, src.pollMs) })])
        clearTimeout(timer)
      }
    } catch (err) {
      watch.settle({ ok: false, error: err })
    } finally {
      if (this.#watches.get(workflowId) === watch) this.#watches.delete(workflowId)
    }
  }

  /** The stored outcome, 'pending' while it runs or while the database cannot be read. */
  async #look (src: ResultSources, workflowId: string): Promise<LocalOutcome | 'pending'> {
    let row: StoredOutcome | undefined
    this.looks++
    try {
      row = await src.read(workflowId)
    } catch (err) {
      if (isConnectionError(err)) return 'pending' // keep waiting through an outage
      throw err
    }
    if (row === undefined) return { ok: false, error: new WorkflowNotFoundError(workflowId) }
    try {
      const result = storedResult(row, workflowId)
      return result.pending ? 'pending' : { ok: true, value: result.value }
    } catch (error) {
      return { ok: false, error }
    }
  }

  /**
   * Starts listening for completions from other processes, once somebody
   * waits on a workflow not running here; never throws (the poll is the
   * fallback).
   */
  #listen (): Promise<void> {
    this.#listening ??= this.#sources!.listen({
      notify: (workflowId) => this.wake(workflowId),
      // Completions announced while we were not subscribed: every watch looks again.
      resubscribed: () => { for (const id of [...this.#watches.keys()]) this.wake(id) }
    })
    return this.#listening
  }

  /** Every watch looks once more and ends its waiters (the engine is stopping). */
  close (): void {
    for (const watch of this.#watches.values()) watch.nudge()
  }
}

function stoppedWithoutOutcome (outcome: LocalOutcome): boolean {
  return !outcome.ok && (outcome.error instanceof WorkflowFencedError || outcome.error instanceof WorkflowSuspendedError)
}

/** The result of a finished workflow row (throws its error), or `pending` while it runs. */
export function storedResult (row: StoredOutcome, workflowId: string): { pending: true } | { pending: false, value: unknown } {
  if (row.status === 'PENDING' || row.status === 'ENQUEUED') return { pending: true }
  if (row.status === 'SUCCESS') return { pending: false, value: deserialize(row.output!) }
  if (row.error !== null) throw deserialize(row.error)
  throw row.status === 'CANCELLED' ? new WorkflowCancelledError(workflowId) : new MaxRecoveryAttemptsError(workflowId, 0)
}
