/**
 * The engine: the composition root. It owns the registry of workflow
 * definitions and the lifecycle; start() opens the database and wires the
 * parts together (each gets the few functions it needs), stop() drains and
 * closes them. start() and stop() are safe to call twice; stop() waits for
 * start().
 */
import { setMaxListeners } from 'node:events'
import type { RecoveryDeps } from '../background/recovery.js'
import { claimAndResume, recoverUntilDone, resumeWoken } from '../background/recovery.js'
import { WakeUps } from '../background/wake-ups.js'
import { kLocalRuns, kResultStats } from '../core/symbols.js'
import { defaultDataDir, startEmbeddedPostgres, type EmbeddedPostgres } from '../embedded/postgres.js'
import { DatabaseUnavailableError, DuplicateWorkflowNameError, NotReadyError, ShuttingDownError, UnknownWorkflowError } from '../errors.js'
import { WorkflowHandle, type GetResultOptions, type HandleSource } from '../handle.js'
import type { ListFilter } from '../list-filter.js'
import { resolveOptions, type EngineOptions, type ResolvedOptions } from '../options.js'
import type { StepInfo, WorkflowStatus } from '../status.js'
import { isConnectionError } from '../store/pg-errors.js'
import { getOutcome, releaseWorkflows } from '../store/workflows.js'
import type { WorkflowDefinition } from '../workflow.js'
import { Checkpoints } from '../writes/checkpoints.js'
import { openDatabase, type Database } from './database.js'
import { LocalRuns } from './local-runs.js'
import { Ownership } from './ownership.js'
import { checkReadId, Queries } from './queries.js'
import { ResultWaiters } from './results.js'
import type { StartOptions } from '../start-options.js'
import { prepareInput, Starts, type InternalStart, type PreparedInput } from './starts.js'

export type { InternalStart, PreparedInput, StartOptions }

/** What start() builds; gone again after stop(). */
interface Live {
  db: Database
  checkpoints: Checkpoints
  results: ResultWaiters
  wakeUps: WakeUps
  runs: LocalRuns
  starts: Starts
  queries: Queries
  recovery: RecoveryDeps
}

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
  #recovery: Promise<void> | undefined

  constructor (options: EngineOptions = {}) {
    this.options = resolveOptions(options)
    // Every retry sleep and running step listens for the stop signal.
    setMaxListeners(0, this.#abort.signal)
    this.register(...this.options.workflows)
  }

  get executorId (): string { return this.options.executorId }

  /** The connection string in use, once started (the embedded server's, if any). */
  get databaseUrl (): string | undefined { return this.#databaseUrl }

  /** For tests: which workflows hold a run (and so memory) in this process. */
  [kLocalRuns] (): string[] { return this.#live?.runs.ids() ?? [] }

  /** For tests: what getResult's waiting holds (see results.ts). */
  [kResultStats] (): { watches: number, looks: number, localListeners: number } {
    const live = this.#live
    return { watches: live?.results.watching ?? 0, looks: live?.results.looks ?? 0, localListeners: live?.runs.listeners ?? 0 }
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
    let db: Database | undefined
    try {
      const url = await this.#url()
      db = await openDatabase({ url, poolSize: this.options.poolSize, schema: this.options.schema, logger: this.options.logger })
    } catch (err) {
      await this.#embedded?.stop()
      this.#state = 'stopped'
      throw isConnectionError(err) ? new DatabaseUnavailableError({ cause: err }) : err
    }
    const live = this.#wire(db)
    this.#live = live
    this.#state = 'running'
    this.#recovery = recoverUntilDone(live.recovery)
    // A start that answered 503 may have committed all the same (its answer
    // was lost): once the database answers again, a recovery pass runs such
    // workflows now rather than at the next restart.
    live.checkpoints.onReachableAgain(() => {
      this.#recovery = Promise.all([this.#recovery, recoverUntilDone(live.recovery)]).then(() => {})
    })
    await live.wakeUps.start()
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

  /** Builds the parts over an open database. */
  #wire (db: Database): Live {
    const { options } = this
    const { logger, executorId } = options
    const signal = this.#abort.signal
    const { pools, tables } = db
    const sql = pools.sql
    const checkpoints = new Checkpoints(pools, tables, logger, signal)
    const results = new ResultWaiters(this.#databaseUrl!, tables.channel, logger)
    // Assigned below: the parts refer to each other through these closures.
    let runs!: LocalRuns
    let recovery!: RecoveryDeps
    const ownership = new Ownership((id) => runs.has(id))
    const wakeUps = new WakeUps({
      sql, tables, checkpoints, logger, executorId,
      inMemoryMaxMs: options.sleepInMemoryMaxMs,
      resume: (row) => resumeWoken(recovery, row),
      names: () => [...this.#defs.keys()],
      recover: () => recoverUntilDone(recovery)
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
        suspend: (workflowId, epoch, wakeAt) => wakeUps.suspend(workflowId, epoch, wakeAt)
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
      signal,
      maxRecoveryAttempts: options.maxRecoveryAttempts,
      definition: (name) => this.#defs.get(name),
      claims: ownership,
      resume: (def, row, input, steps) => runs.launch(def, row.workflow_id, row.epoch, input, row.request_id, steps),
      settled: (workflowId, ms) => runs.settled(workflowId, ms, signal),
      probing: { active: false }
    }
    results.connect({
      read: (id) => getOutcome(sql, tables, id),
      subscribeLocal: (id, listener) => runs.subscribe(id, listener),
      pollMs: options.resultPollIntervalMs,
      signal
    })
    const starts = new Starts({
      executorId,
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
    return { db, checkpoints, results, wakeUps, runs, starts, queries, recovery }
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
      // workflows need nothing more: the next start wakes them.
      await live.wakeUps.stop()
      await live.runs.settle(this.options.shutdownTimeoutMs)
    }
    this.#state = 'stopped'
    // Taken before abort(): aborted runs drop out of the registry as they notice.
    const unfinished = live?.runs.held() ?? []
    this.#abort.abort()
    await this.#recovery
    if (live !== undefined) {
      await live.checkpoints.drained()
      await live.runs.release(unfinished)
      this.#live = undefined
      await live.results.close()
      await live.db.close()
    }
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

  /** Waits for the workflow's outcome (see results.ts); 504 after `timeoutMs`, 404 for an unknown id. */
  async getResult (workflowId: string, options: GetResultOptions = {}): Promise<unknown> {
    checkReadId(workflowId)
    return this.#connected().results.wait(workflowId, options.timeoutMs)
  }
}
