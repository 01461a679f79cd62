/** Engine options, their defaults, and validation. */
import { createHash } from 'node:crypto'
import { hostname } from 'node:os'
import { InvalidOptionError } from './errors.js'
import type { Logger } from './core/logger.js'
import { consoleLogger } from './core/logger.js'
import type { QueueDefinition } from './queue.js'
import type { ScheduleDefinition } from './schedule.js'
import type { WorkflowDefinition } from './workflow.js'

export interface EngineOptions {
  /** Every workflow this engine can start or recover. */
  workflows?: WorkflowDefinition<any, any>[]
  /** Queues this engine enqueues on and takes work from (see defineQueue). */
  queues?: QueueDefinition[]
  /** Cron schedules this engine takes part in (see defineSchedule). */
  schedules?: ScheduleDefinition[]
  /**
   * Postgres connection string. Defaults to the DATABASE_URL environment
   * variable; with neither, an embedded Postgres is started (see embeddedDataDir).
   */
  databaseUrl?: string
  /** Where the embedded Postgres keeps its data. Default: `.dbos/pgdata` in the working directory. */
  embeddedDataDir?: string
  /** Schema holding the engine's tables. Default `dbos`. */
  schema?: string
  /**
   * Names this process as the owner of the workflows it starts; on start-up the
   * engine resumes the PENDING workflows recorded under its id. Default: the
   * DBOS_EXECUTOR_ID environment variable, else one derived from the host name
   * and working directory, so a restarted app finds its own work. Give each
   * instance its own id when several run on one host in one directory.
   */
  executorId?: string
  /**
   * How often this process renews its claim on its executor id (on a
   * connection of its own). Default 1000 ms.
   */
  heartbeatMs?: number
  /**
   * How long after its last heartbeat a process counts as dead, by the
   * database's clock: then the living adopt its PENDING workflows. At least
   * twice heartbeatMs. Default 3000 ms.
   */
  leaseMs?: number
  /**
   * Pins workflows to an app version: with it, this process starts
   * workflows tagged with it and runs (recovers, adopts, wakes) only
   * workflows of this version; without it, only untagged ones. See
   * docs/Guides/scale-out.md. Default: none (any instance runs any workflow
   * whose definition it has).
   */
  appVersion?: string
  /** Times a crashed workflow is resumed before it is marked MAX_RECOVERY_ATTEMPTS_EXCEEDED. Default 10. */
  maxRecoveryAttempts?: number
  /** How long stop() lets running workflows finish before leaving them PENDING. Default 10 000 ms. */
  shutdownTimeoutMs?: number
  /** Connections in the engine's pool. Default 10. */
  poolSize?: number
  /** Fallback poll interval for results finished by another process. Default 1000 ms. */
  resultPollIntervalMs?: number
  /**
   * ctx.sleep waits in memory when at most this much of the sleep is left;
   * longer sleeps suspend the workflow (no memory held) until its wake-up
   * time. Default 5000 ms.
   */
  sleepInMemoryMaxMs?: number
  /**
   * A start with a generated id is written by its first step's checkpoint,
   * one commit instead of two (see docs/Guides/recovery.md, "The first step
   * and the start"). false writes every start before its run begins.
   * Default true.
   */
  startWithFirstStep?: boolean
  /**
   * The databaseUrl goes through a pooler in transaction mode (PgBouncer with
   * pool_mode = transaction): no named prepared statements and no LISTEN
   * (results and adoption fall back to polling). Default false.
   */
  transactionPooling?: boolean
  /**
   * Deletes finished workflows (and their steps, messages, events, streams)
   * once they are older than `finishedOlderThanMs`, every `intervalMs`
   * (default 60 000). Default: keep everything (deleteFinished() does it on
   * demand).
   */
  retention?: { finishedOlderThanMs: number, intervalMs?: number }
  logger?: Logger
}

export interface ResolvedOptions {
  workflows: WorkflowDefinition<any, any>[]
  queues: QueueDefinition[]
  schedules: ScheduleDefinition[]
  databaseUrl: string | undefined
  embeddedDataDir: string | undefined
  schema: string
  executorId: string
  /** Whether the executor id was chosen (option or DBOS_EXECUTOR_ID) rather than derived. */
  executorIdChosen: boolean
  heartbeatMs: number
  leaseMs: number
  appVersion: string | null
  maxRecoveryAttempts: number
  shutdownTimeoutMs: number
  poolSize: number
  resultPollIntervalMs: number
  sleepInMemoryMaxMs: number
  startWithFirstStep: boolean
  transactionPooling: boolean
  retention: { finishedOlderThanMs: number, intervalMs: number } | null
  logger: Logger
}

