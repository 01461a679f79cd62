/**
 * Cron schedules: each tick starts one workflow, exactly once across every
 * instance (its id is the schedule's name and the tick's time). See
 * docs/Guides/schedules.md.
 */
import { Cron } from 'croner'
import { unstorableTextReason } from './core/text.js'
import { InvalidOptionError } from './errors.js'
import type { QueueDefinition } from './queue.js'
import type { WorkflowDefinition } from './workflow.js'

/** What a scheduled workflow gets as its input. */
export interface ScheduledInput {
  /** The tick it was started for. */
  scheduledAt: Date
  /** The schedule's name. */
  schedule: string
}

export interface ScheduleOptions {
  /** An IANA time zone the cron expression is read in (say 'Europe/Paris'). Default: UTC. */
  timezone?: string
  /** Enqueue each tick's workflow on this queue instead of starting it at once. */
  queue?: QueueDefinition
  /**
   * Ticks missed while no instance ran: 'skip' (the default) starts only
   * ticks from now on; 'backfill' starts each missed one when an instance
   * starts, oldest first; after a very long outage, only the latest 1,000.
   * Ticks that came while the schedule was paused are never backfilled.
   */
  missed?: 'skip' | 'backfill'
}

export interface ScheduleDefinition {
  readonly name: string
  readonly cron: string
  readonly workflow: WorkflowDefinition<ScheduledInput, any>
  readonly options: Readonly<ScheduleOptions>
}

/**
 * Defines a schedule: `workflow` runs at every tick of `cron` (five fields,
 * or six with seconds first). Pass it to the plugin (`schedules: [...]`),
 * with its workflow in `workflows`.
 *
 * @example
 * const nightly = defineSchedule('nightly-report', '0 3 * * *', buildReport, { timezone: 'Europe/Paris' })
 */
export function defineSchedule (name: string, cron: string, workflow: WorkflowDefinition<ScheduledInput, any>, options: ScheduleOptions = {}): ScheduleDefinition {
  if (typeof name !== 'string' || name.length === 0 || name.length > 200 || unstorableTextReason(name) !== undefined || name.includes('@')) {
    throw new InvalidOptionError('defineSchedule: name must be a non-empty string of at most 200 characters, without "@"')
  }
  try {
    // Parses without running anything. The time zone is only read when a
    // run is computed: nextRun() checks it (an unknown one throws RangeError).
    const parsed = new Cron(cron, { timezone: options.timezone, paused: true })
    parsed.nextRun()
    parsed.stop()
  } catch (err) {
    throw new InvalidOptionError(`defineSchedule ${name}: ${(err as Error).message}`)
  }
  if (options.missed !== undefined && options.missed !== 'skip' && options.missed !== 'backfill') {
    throw new InvalidOptionError(`defineSchedule ${name}: missed must be 'skip' or 'backfill'`)
  }
  return Object.freeze({ name, cron, workflow, options: Object.freeze({ ...options }) })
}
