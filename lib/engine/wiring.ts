/**
 * The engine's parts over an open database, built and connected once per
 * start(): each part is given the few functions it needs from the others.
 */
import { adopt } from '../background/adoption.js'
import { Heartbeat } from '../background/heartbeat.js'
import { claimAndResume, recoverUntilDone, resumeWoken, type RecoveryDeps } from '../background/recovery.js'
import { Dispatcher } from '../background/dispatcher.js'
import { Retention } from '../background/retention.js'
import { Scheduler } from '../background/scheduler.js'
import { deserialize } from '../core/codec.js'
import { WakeUps } from '../background/wake-ups.js'
import { Clock } from '../core/clock.js'
import type { ResolvedOptions } from '../options.js'
import { lostRuns } from '../store/adoption.js'
import { Notifications } from '../store/listener.js'
import { getOutcome, identify, releaseWorkflows } from '../store/workflows.js'
import { untilReachable } from '../core/retry.js'
import { unavailableAs503 } from '../store/unavailable.js'
import { MAX_TIMEOUT_MS } from '../core/start-checks.js'
import { DatabaseUnavailableError, EngineStoppedError, UnknownWorkflowError, WorkflowCancelledError, WorkflowTimeoutError } from '../errors.js'
import type { WorkflowDefinition } from '../workflow.js'
import { Checkpoints } from '../writes/checkpoints.js'
import type { Database } from './database.js'
import { LocalRuns } from './local-runs.js'
import { Ownership } from './ownership.js'
import { Control } from './control.js'
import type { CancelledRun } from '../store/control.js'
import { Enqueuer } from '../client/enqueue.js'
import { Messaging } from '../client/messaging.js'
import { Announcements } from '../core/announcements.js'
import { Queries } from '../client/queries.js'
import { ResultWaiters } from '../client/results.js'
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
  messaging: Messaging
  control: Control
  /** Deletes old finished workflows, with the retention option. */
  retention: Retention | undefined
  enqueuer: Enqueuer
  /** One per queue of the options. */
  dispatchers: Map<string, Dispatcher>
  scheduler: Scheduler
  recovery: RecoveryDeps
  /** Runs a recovery pass in the background (recovery of this executor's own work). */
  recover (): void
  /** Resolves once every recovery pass started so far has ended. */
  recovered (): Promise<void>
  /** Subscribes to the channels every engine listens on from its start (never rejects). */
  listen (): Promise<void>
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
  const messageWaits = new Announcements()
  const eventWaits = new Announcements()
  // Assigned below: the parts refer to each other through these closures.
  let runs!: LocalRuns
  let recovery!: RecoveryDeps
  let passes: Promise<void> = Promise.resolve()
  const recover = (): void => {
    passes = Promise.all([passes, recoverUntilDone(recovery)]).then(() => {})
  }
  const executorId = (): string => heartbeat.executorId
  const ownership = new Ownership((id) => runs.epochOf(id))
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
      const { more } = await adopt({
        sql, tables, logger, signal, executorId, names,
        appVersion: options.appVersion,
        adopted: async () => {
          recover()
          await wakeUps.refresh()
          // Adopted recv waiters may have messages waiting since their owner died.
          wakeUps.messaged(null)
        }
      }, dead)
      return more
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
      timedOut: (workflowId, epoch) => control.timeOut(workflowId, epoch).catch((err) => logger.error({ event: 'timeout.failed', err, workflowId },
        'could not record that a workflow timed out; it is cancelled when it next runs')),
      watchMessages: (workflowId) => messageWaits.watch(workflowId),
      recvSuspended: (workflowId, wakeAt) => {
        wakeUps.expect(wakeAt)
        wakeUps.messaged([workflowId])
      },
      startChild: async (def, input, o) => {
        if (definitions.get(def.name) !== def) throw new UnknownWorkflowError(def.name)
        // A parent waits out an outage, as its checkpoints do: a child start is part of its progress.
        const internal = { parentId: o.parentId, derivedId: true }
        const start = o.enqueue === undefined
          ? () => starts.start(def, input, { workflowId: o.workflowId, requestId: o.requestId }, internal)
          : () => unavailableAs503(() => enqueuer.enqueue(o.enqueue!.queue, def, input, {
            workflowId: o.workflowId, requestId: o.requestId, priority: o.enqueue!.priority, partitionKey: o.enqueue!.partitionKey, delayMs: o.enqueue!.delayMs
          }, internal))
        await untilReachable(start, {
          signal,
          stopped: () => new EngineStoppedError(o.parentId),
          unreachable: (err) => err instanceof DatabaseUnavailableError
        })
      },
      resultOf: (workflowId) => results.wait(workflowId, undefined),
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
    resume: (def, row, input, steps) => runs.launch({ def, workflowId: row.workflow_id, epoch: row.epoch, input, requestId: row.request_id, steps, deadline: row.deadline_at }),
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
    launch: (l) => runs.launch(l),
    running: (id) => runs.has(id),
    resumeOrphan: (workflowId) => {
      claimAndResume(recovery, workflowId).catch((err) => {
        logger.error({ event: 'recovery.failed', err, workflowId }, 'could not resume a pending workflow; it resumes on the next start')
      })
    },
    startWithFirstStep: options.startWithFirstStep
  })
  const queries = new Queries({ sql, tables, ensureStarted: (id) => runs.ensureStarted(id) })
  const queues = new Map(options.queues.map((q) => [q.name, q]))
  const enqueuer = new Enqueuer({ sql, tables, appVersion: options.appVersion, queues })
  const dispatchers = new Map(options.queues.map((q) => [q.name, new Dispatcher(q, {
    transactions: pools.transactions, sql, tables, logger, clock, signal, executorId, names,
    appVersion: options.appVersion,
    polling: options.transactionPooling,
    dispatching: () => ownership.dispatching(),
    defaultTimeouts: () => {
      // Only ones a start would accept (a bad one is refused at each start, with its code).
      const withTimeout = [...definitions.values()].filter((d) => { const ms = d.options.timeoutMs; return typeof ms === 'number' && ms > 0 && ms <= MAX_TIMEOUT_MS })
      return { names: withTimeout.map((d) => d.name), timeoutsMs: withTimeout.map((d) => d.options.timeoutMs!) }
    },
    // First runs: nothing recorded to read, no claim to count.
    run: async (row) => {
      const def = definitions.get(row.name)!
      runs.launch({ def, workflowId: row.workflow_id, epoch: row.epoch, input: deserialize(row.input), requestId: row.request_id, steps: [], deadline: row.deadline_at })
    }
  })]))
  const scheduler = new Scheduler(options.schedules, {
    sql, tables, logger, clock,
    fire: async (schedule, workflowId, input) => {
      if (schedule.options.queue !== undefined) await enqueuer.enqueue(schedule.options.queue, schedule.workflow, input, { workflowId }, {})
      else await starts.start(schedule.workflow, input, { workflowId }, {})
    }
  })
  let eventsListened: Promise<void> | undefined
  const messaging = new Messaging({
    sql, tables, signal,
    events: eventWaits,
    pollMs: options.resultPollIntervalMs,
    listenEvents: () => (eventsListened ??= notifications.listen(tables.eventsChannel, {
      notify: (payload) => eventWaits.announce(payload),
      resubscribed: () => eventWaits.announceAll()
    }))
  })
  const control: Control = new Control({
    sql, tables, executorId,
    transactions: pools.transactions,
    appVersion: options.appVersion,
    definition: (name) => definitions.get(name),
    identify: (workflowId) => identify(sql, tables, workflowId),
    runHere: (workflowId) => claimAndResume(recovery, workflowId),
    cancelledHere: (ids, reason) => cancelHere(ids, reason)
  })
  /**
   * Stops the runs here of workflows just cancelled in the database, and
   * wakes their waiters: a run may take a while to unwind (a step that
   * ignores its signal), but the outcome is recorded already, and getResult
   * answers with it at once.
   */
  const cancelHere = (cancelled: CancelledRun[], reason: (workflowId: string) => Error): void => {
    runs.cancel(cancelled, reason)
    for (const { workflowId } of cancelled) results.wake(workflowId)
  }
  /** `<executor>\n<workflow id>[\n<kind>]` payloads: the workflow id when the executor is this one. */
  const mine = (payload: string): string | undefined => {
    const [owner, id] = payload.split('\n')
    return owner === executorId() ? id : undefined
  }
  const listen = async (): Promise<void> => {
    await Promise.all([
      // An executor that stops, or work handed off: adopt at once, not at the next beat.
      notifications.listen(tables.executorsChannel, { notify: () => heartbeat.nudge(), resubscribed: () => heartbeat.nudge() }),
      notifications.listen(tables.messagesChannel, {
        notify: (payload) => {
          const id = mine(payload)
          if (id === undefined) return
          messageWaits.announce(id)
          wakeUps.messaged([id])
        },
        resubscribed: () => {
          messageWaits.announceAll()
          wakeUps.messaged(null)
        }
      }),
      notifications.listen(tables.queueChannel, {
        notify: (queue) => dispatchers.get(queue)?.wake(),
        resubscribed: () => { for (const d of dispatchers.values()) d.wake() }
      }),
      notifications.listen(tables.cancelChannel, {
        notify: (payload) => {
          // `<executor>\n<workflow id>\n<timeout|cancel>\n<epoch>`
          const id = mine(payload)
          const [, , kind, epoch] = payload.split('\n')
          const Reason = kind === 'timeout' ? WorkflowTimeoutError : WorkflowCancelledError
          if (id !== undefined && epoch !== undefined) cancelHere([{ workflowId: id, epoch }], (w) => new Reason(w))
        },
        resubscribed: () => {}
      })
    ])
  }
  return {
    db, clock, checkpoints, notifications, results, wakeUps, heartbeat, runs, starts, queries, messaging, control, recovery,
    retention: options.retention === null
      ? undefined
      : new Retention({ logger, ...options.retention, deleteFinished: (olderThanMs) => control.deleteFinished({ olderThanMs }) }),
    enqueuer,
    dispatchers,
    scheduler,
    recover,
    recovered: () => passes,
    listen
  }
}
