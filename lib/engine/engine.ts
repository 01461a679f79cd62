/**
 * The engine: the composition root. It owns the registry of workflow
 * definitions and the lifecycle; start() opens the database and wires the
 * parts together (each gets the few functions it needs), stop() drains and
 * closes them. start() and stop() are safe to call twice; stop() waits for
 * start().
 */
import { setMaxListeners } from 'node:events'
import { kLocalRuns, kResultStats } from '../core/symbols.js'
import { defaultDataDir, startEmbeddedPostgres, type EmbeddedPostgres } from '../embedded/postgres.js'
import { DatabaseUnavailableError, DuplicateWorkflowNameError, InvalidOptionError, NotReadyError, ShuttingDownError, UnknownWorkflowError, WorkflowNotPendingError } from '../errors.js'
import { WorkflowHandle, type GetResultOptions, type HandleSource } from '../handle.js'
import type { ListFilter } from '../list-filter.js'
import type { SendOptions } from '../context.js'
import { resolveOptions, type EngineOptions, type ResolvedOptions } from '../options.js'
import type { DeleteFinishedOptions, EnqueueOptions, ForkOptions, GetEventOptions, ReadStreamOptions, StartOptions } from '../calls.js'
import type { QueueDefinition } from '../queue.js'
import { Schedules } from './schedules.js'
import type { EventInfo, ExecutorInfo, StepInfo, StreamValue, WorkflowPage, WorkflowStatus } from '../status.js'
import { handOffOtherVersions, setAppVersion } from '../store/adoption.js'
import { announceAdoptable, listExecutors } from '../store/executors.js'
import { isConnectionError } from '../store/pg-errors.js'
import { streamAs503, unavailableAs503 } from '../store/unavailable.js'
import type { WorkflowDefinition } from '../workflow.js'
import { openDatabase } from './database.js'
import { checkReadId } from '../client/queries.js'
import { prepareInput, type InternalStart, type PreparedInput } from './starts.js'
import { wire, type Live } from './wiring.js'

export type { InternalStart, PreparedInput, StartOptions }

export class Engine implements HandleSource {
  readonly options: ResolvedOptions
  readonly #defs = new Map<string, WorkflowDefinition<any, any>>()
  readonly #abort = new AbortController()
  #state: 'new' | 'starting' | 'running' | 'stopping' | 'stopped' = 'new'
  #starting: Promise<void> | undefined
  #stopping: Promise<void> | undefined
  #live: Live | undefined
  #embedded: EmbeddedPostgres | undefined
  #databaseUrl: string | undefined

