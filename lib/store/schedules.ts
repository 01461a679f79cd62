/** SQL for cron schedules: their shared state (paused, last tick). */
import type { Sql, Tables } from './connect.js'

export interface ScheduleRow {
  name: string
  cron: string
  timezone: string | null
  paused: boolean
  last_tick: Date | null
  updated_at: Date
}

/** Records a schedule (its expression may have changed with a deploy); keeps its state. */
export async function upsertSchedule (sql: Sql, t: Tables, s: { name: string, cron: string, timezone: string | null }): Promise<ScheduleRow> {
  const [row] = await sql<ScheduleRow[]>`
    INSERT INTO ${t.schedules} (name, cron, timezone) VALUES (${s.name}, ${s.cron}, ${s.timezone}::text)
    ON CONFLICT (name) DO UPDATE SET cron = EXCLUDED.cron, timezone = EXCLUDED.timezone, updated_at = now()
    RETURNING name, cron, timezone, paused, last_tick, updated_at`
  return row!
}

export async function getSchedule (sql: Sql, t: Tables, name: string): Promise<ScheduleRow | undefined> {
  const [row] = await sql<ScheduleRow[]>`
    SELECT name, cron, timezone, paused, last_tick, updated_at FROM ${t.schedules} WHERE name = ${name}`
  return row
}

/** Remembers that the workflow of `tick` was started (the latest one wins). */
export async function markTick (sql: Sql, t: Tables, name: string, tick: Date): Promise<void> {
  await sql`UPDATE ${t.schedules} SET last_tick = greatest(last_tick, ${tick}::timestamptz) WHERE name = ${name}`
}

export async function listSchedules (sql: Sql, t: Tables): Promise<ScheduleRow[]> {
  return sql<ScheduleRow[]>`SELECT name, cron, timezone, paused, last_tick, updated_at FROM ${t.schedules} ORDER BY name`
}

/** Pauses or resumes a schedule, for every instance; false if there is none with this name. */
export async function setPaused (sql: Sql, t: Tables, name: string, paused: boolean): Promise<boolean> {
  const rows = await sql`UPDATE ${t.schedules} SET paused = ${paused}, updated_at = now() WHERE name = ${name} RETURNING 1`
  return rows.length === 1
}
