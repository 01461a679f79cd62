/**
 * The heartbeat: this process's claim on its executor id, renewed every
 * heartbeatMs on a connection of its own (a beat must never wait behind a
 * batch of checkpoints and make a live instance look dead). Each beat also
 * reads the database's clock (Clock) and which executors are dead; their
 * work is adopted (adoption.ts).
 *
 * Silence. A process that could not beat for longer than its lease (frozen
 * by SIGSTOP or a long GC pause, cut off by a partition) may have been
 * declared dead and had its work adopted: a zombie. Its writes are fenced by
 * the epoch anyway; at its first beat after the silence it also checks which
 * of its runs it still owns, stops the others at once, and logs it.
 *
 * A stopped executor's work is adopted at once. An executor whose lease
 * merely expired is adopted from only by an instance that has itself beaten
 * steadily for one lease: after a database outage (everyone silent) the first
 * instance back must not take the work of others that are merely a beat
 * behind, and a process just started (or just back from a silence) cannot
 * tell them apart yet.
 *
 * A thawed process's runs must not begin anything before that check either:
 * a run whose last await was no write (an in-memory sleep, a transaction's
 * COMMIT) would go on to its next step at once. So runs ask current() before
 * a step or transaction begins, and wait once this process has gone three
 * quarters of its lease without a beat landing.
 */
import { nanoid } from 'nanoid'
import type { Clock } from '../core/clock.js'
import type { Logger } from '../core/logger.js'
import { ExecutorIdInUseError } from '../errors.js'
import type { Sql, Tables } from '../store/connect.js'
import { beat, markStopped, registerExecutor } from '../store/executors.js'
import { isConnectionError } from '../store/pg-errors.js'

export interface HeartbeatDeps {
  /** The heartbeat's own connection. */
  sql: Sql
  tables: Tables
  logger: Logger
  clock: Clock
  /** The executor id asked for (option, DBOS_EXECUTOR_ID, or the default). */
  executorId: string
  /** Whether the user chose the id: then a live holder makes start() fail instead of taking a fresh one. */
  chosenId: boolean
  appVersion: string | null
  heartbeatMs: number
  leaseMs: number
  /** Dead executors seen at a steady beat: adopt their work. True when this instance took its whole share, so that some may be left. */
  adopt (dead: string[]): Promise<boolean>
  /** After a silence past the lease: stop the runs of workflows no longer ours. */
  checkOwnership (): Promise<void>
  /** The id was taken over by another process: stop every run here (its work is the new holder's). */
  lostId (): void
}

export class Heartbeat {
  readonly #deps: HeartbeatDeps
  readonly #stopped = new AbortController()
  #executorId: string
  #instance = nanoid()
  #timer: NodeJS.Timeout | undefined
  #tick: Promise<void> | undefined
  #adopting: Promise<void> | undefined
  /** performance.now() of the last beat that landed. */
  #lastBeat = 0
  /** Since when beats have landed without a silence past the lease. */
  #steadySince = 0
  /**
   * performance.now() when the last beat that landed was sent: the database
   * stamped it later than that, so the age counted from here is never less
   * than the one the others judge this process by.
   */
  #sentLanded = 0
  /** A silence past the lease was seen, and no ownership check has succeeded since. */
  #unchecked = false
  /** Settles once a beat lands and its ownership check is done (see current). */
  #landed: { promise: Promise<void>, resolve (): void } | undefined

  constructor (deps: HeartbeatDeps) {
    this.#deps = deps
    this.#executorId = deps.executorId
  }