  constructor (options: EngineOptions = {}) {
    this.options = resolveOptions(options)
    // Every retry sleep and running step listens for the stop signal.
    setMaxListeners(0, this.#abort.signal)
    this.register(...this.options.workflows)
    // A second definition under one name would be dropped silently: enqueues with the other would fail, or its limits be ignored.
    for (const [what, list] of [['queue', this.options.queues], ['schedule', this.options.schedules]] as const) {
      const names = list.map((d) => d.name)
      const twice = names.find((name, i) => names.indexOf(name) !== i)
      if (twice !== undefined) throw new InvalidOptionError(`two ${what}s are named ${JSON.stringify(twice)}`)
    }
    for (const schedule of this.options.schedules) {
      if (this.#defs.get(schedule.workflow.name) !== schedule.workflow) {
        throw new InvalidOptionError(`schedule ${schedule.name}: its workflow ${JSON.stringify(schedule.workflow.name)} must be in the workflows option`)
      }
      const queue = schedule.options.queue
      if (queue !== undefined && !this.options.queues.includes(queue)) throw new InvalidOptionError(`schedule ${schedule.name}: its queue ${JSON.stringify(queue.name)} must be in the queues option`)
    }
  }

  /** The executor id this process holds (once started; the one asked for before). */
  get executorId (): string { return this.#live?.heartbeat.executorId ?? this.options.executorId }

  /** The connection string in use, once started (the embedded server's, if any). */
  get databaseUrl (): string | undefined { return this.#databaseUrl }

  /** For tests: which workflows hold a run (and so memory) in this process. */
  [kLocalRuns] (): string[] { return this.#live?.runs.ids() ?? [] }

  /** For tests: what getResult's waiting holds (see results.ts). */
  [kResultStats] (): { watches: number, looks: number, localListeners: number } {
    const live = this.#live
    return { watches: live?.results.watching ?? 0, looks: live?.results.looks ?? 0, localListeners: live?.runs.listeners ?? 0 }
  }

  /**
   * Enqueues a workflow on a queue (see docs/Guides/queues.md): resolves
   * with its handle once it is recorded (status ENQUEUED), in the caller's
   * own transaction with `options.sql`.
   */
  async enqueue<I, O> (queue: QueueDefinition | string, def: WorkflowDefinition<I, O>, input: I, options: EnqueueOptions = {}, internal: InternalStart = {}): Promise<WorkflowHandle<O>> {
    const live = this.#accepting()
    if (this.#defs.get(def.name) !== def) throw new UnknownWorkflowError(def.name)
    return new WorkflowHandle<O>(this, await unavailableAs503(() => live.enqueuer.enqueue(queue, def, input, options, internal)))
  }

  /** Cron schedules: their state, and pausing or resuming them for every instance. */
  get schedules (): Schedules {
    return new Schedules(() => this.#connected().db)
  }

  /** Makes definitions startable and recoverable. Safe to repeat with the same definition. */
  register (...defs: WorkflowDefinition<any, any>[]): void {
    for (const def of defs) {
      const known = this.#defs.get(def.name)
      if (known !== undefined && known !== def) throw new DuplicateWorkflowNameError(def.name)
      this.#defs.set(def.name, def)
    }
  }

  start (): Promise<void> {
    this.#starting ??= this.#start()
    return this.#starting
  }

  async #start (): Promise<void> {
    this.#state = 'starting'
    let live: Live | undefined
    try {
      const url = await this.#url()
      const { poolSize, schema, logger, transactionPooling } = this.options
      const db = await openDatabase({ url, poolSize, schema, logger, transactionPooling })
      live = wire(db, { options: this.options, url, definitions: this.#defs, signal: this.#abort.signal })
      await live.heartbeat.register()
      await this.#handOffOtherVersions(live)
    } catch (err) {
      await live?.notifications.close()
      await live?.db.close()
      await this.#embedded?.stop()
      this.#state = 'stopped'
      throw isConnectionError(err) ? new DatabaseUnavailableError({ cause: err }) : err
    }
    this.#live = live
    this.#state = 'running'
    live.recover()
    // A start that answered 503 may have committed all the same (its answer
    // was lost): once the database answers again, a recovery pass runs such
    // workflows now rather than at the next restart.
    live.checkpoints.onReachableAgain(() => live.recover())
    live.heartbeat.start()
    await live.listen()
    live.retention?.start()
    await live.wakeUps.start()
    for (const dispatcher of live.dispatchers.values()) await dispatcher.start()
    await live.scheduler.start()
    // Recv waiters whose messages came while no instance was listening.
    live.wakeUps.messaged(null)
  }

  /**
   * This executor's PENDING workflows of another app version (it restarted
   * with a new appVersion, or without one) are for instances of that
   * version: handed off at once, not left waiting for this process.
   */
  async #handOffOtherVersions (live: Live): Promise<void> {
    const sql = live.db.pools.sql
    const { tables } = live.db
    const moved = await handOffOtherVersions(sql, tables, live.heartbeat.executorId, this.options.appVersion)
    if (moved === 0) return
    this.options.logger.info({ event: 'executor.handed_off', count: moved, appVersion: this.options.appVersion },
      'handed this executor\'s workflows of other app versions to instances of those versions')
    await announceAdoptable(sql, tables)
  }

  /** The connection string: the option, or an embedded Postgres started now. */
  async #url (): Promise<string> {
    const { databaseUrl, embeddedDataDir, logger } = this.options
    if (databaseUrl !== undefined) return (this.#databaseUrl = databaseUrl)
    const dataDir = embeddedDataDir ?? await defaultDataDir()
    this.#embedded = await startEmbeddedPostgres(dataDir, logger)
    const url = this.#embedded.url
    logger.info({ event: 'embedded.started', dataDir: this.#embedded.dataDir, url: url.replace(/:[^:@/]*@/, ':***@') },
      'no databaseUrl or DATABASE_URL given: started an embedded Postgres')
    return (this.#databaseUrl = url)
  }

  /**
   * Refuses new workflows, lets running ones finish for up to
   * shutdownTimeoutMs, leaves the rest PENDING for the next start, then closes
   * what start() opened.
   */
  stop (): Promise<void> {
    this.#stopping ??= this.#stop()
    return this.#stopping
  }

  async #stop (): Promise<void> {
    await this.#starting?.catch(() => {})
    if (this.#state === 'running') this.#state = 'stopping'
    const live = this.#live
    if (live !== undefined) {
      // First, so that no workflow wakes into a draining engine. Suspended
      // workflows need nothing more: this executor's next start, or the
      // instance that adopts them, wakes them.
      await live.wakeUps.stop()
      await live.scheduler.stop()
      await Promise.all([...live.dispatchers.values()].map((d) => d.stop()))
      await live.retention?.stop()
      await live.runs.settle(this.options.shutdownTimeoutMs)
    }
    this.#state = 'stopped'
    // Taken before abort(): aborted runs drop out of the registry as they notice.
    const unfinished = live?.runs.held() ?? []
    this.#abort.abort()
    if (live === undefined) return await this.#embedded?.stop()
    await live.recovered()
    await live.checkpoints.drained()
    await live.runs.release(unfinished)
    // Hands what is left to the living at once (they adopt a stopped
    // executor's work without waiting for its lease), and tells them.
    await live.heartbeat.stop(true).catch((err) => this.options.logger.warn({ event: 'executor.stop_failed', err },
      'could not mark this executor stopped; the living adopt its work after its lease'))
    await announceAdoptable(live.db.pools.sql, live.db.tables).catch(() => {})
    this.#live = undefined
    live.results.close()
    await live.notifications.close()
    await live.db.close()
    await this.#embedded?.stop()
  }

  /** Serialises an input once; refuses values that cannot be stored (400) before anything is written. */
  prepareInput (def: WorkflowDefinition<any, any>, input: unknown): PreparedInput {
    return prepareInput(def, input)
  }

  /**
   * Starts a workflow and resolves once it is durably recorded. With a
   * workflowId that already exists, returns that workflow if it has the same
   * definition and input, and refuses with 422 otherwise.
   */
  async startWorkflow<I, O> (def: WorkflowDefinition<I, O>, input: I, options: StartOptions = {}, internal: InternalStart = {}): Promise<WorkflowHandle<O>> {
    const live = this.#accepting()
    if (this.#defs.get(def.name) !== def) throw new UnknownWorkflowError(def.name)
    return new WorkflowHandle<O>(this, await live.starts.start(def, input, options, internal))
  }

  #accepting (): Live {
    if (this.#state === 'stopping' || this.#state === 'stopped') throw new ShuttingDownError()
    if (this.#state !== 'running' || this.#live === undefined) throw new NotReadyError()
    return this.#live
  }

  #connected (): Live {
    if (this.#live === undefined) throw this.#state === 'stopped' ? new ShuttingDownError() : new NotReadyError()
    return this.#live
  }

  /** A handle to an existing workflow; 404 if there is none with this id. */
  async retrieve<O = unknown> (workflowId: string): Promise<WorkflowHandle<O>> {
    await this.getStatus(workflowId)
    return new WorkflowHandle<O>(this, workflowId)
  }

  async getStatus (workflowId: string): Promise<WorkflowStatus> {
    return this.#connected().queries.getStatus(workflowId)
  }

  async list (filter: ListFilter = {}): Promise<WorkflowStatus[]> {
    return this.#connected().queries.list(filter)
  }

  async listSteps (workflowId: string): Promise<StepInfo[]> {
    return this.#connected().queries.listSteps(workflowId)
  }

  /** The instances known to the database, with their heartbeat's age and the PENDING workflows each owns. */
  async executors (): Promise<ExecutorInfo[]> {
    const live = this.#connected()
    const self = live.heartbeat.executorId
    return (await unavailableAs503(() => listExecutors(live.db.pools.sql, live.db.tables))).map((r) => ({
      executorId: r.executor_id,
      appVersion: r.app_version,
      leaseMs: r.lease_ms,
      startedAt: r.started_at,
      heartbeatAt: r.heartbeat_at,
      heartbeatAgeMs: r.heartbeat_age_ms,
      alive: r.stopped_at === null && r.heartbeat_age_ms <= r.lease_ms,
      stoppedAt: r.stopped_at,
      pendingWorkflows: r.pending,
      self: r.executor_id === self
    }))
  }

  /**
   * Moves a PENDING workflow to another app version on purpose (say, after a
   * deploy left it on a version no live instance runs): a live instance of
   * `appVersion` (null: one without appVersion) adopts it and resumes it
   * from its last checkpoint. Its current run, if any, is fenced off.
   * DBOS_ERR_WORKFLOW_NOT_PENDING (409) if it is not PENDING.
   */
  async setAppVersion (workflowId: string, appVersion: string | null): Promise<void> {
    checkReadId(workflowId)
    if (appVersion !== null && (typeof appVersion !== 'string' || appVersion.length === 0)) throw new InvalidOptionError('appVersion must be a non-empty string or null')
    const live = this.#connected()
    const sql = live.db.pools.sql
    await unavailableAs503(async () => {
      if (!await setAppVersion(sql, live.db.tables, workflowId, appVersion)) throw new WorkflowNotPendingError(workflowId)
      await announceAdoptable(sql, live.db.tables)
    })
  }

  /** Delivers a message to a workflow's ctx.recv (see docs/Guides/messages.md). 404 unknown, 409 finished. */
  async send (workflowId: string, message: unknown, options?: SendOptions): Promise<void> {
    const live = this.#connected()
    return unavailableAs503(() => live.messaging.send(workflowId, message, options))
  }

  /** The latest value of a workflow's event `key`, waiting up to `timeoutMs` for one; null then. */
  async getEvent<T = unknown> (workflowId: string, key: string, options?: GetEventOptions): Promise<T | null> {
    const live = this.#connected()
    return unavailableAs503(() => live.messaging.getEvent(workflowId, key, options)) as Promise<T | null>
  }

  /** Every event a workflow set, in order. */
  async listEvents (workflowId: string): Promise<EventInfo[]> {
    const live = this.#connected()
    return unavailableAs503(() => live.messaging.listEvents(workflowId))
  }

  /** The values of a workflow's stream `key` from offset `from`, as they come; ends when it is closed or the workflow finishes. */
  readStream<T = unknown> (workflowId: string, key: string, options?: ReadStreamOptions): AsyncGenerator<StreamValue<T>, void, undefined> {
    const live = this.#connected()
    return streamAs503(() => live.messaging.readStream(workflowId, key, options)) as AsyncGenerator<StreamValue<T>, void, undefined>
  }

  /** Cancels a workflow and its children (see docs/Guides/cancel-resume-fork.md). */
  async cancel (workflowId: string): Promise<void> {
    const live = this.#connected()
    return unavailableAs503(() => live.control.cancel(workflowId))
  }

  /** Continues a CANCELLED, ERROR or MAX_RECOVERY_ATTEMPTS_EXCEEDED workflow from its last completed step. */
  async resume<O = unknown> (workflowId: string): Promise<WorkflowHandle<O>> {
    const live = this.#connected()
    await unavailableAs503(() => live.control.resume(workflowId))
    return new WorkflowHandle<O>(this, workflowId)
  }

  /** A new workflow reusing the results of the source's steps before `fromStep`. */
  async fork<O = unknown> (workflowId: string, options: ForkOptions): Promise<WorkflowHandle<O>> {
    const live = this.#accepting()
    return new WorkflowHandle<O>(this, await unavailableAs503(() => live.control.fork(workflowId, options)))
  }

  /** Deletes workflows that finished at least `olderThanMs` ago, with everything that belongs to them. */
  async deleteFinished (options: DeleteFinishedOptions): Promise<number> {
    const live = this.#connected()
    return unavailableAs503(() => live.control.deleteFinished(options))
  }

  /** A page of workflows and the cursor of the next one (keyset paging: as fast deep in a million rows as at the start). */
  async listPage (filter: ListFilter = {}): Promise<WorkflowPage> {
    return this.#connected().queries.listPage(filter)
  }

  /** Waits for the workflow's outcome (see results.ts); 504 after `timeoutMs`, 404 for an unknown id. */
  async getResult (workflowId: string, options: GetResultOptions = {}): Promise<unknown> {
    checkReadId(workflowId)
    return this.#connected().results.wait(workflowId, options.timeoutMs)
  }
}
