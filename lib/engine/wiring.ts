/**
 * The engine's parts over an open database, built and connected once per
 * start(): each part is given the few functions it needs from the others.
 */
import { adopt } from '../background/adoption.js'
import { Heartbeat } from '../background/heartbeat.js'
import { claimAndResume, recoverUntilDone, resumeWoken, type RecoveryDeps } from '../background/recovery.js'
import { WakeUps } from '../background/wake-ups.js'
import { Clock } from '../core/clock.js'
import type { ResolvedOptions } from '../options.js'
import { lostRuns } from '../store/adoption.js'
import { Notifications } from '../store/listener.js'
import { getOutcome, releaseWorkflows } from '../store/workflows.js'
import type { WorkflowDefinition } from '../workflow.js'
import { Checkpoints } from '../writes/checkpoints.js'
import type { Database } from './database.js'
import { LocalRuns } from './local-runs.js'
import { Ownership } from './ownership.js'
import { Queries } from './queries.js'
import { ResultWaiters } from './results.js'
import { Starts } from './starts.js'

/** What start() builds; gone again after stop(). */
export interface Live {
  db: Database
  clock: Clock
  checkpoints: Checkpoints
  notifications: Notifications
  results: ResultWaiters
  wakeUps: WakeUps
  heartbeat: Heartbeat
  runs: LocalRuns
  starts: Starts
  queries: Queries
  recovery: RecoveryDeps
  /** Runs a recovery pass in the background (recovery of this executor's own work). */
  recover (): void
  /** Resolves once every recovery pass started so far has ended. */
  recovered (): Promise<void>
}

export interface WireContext {
  options: ResolvedOptions
  url: string
  definitions: Map<string, WorkflowDefinition<any, any>>
  /** Aborted when the engine stops. */
  signal: AbortSignal
}

export function wire (db: Database, { options, url, definitions, signal }: WireContext): Live {
  const { logger } = options
  const { pools, tables } = db
  const sql = pools.sql
  const names = (): string[] => [...definitions.keys()]
  const clock = new Clock()
  const checkpoints = new Checkpoints(pools, tables, logger, signal)
  const notifications = new Notifications(url, logger, { enabled: !options.transactionPooling })
  const results = new ResultWaiters()
  // Assigned below: the parts refer to each other through these closures.
  let runs!: LocalRuns
  let recovery!: RecoveryDeps
  let passes: Promise<void> = Promise.resolve()
  const recover = (): void => {
    passes = Promise.all([passes, recoverUntilDone(recovery)]).then(() => {})
  }
  const executorId = (): string => heartbeat.executorId
  const ownership = new Ownership((id) => runs.has(id))
  const wakeUps = new WakeUps({
    sql, tables, checkpoints, logger, executorId, clock,
    appVersion: options.appVersion,
    inMemoryMaxMs: options.sleepInMemoryMaxMs,
    resume: (row) => resumeWoken(recovery, row),
    names,
    recover: () => recoverUntilDone(recovery)
  })
  const heartbeat: Heartbeat = new Heartbeat({
    sql: pools.heartbeat,
    tables,
    logger,
    clock,
    executorId: options.executorId,
    chosenId: options.executorIdChosen,
    appVersion: options.appVersion,
    heartbeatMs: options.heartbeatMs,
    leaseMs: options.leaseMs,
    adopt: async (dead) => {
      await adopt({
        sql, tables, logger, signal, executorId, names,
        appVersion: options.appVersion,
        adopted: async () => {
          recover()
          await wakeUps.refresh()
        }
      }, dead)
    },
    checkOwnership: async () => {
      // Only the runs asked about: one launched meanwhile is this process's own.
      const fenced = runs.fence(await lostRuns(sql, tables, executorId(), runs.owned()))
      if (fenced.length > 0) {
        logger.warn({ event: 'executor.zombie_runs_stopped', count: fenced.length, workflowIds: fenced },
          'stopped the runs of workflows another executor adopted while this process was silent')
      }
    },
    lostId: () => { runs.fence() }
  })
  runs = new LocalRuns({
    logger,
    signal,
    checkpoints,
    run: {
      sql,
      transactions: pools.transactions,
      tables,
      signal,
      sleepInMemoryMaxMs: options.sleepInMemoryMaxMs,
      now: () => clock.now(),
      suspend: (workflowId, epoch, wakeAt) => wakeUps.suspend(workflowId, epoch, wakeAt),
      heartbeatCurrent: () => heartbeat.current()
    },
    complete: (row) => checkpoints.complete(row),
    release: (rows) => releaseWorkflows(sql, tables, rows),
    finished: (workflowId) => results.wake(workflowId)
  })
  recovery = {
    sql,
    tables,
    complete: (row) => checkpoints.complete(row),
    logger,
    executorId,
    appVersion: options.appVersion,
    signal,
    maxRecoveryAttempts: options.maxRecoveryAttempts,
    definition: (name) => definitions.get(name),
    claims: ownership,
    resume: (def, row, input, steps) => runs.launch(def, row.workflow_id, row.epoch, input, row.request_id, steps),
    settled: (workflowId, ms) => runs.settled(workflowId, ms, signal),
    probing: { active: false }
  }
  results.connect({
    read: (id) => getOutcome(sql, tables, id),
    subscribeLocal: (id, listener) => runs.subscribe(id, listener),
    pollMs: options.resultPollIntervalMs,
    signal,
    listen: (handler) => notifications.listen(tables.channel, handler)
  })
  const starts = new Starts({
    executorId,
    appVersion: options.appVersion,
    checkpoints,
    ownership,
    launch: (...args) => runs.launch(...args),
    running: (id) => runs.has(id),
    resumeOrphan: (workflowId) => {
      claimAndResume(recovery, workflowId).catch((err) => {
        logger.error({ event: 'recovery.failed', err, workflowId }, 'could not resume a pending workflow; it resumes on the next start')
      })
    },
    startWithFirstStep: options.startWithFirstStep
  })
  const queries = new Queries({ sql, tables, ensureStarted: (id) => runs.ensureStarted(id) })
  return {
    db, clock, checkpoints, notifications, results, wakeUps, heartbeat, runs, starts, queries, recovery,
    recover,
    recovered: () => passes
  }
}