/** Fewest connections: one each for checkpoints, starts, reads and transactions (see store/connect.ts). */
export const MIN_POOL_SIZE = 4

/** setTimeout's longest delay. */
const MAX_TIMER_MS = 2 ** 31 - 1

export function resolveOptions (o: EngineOptions): ResolvedOptions {
  const resolved: ResolvedOptions = {
    workflows: o.workflows ?? [],
    queues: o.queues ?? [],
    schedules: o.schedules ?? [],
    databaseUrl: o.databaseUrl ?? (process.env.DATABASE_URL || undefined),
    embeddedDataDir: o.embeddedDataDir,
    schema: o.schema ?? 'dbos',
    executorId: o.executorId ?? (process.env.DBOS_EXECUTOR_ID || defaultExecutorId()),
    executorIdChosen: o.executorId !== undefined || Boolean(process.env.DBOS_EXECUTOR_ID),
    heartbeatMs: o.heartbeatMs ?? 1000,
    leaseMs: o.leaseMs ?? 3000,
    appVersion: o.appVersion ?? null,
    maxRecoveryAttempts: o.maxRecoveryAttempts ?? 10,
    shutdownTimeoutMs: o.shutdownTimeoutMs ?? 10_000,
    poolSize: o.poolSize ?? 10,
    resultPollIntervalMs: o.resultPollIntervalMs ?? 1000,
    sleepInMemoryMaxMs: o.sleepInMemoryMaxMs ?? 5000,
    startWithFirstStep: o.startWithFirstStep ?? true,
    transactionPooling: o.transactionPooling ?? false,
    retention: o.retention === undefined ? null : { finishedOlderThanMs: o.retention.finishedOlderThanMs, intervalMs: o.retention.intervalMs ?? 60_000 },
    logger: o.logger ?? consoleLogger
  }
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(resolved.schema)) {
    throw new InvalidOptionError('schema must be a lower-case SQL identifier (letters, digits, underscores)')
  }
  for (const key of ['maxRecoveryAttempts', 'shutdownTimeoutMs', 'resultPollIntervalMs', 'sleepInMemoryMaxMs', 'heartbeatMs', 'leaseMs'] as const) {
    if (!Number.isInteger(resolved[key]) || resolved[key] < 0) throw new InvalidOptionError(`${key} must be a non-negative integer`)
  }
  // A longer timer would overflow setTimeout, which then fires at once: the sleep would end early.
  if (resolved.sleepInMemoryMaxMs > MAX_TIMER_MS) throw new InvalidOptionError(`sleepInMemoryMaxMs must be at most ${MAX_TIMER_MS}`)
  if (!Number.isInteger(resolved.poolSize) || resolved.poolSize < MIN_POOL_SIZE) throw new InvalidOptionError(`poolSize must be an integer of at least ${MIN_POOL_SIZE}`)
  if (resolved.heartbeatMs < 10 || resolved.heartbeatMs > MAX_TIMER_MS) throw new InvalidOptionError(`heartbeatMs must be from 10 to ${MAX_TIMER_MS}`)
  if (resolved.leaseMs < 2 * resolved.heartbeatMs || resolved.leaseMs > MAX_TIMER_MS) throw new InvalidOptionError('leaseMs must be at least twice heartbeatMs')
  if (resolved.appVersion !== null && (typeof resolved.appVersion !== 'string' || resolved.appVersion.length === 0 || resolved.appVersion.includes('\u0000'))) {
    throw new InvalidOptionError('appVersion must be a non-empty string')
  }
  if (resolved.retention !== null) {
    const { finishedOlderThanMs, intervalMs } = resolved.retention
    if (typeof finishedOlderThanMs !== 'number' || !(finishedOlderThanMs >= 0) || !Number.isFinite(finishedOlderThanMs)) {
      throw new InvalidOptionError('retention.finishedOlderThanMs must be a non-negative number of milliseconds')
    }
    if (!Number.isInteger(intervalMs) || intervalMs < 1 || intervalMs > MAX_TIMER_MS) throw new InvalidOptionError(`retention.intervalMs must be an integer from 1 to ${MAX_TIMER_MS}`)
  }
  if (typeof resolved.transactionPooling !== 'boolean') throw new InvalidOptionError('transactionPooling must be a boolean')
  if (typeof resolved.startWithFirstStep !== 'boolean') throw new InvalidOptionError('startWithFirstStep must be a boolean')
  if (typeof resolved.executorId !== 'string' || resolved.executorId.length === 0) throw new InvalidOptionError('executorId must be a non-empty string')
  return resolved
}

/** Stable across restarts of the same app (same host, same directory). */
function defaultExecutorId (): string {
  return `${hostname()}:${createHash('sha256').update(process.cwd()).digest('hex').slice(0, 8)}`
}
