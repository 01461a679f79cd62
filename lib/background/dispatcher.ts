/**
 * The dispatcher of one queue on this instance: takes its ready workflows
 * within the queue's limits (store/queues.ts dispatch) and runs them here.
 *
 * It looks when it is told to (work enqueued anywhere, or a slot freed: the
 * queue channel; a run of this queue ended here), at the time the earliest
 * delayed workflow becomes visible or a rate-limit window reopens, and on a
 * poll as a fallback: every POLL_MS while work waits that it could not take,
 * every IDLE_POLL_MS otherwise (notifications lost while the LISTEN
 * connection was down are also caught when it comes back). One look at a
 * time per queue; each queue has its own dispatcher, so a queue with a
 * large backlog never delays another's.
 */
import type { Clock } from '../core/clock.js'
import type { Logger } from '../core/logger.js'
import { untilReachable } from '../core/retry.js'
import type { QueueDefinition } from '../queue.js'
import type { Sql, Tables } from '../store/connect.js'
import { isConnectionError } from '../store/pg-errors.js'
import { dispatch, ensureQueue, type QueueLimits } from '../store/queues.js'
import type { ClaimedRow } from '../store/rows.js'

/** Workflows one dispatch takes at most. */
const BATCH = 100
/** The fallback poll while work waits that this instance could not take (a limit, or another instance's turn). */
const POLL_MS = 1000
/** The fallback poll of a queue with nothing waiting. */
const IDLE_POLL_MS = 30_000

export interface DispatcherDeps {
  /** The pool that carries nothing but transactions: a dispatch is one. */
  transactions: Sql
  sql: Sql
  tables: Tables
  logger: Logger
  clock: Clock
  signal: AbortSignal
  executorId (): string
  appVersion: string | null
  names (): string[]
  /** The definitions' default timeouts (names and milliseconds, in step), for workflows enqueued without one. */
  defaultTimeouts (): { names: string[], timeoutsMs: number[] }
  /** Runs a workflow this dispatcher took (as recovery resumes one: no steps recorded yet); launches it before it returns. */
  run (row: ClaimedRow): Promise<void>
  /** Marks a dispatch in flight until the returned function is called (Ownership.dispatching). */
  dispatching (): () => void
  /** Without LISTEN (transactionPooling), poll as if work were waiting. */
  polling: boolean
}

export class Dispatcher {
  readonly #deps: DispatcherDeps
  readonly #queue: string
  readonly #limits: QueueLimits
  #timer: NodeJS.Timeout | undefined
  #armedAt = Infinity
  #pass: Promise<void> | undefined
  #again = false
  #stopped = false

  constructor (queue: QueueDefinition, deps: DispatcherDeps) {
    this.#deps = deps
    this.#queue = queue.name
    const o = queue.options
    this.#limits = {
      concurrency: o.concurrency ?? null,
      workerConcurrency: o.workerConcurrency ?? null,
      rateLimit: o.rateLimit ?? null,
      partitioned: o.partitioned ?? false
    }
  }

  async start (): Promise<void> {
    await ensureQueue(this.#deps.sql, this.#deps.tables, this.#queue)
    this.wake()
  }

  /** Looks now (or right after the look in progress). */
  wake (): void {
    if (this.#stopped) return
    if (this.#pass !== undefined) {
      this.#again = true
      return
    }
    clearTimeout(this.#timer)
    this.#timer = undefined
    this.#armedAt = Infinity
    this.#pass = this.#passes().finally(() => { this.#pass = undefined })
  }

  async #passes (): Promise<void> {
    do {
      this.#again = false
      let next: number
      try {
        next = await this.#look()
      } catch (err) {
        if (this.#stopped) return
        this.#deps.logger.error({ event: 'queue.dispatch_failed', err, queue: this.#queue }, 'could not dispatch a queue; trying again shortly')
        next = this.#deps.clock.now() + POLL_MS
      }
      this.#arm(next)
    } while (this.#again && !this.#stopped)
  }

  /** Dispatches until nothing more can be taken now; returns when to look next. */
  async #look (): Promise<number> {
    const d = this.#deps
    for (;;) {
      // Marked in flight until its runs are launched, not merely until it
      // commits (see Ownership.dispatching): d.run launches synchronously.
      const done = d.dispatching()
      let result: Awaited<ReturnType<typeof dispatch>>
      let runs: Promise<void>[]
      try {
        result = await untilReachable(() => dispatch(d.transactions, d.tables, {
          queue: this.#queue, executorId: d.executorId(), names: d.names(), defaultTimeouts: d.defaultTimeouts(), appVersion: d.appVersion, limits: this.#limits, batch: BATCH
        }), { signal: d.signal, stopped: () => STOPPED, unreachable: isConnectionError })
        runs = result.claimed.map((row) => d.run(row).catch((err) => {
          d.logger.error({ event: 'queue.run_failed', err, workflowId: row.workflow_id }, 'could not run a dequeued workflow; it stays PENDING for recovery')
        }))
      } finally {
        done()
      }
      await Promise.all(runs)
      // A full batch: take more at once.
      if (result.claimed.length === BATCH) continue
      const now = d.clock.now()
      const poll = result.more || d.polling ? POLL_MS : IDLE_POLL_MS
      let next = now + poll
      if (result.nextVisibleAt !== null) next = Math.min(next, result.nextVisibleAt)
      // A rate limit: a slot reopens as the window slides; the poll covers it.
      return next
    }
  }

  #arm (at: number): void {
    if (this.#stopped || at >= this.#armedAt) return
    clearTimeout(this.#timer)
    this.#armedAt = at
    this.#timer = setTimeout(() => {
      this.#timer = undefined
      this.#armedAt = Infinity
      this.wake()
    }, Math.max(0, at - this.#deps.clock.now()))
  }

  async stop (): Promise<void> {
    this.#stopped = true
    clearTimeout(this.#timer)
    await this.#pass?.catch(() => {})
  }
}

/** Thrown by the dispatch loop when the engine stops; caught by #passes. */
const STOPPED = new Error('stopped')