  /** The executor id this process holds (a fresh one if the default id was held by a live process). */
  get executorId (): string { return this.#executorId }

  /**
   * Takes the executor id. A process restarted with its old id right after
   * a crash finds its own last beat still fresh: it waits for that beat to
   * be older than the lease (at most leaseMs plus one beat) and takes the id
   * over. If the id keeps beating, another live process holds it: a chosen
   * id fails with DBOS_ERR_EXECUTOR_ID_IN_USE; the default id is replaced by
   * a fresh one, with a warning.
   */
  async register (): Promise<void> {
    const { sql, tables, logger, leaseMs, heartbeatMs } = this.#deps
    const registration = { executorId: this.#executorId, instance: this.#instance, appVersion: this.#deps.appVersion, leaseMs }
    const deadline = performance.now() + leaseMs + heartbeatMs
    for (;;) {
      const sentAt = performance.now()
      if (await registerExecutor(sql, tables, registration)) {
        this.#sentLanded = sentAt
        break
      }
      if (performance.now() > deadline) {
        if (this.#deps.chosenId) throw new ExecutorIdInUseError(this.#executorId)
        const taken = this.#executorId
        this.#executorId = `${taken}:${nanoid(8)}`
        logger.warn({ event: 'executor.id_taken', executorId: taken, instead: this.#executorId },
          'another live process holds this executor id; this one takes a fresh id (set executorId or DBOS_EXECUTOR_ID per instance)')
        registration.executorId = this.#executorId
        continue
      }
      await new Promise((resolve) => setTimeout(resolve, Math.min(heartbeatMs, 250)))
    }
    this.#lastBeat = this.#steadySince = performance.now()
  }

  /**
   * Undefined while a beat landed within three quarters of the lease, so
   * that no other process can have declared this one dead. Otherwise (after a
   * freeze, a long pause, or while the database is unreachable) a beat now,
   * and a promise that settles once one lands and the runs of workflows
   * adopted meanwhile are fenced off. A run awaits it before a step or
   * transaction begins.
   */
  current (): Promise<void> | undefined {
    if (this.#stopped.signal.aborted || performance.now() - this.#sentLanded < this.#deps.leaseMs * 0.75) return undefined
    if (this.#landed === undefined) {
      let resolve!: () => void
      const promise = new Promise<void>((r) => { resolve = r })
      this.#landed = { promise, resolve }
    }
    const landed = this.#landed.promise
    this.nudge()
    return landed
  }

  #settleLanded (sentAt: number): void {
    this.#sentLanded = sentAt
    this.#landed?.resolve()
    this.#landed = undefined
  }

  /** Beats every heartbeatMs until stop(). */
  start (): void {
    this.#schedule()
  }

  /** A beat now (an executor stopped, or work was handed off): adopts at once if steady. */
  nudge (): void {
    if (this.#stopped.signal.aborted || this.#tick !== undefined) return
    clearTimeout(this.#timer)
    this.#run()
  }

  #schedule (): void {
    if (this.#stopped.signal.aborted) return
    // A little jitter, so that instances started together do not beat in step.
    const delay = this.#deps.heartbeatMs * (0.9 + Math.random() * 0.2)
    this.#timer = setTimeout(() => this.#run(), delay)
  }

  #run (): void {
    this.#tick = this.#beat().catch((err) => {
      // What a beat calls for (the ownership check, a fresh id) failed: the next beat tries again.
      if (!isConnectionError(err)) this.#deps.logger.error({ event: 'heartbeat.failed', err }, 'heartbeat failed')
    }).finally(() => {
      this.#tick = undefined
      this.#schedule()
    })
  }

  async #beat (): Promise<void> {
    const { sql, tables, clock, logger, leaseMs } = this.#deps
    const sentMono = performance.now()
    const sentAt = Date.now()
    let result
    try {
      result = await beat(sql, tables, this.#executorId, this.#instance)
    } catch (err) {
      if (!isConnectionError(err)) logger.error({ event: 'heartbeat.failed', err }, 'heartbeat failed')
      return
    }
    clock.observe(result.dbNow, sentAt, Date.now())
    const now = performance.now()
    const silence = now - this.#lastBeat
    this.#lastBeat = now
    if (!result.held) {
      logger.error({ event: 'executor.replaced', executorId: this.#executorId },
        'another process took over this executor id while this one was silent; every run here stops')
      this.#deps.lostId()
      await this.#takeFreshId()
      this.#steadySince = now
      return this.#settleLanded(sentMono)
    }
    if (silence > leaseMs || this.#unchecked) {
      if (silence > leaseMs) {
        logger.warn({ event: 'executor.silent', executorId: this.#executorId, silentMs: Math.round(silence) },
          'this process could not beat for longer than its lease: checking which of its workflows are still its own')
      }
      this.#steadySince = now
      // Until a check succeeds, every beat checks again, and runs wait (current()).
      this.#unchecked = true
      await this.#deps.checkOwnership()
      this.#unchecked = false
      return this.#settleLanded(sentMono)
    }
    this.#settleLanded(sentMono)
    const dead = now - this.#steadySince < leaseMs ? result.stopped : [...result.stopped, ...result.expired]
    if (dead.length === 0 || this.#adopting !== undefined) return
    this.#adopting = this.#deps.adopt(dead).then((more) => {
      // Shares are counted from what is left when each instance looks: the
      // last to look may leave some. A beat soon (a few ms apart, so that
      // instances interleave) takes a share of the rest, not a beat later.
      if (more) setTimeout(() => this.nudge(), 5 + Math.random() * 20).unref()
    }, (err) => {
      logger.error({ event: 'adoption.failed', err }, 'adopting the work of dead executors failed; the next beat tries again')
    }).finally(() => { this.#adopting = undefined })
  }

  async #takeFreshId (): Promise<void> {
    this.#executorId = `${this.#deps.executorId}:${nanoid(8)}`
    this.#instance = nanoid()
    await registerExecutor(this.#deps.sql, this.#deps.tables, {
      executorId: this.#executorId, instance: this.#instance, appVersion: this.#deps.appVersion, leaseMs: this.#deps.leaseMs
    })
  }

  /** Stops beating; with `handOff`, marks the id stopped so that the living adopt what is left at once. */
  async stop (handOff: boolean): Promise<void> {
    this.#stopped.abort()
    clearTimeout(this.#timer)
    // Runs waiting in current() end: the engine's stop signal stops them.
    this.#landed?.resolve()
    await this.#tick
    await this.#adopting
    if (handOff) await markStopped(this.#deps.sql, this.#deps.tables, this.#executorId, this.#instance)
  }
}
