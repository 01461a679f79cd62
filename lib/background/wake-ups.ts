/**
 * The wake-up scheduler: resumes this executor's suspended workflows (those a
 * long ctx.sleep left PENDING with wake_at set) when their time comes.
 *
 * It holds one timer, armed for the earliest wake-up it knows of, and nothing
 * per workflow: the database is the list of sleepers, so 10,000 sleeping
 * workflows cost no memory here. It learns of new wake-ups when a run in this
 * process suspends, and reads the earliest one from the database at start and
 * after every pass, so wake-ups that fell due while the app was down run as
 * soon as it starts. Due-ness is judged by this process's clock, the one that
 * computed the wake-up times.
 */
import type { Checkpoints } from '../writes/checkpoints.js'
import { WorkflowFencedError } from '../errors.js'
import type { Clock } from '../core/clock.js'
import type { Logger } from '../core/logger.js'
import { untilReachable } from '../core/retry.js'
import type { Sql, Tables } from '../store/connect.js'
import { isConnectionError } from '../store/pg-errors.js'
import { claimMessaged } from '../store/messages.js'
import { claimDue, nextWakeAt } from '../store/wake-ups.js'
import type { ClaimedRow } from '../store/rows.js'

export interface WakeUpDeps {
  /** For the scheduler's reads and claims. */
  sql: Sql
  /**
   * Records a run's suspension: batched on the checkpoint connection, like
   * the run's other writes. Not the general pool, which a transaction running
   * beside the sleep may hold while it waits for the suspension to be recorded.
   */
  checkpoints: Pick<Checkpoints, 'suspend'>
  tables: Tables
  logger: Logger
  /** The executor id this process holds now. */
  executorId (): string
  /** Only workflows of this app version are woken (null: unpinned ones). */
  appVersion: string | null
  /** The database's clock (see core/clock.ts): wake-up times are judged by it. */
  clock: Clock
  /** Sleeps with at most this long left wait in memory; longer ones suspend the workflow. */
  inMemoryMaxMs: number
  /** Resumes a claimed workflow from its checkpoints, as recovery does. */
  resume (row: ClaimedRow): Promise<void>
  /**
   * Names of the registered workflow definitions. Only those are woken: a
   * sleeper whose code this process does not have stays suspended for a
   * process that has it, instead of being claimed and left unrun.
   */
  names (): string[]
  /** A recovery pass over this executor's PENDING workflows (see #wakeDue). */
  recover (): Promise<void>
}

/** Thrown by #reachable's loop when the scheduler stops; never escapes. */
const STOPPED = Symbol('stopped')

/** Workflows claimed per statement: bounds what one statement locks and one pass launches at once. */
const BATCH = 100
/** setTimeout's longest delay; a later wake-up is simply looked for again when it fires. */
const MAX_DELAY_MS = 2 ** 31 - 1
/** A due workflow the claim skipped is locked by another write for a moment: look again this much later, not at once. */
const SKIPPED_RETRY_MS = 100
/** After an unexpected error (not an outage), the next try. */
const FAILED_RETRY_MS = 5000

export class WakeUps {
  readonly inMemoryMaxMs: number
  readonly #deps: WakeUpDeps
  /** Aborted by stop(), before the engine drains its runs: no new wake-ups from then on. */
  readonly #stopped = new AbortController()
  #timer: NodeJS.Timeout | undefined
  #armedAt = Infinity
  #pass: Promise<void> | undefined
  /** The timer fired during a pass: another pass follows it. */
  #again = false
  /** A claim's answer was lost: it may have committed. */
  #claimLost = false
  /** Wake-ups of recv waiters in progress (see messaged). */
  readonly #messagePasses = new Set<Promise<void>>()
  /** Workflows named by messaged() calls since the last claim was sent, or all of them. */
  readonly #messagedIds = new Set<string>()
  #messagedAll = false
  #messagedScheduled = false

  constructor (deps: WakeUpDeps) {
    this.#deps = deps
    this.inMemoryMaxMs = deps.inMemoryMaxMs
  }

