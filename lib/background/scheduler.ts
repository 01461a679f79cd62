/**
 * Cron schedules on this instance: a timer per schedule, armed for its next
 * tick by the database's clock. At a tick, every instance that has the
 * schedule starts (or enqueues) its workflow with the id
 * `<schedule>@<tick, ISO 8601>`: the id is unique, so however many instances
 * fire, the tick runs once. A paused schedule (shared state in the schedules
 * table) skips its ticks (they count as done: a backfill does not run them
 * later). Missed ticks: see ScheduleOptions.missed.
 */
import { Cron } from 'croner'
import type { Clock } from '../core/clock.js'
import type { Logger } from '../core/logger.js'
import { MAX_TIMER_MS } from '../core/timers.js'
import type { ScheduleDefinition, ScheduledInput } from '../schedule.js'
import type { Sql, Tables } from '../store/connect.js'
import { getSchedule, markTick, upsertSchedule } from '../store/schedules.js'

/** Most missed ticks one start backfills. */
const MAX_BACKFILL = 1000

export interface SchedulerDeps {
  sql: Sql
  tables: Tables
  logger: Logger
  clock: Clock
  /** Starts (or enqueues) the tick's workflow with this id; a start of an id that exists does nothing. */
  fire (schedule: ScheduleDefinition, workflowId: string, input: ScheduledInput): Promise<void>
}

export class Scheduler {
  readonly #deps: SchedulerDeps
  readonly #schedules: ScheduleDefinition[]
  readonly #timers = new Map<string, NodeJS.Timeout>()
  readonly #firing = new Set<Promise<void>>()
  #stopped = false

  constructor (schedules: ScheduleDefinition[], deps: SchedulerDeps) {
    this.#schedules = schedules
    this.#deps = deps
  }

  async start (): Promise<void> {
    for (const schedule of this.#schedules) {
      const row = await upsertSchedule(this.#deps.sql, this.#deps.tables, { name: schedule.name, cron: schedule.cron, timezone: schedule.options.timezone ?? null })
      if (schedule.options.missed === 'backfill' && row.last_tick !== null) this.#track(this.#backfill(schedule, row.last_tick))
      this.#arm(schedule)
    }
  }

  /** The workflow id of a tick: the same on every instance. */
  static workflowId (schedule: string, tick: Date): string {
    return `${schedule}@${tick.toISOString()}`
  }

  #arm (schedule: ScheduleDefinition): void {
    if (this.#stopped) return
    const now = this.#deps.clock.now()
    const next = new Cron(schedule.cron, { timezone: schedule.options.timezone, paused: true }).nextRun(new Date(now))
    if (next === null) return
    const delay = Math.min(MAX_TIMER_MS, Math.max(0, next.getTime() - now))
    const timer = setTimeout(() => {
      // A long wait is done in legs; a timer that fires early (clock
      // offsets) arms again for the same tick.
      if (this.#deps.clock.now() < next.getTime() - 1) return this.#arm(schedule)
      this.#track(this.#tick(schedule, next))
      this.#arm(schedule)
    }, delay)
    // Schedules do not keep an otherwise idle app alive.
    timer.unref()
    this.#timers.set(schedule.name, timer)
  }

  async #tick (schedule: ScheduleDefinition, tick: Date): Promise<void> {
    const { sql, tables, logger } = this.#deps
    try {
      const state = await getSchedule(sql, tables, schedule.name)
      // A tick skipped while paused is done with, as one that ran: a backfill
      // after the schedule is resumed must not run what the pause skipped.
      if (state?.paused === true) return await markTick(sql, tables, schedule.name, tick)
      await this.#deps.fire(schedule, Scheduler.workflowId(schedule.name, tick), { scheduledAt: tick, schedule: schedule.name })
      await markTick(sql, tables, schedule.name, tick)
    } catch (err) {
      logger.error({ event: 'schedule.tick_failed', err, schedule: schedule.name, tick }, 'could not start a scheduled workflow; another instance may have')
    }
  }

  /** Starts the ticks missed since `last` (the latest MAX_BACKFILL of them), oldest first. */
  async #backfill (schedule: ScheduleDefinition, last: Date): Promise<void> {
    const cron = new Cron(schedule.cron, { timezone: schedule.options.timezone, paused: true })
    const now = this.#deps.clock.now()
    let missed: Date[] = []
    for (let at = cron.nextRun(last); at !== null && at.getTime() <= now; at = cron.nextRun(at)) {
      missed.push(at)
      // The newest are kept: after a long outage, the recent ticks matter most.
      if (missed.length >= 2 * MAX_BACKFILL) missed = missed.slice(-MAX_BACKFILL)
    }
    missed = missed.slice(-MAX_BACKFILL)
    if (missed.length > 0) this.#deps.logger.info({ event: 'schedule.backfill', schedule: schedule.name, count: missed.length }, 'starting the ticks missed while no instance ran')
    for (const tick of missed) {
      if (this.#stopped) return
      await this.#tick(schedule, tick)
    }
  }

  #track (p: Promise<void>): void {
    this.#firing.add(p)
    void p.finally(() => this.#firing.delete(p))
  }

  async stop (): Promise<void> {
    this.#stopped = true
    for (const timer of this.#timers.values()) clearTimeout(timer)
    await Promise.all(this.#firing)
  }
}
