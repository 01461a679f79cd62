/** app.workflows.schedules: the cron schedules' shared state, for every instance. */
import { ScheduleNotFoundError } from '../errors.js'
import { listSchedules, setPaused } from '../store/schedules.js'
import { unavailableAs503 } from '../store/unavailable.js'
import type { Database } from './database.js'

export interface ScheduleInfo {
  name: string
  cron: string
  timezone: string | null
  paused: boolean
  /** The latest tick handled: its workflow started, or skipped while paused. */
  lastTick: Date | null
}

export class Schedules {
  readonly #db: () => Database

  constructor (db: () => Database) {
    this.#db = db
  }

  async list (): Promise<ScheduleInfo[]> {
    const { pools, tables } = this.#db()
    return (await unavailableAs503(() => listSchedules(pools.sql, tables))).map((r) => ({ name: r.name, cron: r.cron, timezone: r.timezone, paused: r.paused, lastTick: r.last_tick }))
  }

  /** Its ticks are skipped on every instance until resume(). */
  async pause (name: string): Promise<void> {
    await this.#set(name, true)
  }

  async resume (name: string): Promise<void> {
    await this.#set(name, false)
  }

  async #set (name: string, paused: boolean): Promise<void> {
    const { pools, tables } = this.#db()
    if (!await unavailableAs503(() => setPaused(pools.sql, tables, name, paused))) throw new ScheduleNotFoundError(name)
  }
}