  /**
   * Arms the timer for the earliest wake-up of this executor: at once if it
   * fell due while the app was down. Awaited by engine start, so nothing of it
   * runs in the background of an idle app. Never throws: if the read fails,
   * a pass in the background retries it.
   */
  start (): Promise<void> {
    return this.refresh()
  }

  /** Clears the timer and waits for a pass in progress, which launches what it already claimed. */
  async stop (): Promise<void> {
    this.#stopped.abort()
    clearTimeout(this.#timer)
    this.#timer = undefined
    await Promise.all([this.#pass, ...this.#messagePasses])
  }

  /**
   * Records that a run suspends until `wakeAt`, under the run's epoch, and
   * makes sure the timer fires by then. Waits out an unreachable database like
   * checkpoint writes do (DBOS_ERR_ENGINE_STOPPED if the engine stops first).
   * Throws WorkflowFencedError when the run no longer owns the workflow
   * (nothing is written then).
   */
  async suspend (workflowId: string, epoch: string, wakeAt: number): Promise<void> {
    if (!await this.#deps.checkpoints.suspend({ workflowId, epoch, wakeAt: new Date(wakeAt) })) throw new WorkflowFencedError(workflowId)
    this.#learn(wakeAt)
  }

  /** A suspension recorded elsewhere (a long ctx.recv's timeout): the timer fires by `wakeAt`. */
  expect (wakeAt: number): void {
    this.#learn(wakeAt)
  }

  /**
   * Looks for the earliest wake-up again (work adopted from another executor
   * may sleep until earlier than anything known here). Never throws.
   */
  async refresh (): Promise<void> {
    try {
      const next = await this.#next()
      if (next !== null) this.#learn(next)
    } catch {
      this.#fire()
    }
  }

  /** The earliest wake-up time of this executor's sleepers that this process can run, or null. */
  #next (): Promise<number | null> {
    const { sql, tables, appVersion } = this.#deps
    return nextWakeAt(sql, tables, this.#deps.executorId(), appVersion, this.#deps.names())
  }

  /** Arms the timer for `at` unless it is already armed for earlier. */
  #learn (at: number): void {
    if (this.#stopped.signal.aborted || at >= this.#armedAt) return
    clearTimeout(this.#timer)
    this.#armedAt = at
    this.#timer = setTimeout(() => this.#fire(), Math.min(Math.max(0, at - this.#deps.clock.now()), MAX_DELAY_MS))
  }

  #fire (): void {
    this.#timer = undefined
    this.#armedAt = Infinity
    if (this.#pass !== undefined) {
      this.#again = true
      return
    }
    this.#pass = this.#passes().finally(() => { this.#pass = undefined })
  }

  async #passes (): Promise<void> {
    do {
      this.#again = false
      try {
        const next = await this.#reachable(() => this.#wakeDue(), this.#stopped.signal)
        if (typeof next === 'number') this.#learn(next)
        if (this.#claimLost && !this.#stopped.signal.aborted) {
          // Claimed workflows whose answer was lost are PENDING with wake_at
          // cleared and nothing running them: exactly what recovery finds (it
          // counts an attempt for them; this is rare).
          this.#claimLost = false
          await this.#deps.recover()
        }
      } catch (err) {
        this.#deps.logger.error({ event: 'wakeup.failed', err, executorId: this.#deps.executorId() }, 'could not wake sleeping workflows; trying again shortly')
        this.#learn(this.#deps.clock.now() + FAILED_RETRY_MS)
      }
    } while (this.#again && !this.#stopped.signal.aborted)
  }

  /** Claims and resumes due workflows, batch by batch; returns the next wake-up time, or null when nothing sleeps. */
  async #wakeDue (): Promise<number | null> {
    const { sql, tables, clock, appVersion } = this.#deps
    for (;;) {
      const names = this.#deps.names()
      const claimedAt = clock.now()
      const claimed = await claimDue(sql, tables, this.#deps.executorId(), appVersion, names, BATCH).catch((err) => {
        if (isConnectionError(err)) this.#claimLost = true
        throw err
      })
      await Promise.all(claimed.map((row) => this.#resume(row)))
      if (this.#stopped.signal.aborted) return null
      if (claimed.length === BATCH) continue
      const next = await this.#next()
      if (next === null || next > clock.now()) return next
      // Due now. Not yet due at the claim (a timer may fire a little early, or
      // it fell due since): claim again at once. Due then, yet not claimed:
      // skipped as locked by another write for a moment, so look again soon.
      return claimed.length === 0 && next <= claimedAt ? clock.now() + SKIPPED_RETRY_MS : next
    }
  }

  /**
   * Wakes this executor's workflows suspended in ctx.recv that have a message
   * waiting: those named (a notification said a message came), or all of
   * them (null: after the LISTEN connection came back, an adoption, or a
   * recv that suspended just as a message came). Never throws; a miss is
   * caught by the next call or the recv's timeout.
   */
  messaged (ids: string[] | null): void {
    if (this.#stopped.signal.aborted) return
    // Gathered for a turn of the event loop: 10,000 recvs suspending at once
    // (each checks for a message that came meanwhile) share claims instead
    // of sending one statement each.
    if (ids === null) this.#messagedAll = true
    else for (const id of ids) this.#messagedIds.add(id)
    if (this.#messagedScheduled) return
    this.#messagedScheduled = true
    setImmediate(() => {
      this.#messagedScheduled = false
      const all = this.#messagedAll
      const named = [...this.#messagedIds]
      this.#messagedAll = false
      this.#messagedIds.clear()
      if (all) this.#claimMessaged(null)
      else for (let i = 0; i < named.length; i += BATCH) this.#claimMessaged(named.slice(i, i + BATCH))
    })
  }

  #claimMessaged (ids: string[] | null): void {
    if (this.#stopped.signal.aborted) return
    const { sql, tables, appVersion } = this.#deps
    const wake = async (): Promise<void> => {
      for (;;) {
        const claimed = await claimMessaged(sql, tables, this.#deps.executorId(), appVersion, this.#deps.names(), ids, BATCH)
        await Promise.all(claimed.map((row) => this.#resume(row)))
        if (claimed.length < BATCH || this.#stopped.signal.aborted) return
      }
    }
    const pass = this.#reachable(wake, this.#stopped.signal).catch((err) => {
      this.#deps.logger.error({ event: 'wakeup.failed', err }, 'could not wake workflows that have messages waiting; their recv looks again at its timeout')
    })
    this.#messagePasses.add(pass)
    void pass.finally(() => this.#messagePasses.delete(pass))
  }

  /**
   * The claim is committed, so a failure here leaves the workflow PENDING with
   * wake_at cleared: the next start's recovery resumes it.
   */
  async #resume (row: ClaimedRow): Promise<void> {
    try {
      await this.#reachable(() => this.#deps.resume(row), this.#stopped.signal, row.workflow_id)
    } catch (err) {
      this.#deps.logger.error({ event: 'wakeup.resume_failed', err, workflowId: row.workflow_id }, 'could not resume a woken workflow; it stays PENDING and resumes on the next start')
    }
  }

  /** `fn`, retried with backoff while the database is unreachable; undefined once `signal` aborts. */
  async #reachable<T> (fn: () => Promise<T>, signal: AbortSignal, workflowId?: string): Promise<T | undefined> {
    return untilReachable<T | undefined>(fn, {
      signal,
      stopped: () => STOPPED,
      unreachable: (err) => isConnectionError(err) && !signal.aborted,
      onRetry: (err, attempt) => {
        if (attempt === 1) this.#deps.logger.warn({ event: 'database.unreachable', err, workflowId }, 'workflow database unreachable; sleeping workflows wait and retry')
      }
    }).catch((err) => {
      if (err === STOPPED || signal.aborted) return undefined
      throw err
    })
  }
}
