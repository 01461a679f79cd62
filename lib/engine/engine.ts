/**
 * The engine: owns the database connection, the registry of workflow
 * definitions, the workflows running in this process, and their lifecycle.
 * start() and stop() are safe to call twice; stop() waits for start().
 */
import { hash as digest } from 'node:crypto'
import { setMaxListeners } from 'node:events'
import { nanoid } from 'nanoid'
import { deserialize, serialize } from '../core/codec.js'
import { startEmbeddedPostgres, defaultDataDir, type EmbeddedPostgres } from '../embedded/postgres.js'
import {
  DatabaseUnavailableError, DuplicateWorkflowNameError, IdempotencyConflictError,
  InvalidRequestIdError, InvalidWorkflowIdError, NotReadyError, ShuttingDownError,
  UnknownWorkflowError, WorkflowNotFoundError
} from '../errors.js'
import { WorkflowHandle, type GetResultOptions, type HandleSource } from '../handle.js'
import { resolveOptions, type EngineOptions, type ResolvedOptions } from '../options.js'
import { claimAndResume, recoverUntilDone, resumeWoken, type RecoveryDeps } from '../background/recovery.js'
import { unstorableTextReason } from '../core/text.js'
import { invalidIdReason, MAX_DERIVED_ID_LENGTH, MAX_ID_LENGTH } from '../core/ids.js'
import { closeDatabase, openDatabase, type Connected } from './database.js'
import { LocalRuns } from './local-runs.js'
import { FirstSteps, Opening } from '../writes/opening.js'
import { toStatus, toStepInfo, type StepInfo, type WorkflowStatus } from '../status.js'
import { CONNECT_TIMEOUT_S } from '../store/connect.js'
import { isConnectionError } from '../store/pg-errors.js'
import { listSteps } from '../store/steps.js'
import { kLocalRuns, kResultStats } from '../core/symbols.js'
import { FIRST_EPOCH, getOutcome, getWorkflow, listWorkflows } from '../store/workflows.js'
import type { NewWorkflowRow } from '../store/rows.js'
import { checkListFilter, type ListFilter } from '../list-filter.js'
import type { WorkflowDefinition } from '../workflow.js'

/** How long a read (getStatus, list, listSteps) waits for an answer before it is 503. */
const READ_TIMEOUT_MS = CONNECT_TIMEOUT_S * 1000

export interface StartOptions {
  /** Use this id instead of a generated one. Starting again with the same id returns the same workflow. */
  workflowId?: string
  /** Stored with the workflow and filterable in list(). Set from dbos-request-id by the Fastify plugin. */
  requestId?: string | null
}

/** A workflow input, serialised once and fingerprinted for idempotency checks. */
export interface PreparedInput {
  text: string
  hash: string
}

/** For the Fastify plugin's request layer, not for users. */
export interface InternalStart {
  prepared?: PreparedInput
  /** The id was derived from a validated key, so it may be longer than a caller's own. */
  derivedId?: boolean
}

export class Engine implements HandleSource {
  readonly options: ResolvedOptions
  readonly #defs = new Map<string, WorkflowDefinition<any, any>>()
  readonly #runs: LocalRuns
  readonly #abort = new AbortController()
  #state: 'new' | 'starting' | 'running' | 'stopping' | 'stopped' = 'new'
  #starting: Promise<void> | undefined
  #stopping: Promise<void> | undefined
  #db: Connected | undefined
  #embedded: EmbeddedPostgres | undefined
  #databaseUrl: string | undefined
  #recovery: Promise<void> | undefined
  #recoveryDeps: RecoveryDeps | undefined
  /** Ids with a start in flight here (counted): never treated as orphans. */
  readonly #inserting = new Map<string, number>()
  readonly #firstSteps = new FirstSteps()

  constructor (options: EngineOptions = {}) {
    this.options = resolveOptions(options)
    this.#runs = new LocalRuns(this.options.logger, this.#abort.signal)
    // Every retry sleep and running step listens for the stop signal.
    setMaxListeners(0, this.#abort.signal)
    this.register(...this.options.workflows)
  }

  get executorId (): string { return this.options.executorId }

  /** The connection string in use, once started (the embedded server's, if any). */
  get databaseUrl (): string | undefined { return this.#databaseUrl }

  /** For tests: which workflows hold a run (and so memory) in this process. */
  [kLocalRuns] (): string[] { return this.#runs.ids() }

  /** For tests: what getResult's waiting holds (see results.ts). */
  [kResultStats] (): { watches: number, looks: number, localListeners: number } {
    return { watches: this.#db?.results.watching ?? 0, looks: this.#db?.results.looks ?? 0, localListeners: this.#runs.listeners }
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
    const { logger } = this.options
    this.#state = 'starting'
    try {
      let url = this.options.databaseUrl
      if (url === undefined) {
        const dataDir = this.options.embeddedDataDir ?? await defaultDataDir()
        this.#embedded = await startEmbeddedPostgres(dataDir, logger)
        url = this.#embedded.url
        logger.info({ dataDir: this.#embedded.dataDir, url: url.replace(/:[^:@/]*@/, ':***@') },
          'no databaseUrl or DATABASE_URL given: started an embedded Postgres')
      }
      this.#databaseUrl = url
      this.#db = await openDatabase({
        url,
        poolSize: this.options.poolSize,
        schema: this.options.schema,
        logger,
        signal: this.#abort.signal,
        wakeUps: {
          executorId: this.executorId,
          inMemoryMaxMs: this.options.sleepInMemoryMaxMs,
          resume: (row) => resumeWoken(this.#recoveryDeps!, row),
          names: () => [...this.#defs.keys()],
          recover: () => recoverUntilDone(this.#recoveryDeps!)
        }
      })
    } catch (err) {
      await this.#closeConnections()
      this.#state = 'stopped'
      throw isConnectionError(err) ? new DatabaseUnavailableError({ cause: err }) : err
    }
    this.#state = 'running'
    const db = this.#db
    db.results.connect({
      read: (id) => getOutcome(db.sql, db.tables, id),
      subscribeLocal: (id, listener) => this.#runs.subscribe(id, listener),
      pollMs: this.options.resultPollIntervalMs,
      signal: this.#abort.signal
    })
    this.#recoveryDeps = {
      ...db,
      logger,
      executorId: this.executorId,
      signal: this.#abort.signal,
      maxRecoveryAttempts: this.options.maxRecoveryAttempts,
      definition: (name) => this.#defs.get(name),
      isRunning: (id) => this.#runs.has(id) || this.#inserting.has(id),
      claiming: new Set(),
      resume: (def, row, input, steps) => this.#runs.launch(db, def, row.workflow_id, row.epoch, input, row.request_id, steps),
      settled: (workflowId, ms) => this.#runs.settled(workflowId, ms, this.#abort.signal),
      probing: { active: false }
    }
    this.#recovery = recoverUntilDone(this.#recoveryDeps)
    // A start that answered 503 may have committed all the same (its answer
    // was lost): once the database answers again, a recovery pass runs such
    // workflows now rather than at the next restart.
    db.checkpoints.onReachableAgain(() => {
      this.#recovery = Promise.all([this.#recovery, recoverUntilDone(this.#recoveryDeps!)]).then(() => {})
    })
    await db.wakeUps.start()
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
    // First, so that no workflow wakes into a draining engine. Suspended
    // workflows need nothing more: the next start wakes them.
    await this.#db?.wakeUps.stop()
    await this.#runs.settle(this.options.shutdownTimeoutMs)
    this.#state = 'stopped'
    // Taken before abort(): aborted runs drop out of the registry as they notice.
    const unfinished = this.#runs.held()
    this.#abort.abort()
    await this.#recovery
    await this.#db?.checkpoints.drained()
    if (this.#db !== undefined) await this.#runs.release(this.#db, unfinished)
    await this.#closeConnections()
  }

  async #closeConnections (): Promise<void> {
    const db = this.#db
    this.#db = undefined
    if (db !== undefined) await closeDatabase(db)
    await this.#embedded?.stop()
  }

  /** Serialises an input once; refuses values that cannot be stored (400) before anything is written. */
  prepareInput (def: WorkflowDefinition<any, any>, input: unknown): PreparedInput {
    const text = serialize(input, `the input of workflow ${JSON.stringify(def.name)}`)
    // One-shot hash: a third of the cost of a createHash() object per start.
    const hash = digest('sha256', `${def.name}\0${text}`, 'base64url')
    return { text, hash }
  }

  /**
   * Starts a workflow and resolves once it is durably recorded. With a
   * workflowId that already exists, returns that workflow if it has the same
   * definition and input, and refuses with 422 otherwise.
   */
  async startWorkflow<I, O> (def: WorkflowDefinition<I, O>, input: I, options: StartOptions = {}, internal: InternalStart = {}): Promise<WorkflowHandle<O>> {
    const db = this.#accepting()
    if (this.#defs.get(def.name) !== def) throw new UnknownWorkflowError(def.name)
    const workflowId = options.workflowId ?? nanoid()
    const bad = invalidIdReason(workflowId, internal.derivedId === true ? MAX_DERIVED_ID_LENGTH : MAX_ID_LENGTH) ?? unstorableTextReason(workflowId)
    if (bad !== undefined) throw new InvalidWorkflowIdError(bad)
    const requestId = options.requestId ?? null
    const badRequestId = requestId === null ? undefined : invalidIdReason(requestId) ?? unstorableTextReason(requestId)
    if (badRequestId !== undefined) throw new InvalidRequestIdError(badRequestId)
    const { text, hash } = internal.prepared ?? this.prepareInput(def, input)
    const row: NewWorkflowRow = { workflowId, name: def.name, input: text, inputHash: hash, requestId, executorId: this.executorId }
    if (options.workflowId === undefined && db.checkpoints.quiet && this.#firstSteps.worthWaiting(def.name)) {
      // A generated id, and nothing else being written: run at once, and let
      // the first step's checkpoint carry the start (see opening.ts).
      const stored = deserialize(text)
      const opening = new Opening(db.checkpoints, row, this.#firstSteps)
      this.#runs.launch(db, def, workflowId, FIRST_EPOCH, stored, requestId, undefined, opening)
      await opening.durable
      return new WorkflowHandle<O>(this, workflowId)
    }
    this.#inserting.set(workflowId, (this.#inserting.get(workflowId) ?? 0) + 1)
    try {
      const started = await db.checkpoints.start(row)
      if (started.inserted) {
        // The body gets the stored form of its input, exactly as a recovery would.
        this.#runs.launch(db, def, workflowId, started.epoch, deserialize(text), requestId)
      } else if (started.name !== def.name || started.inputHash !== hash) {
        throw new IdempotencyConflictError()
      } else if (started.pendingOwner === this.executorId && !this.#runs.has(workflowId) && this.#inserting.get(workflowId) === 1 && this.#recovery !== undefined) {
        this.#resumeOrphan(workflowId)
      }
    } finally {
      const n = this.#inserting.get(workflowId)! - 1
      if (n === 0) this.#inserting.delete(workflowId)
      else this.#inserting.set(workflowId, n)
    }
    return new WorkflowHandle<O>(this, workflowId)
  }

  /**
   * Ours, PENDING, and running nowhere in this process: an earlier start whose
   * answer was lost (it committed, but the caller saw a 503), or a run left by
   * a failure. The caller retried with the same id, so run it now rather than
   * at the next restart.
   */
  #resumeOrphan (workflowId: string): void {
    claimAndResume(this.#recoveryDeps!, workflowId).catch((err) => {
      this.options.logger.error({ err, workflowId }, 'could not resume a pending workflow; it resumes on the next start')
    })
  }

  #accepting (): Connected {
    if (this.#state === 'stopping' || this.#state === 'stopped') throw new ShuttingDownError()
    if (this.#state !== 'running' || this.#db === undefined) throw new NotReadyError()
    return this.#db
  }

  #connected (): Connected {
    if (this.#db === undefined) throw this.#state === 'stopped' ? new ShuttingDownError() : new NotReadyError()
    return this.#db
  }

  /** A handle to an existing workflow; 404 if there is none with this id. */
  async retrieve<O = unknown> (workflowId: string): Promise<WorkflowHandle<O>> {
    await this.getStatus(workflowId)
    return new WorkflowHandle<O>(this, workflowId)
  }

  async getStatus (workflowId: string): Promise<WorkflowStatus> {
    checkReadId(workflowId)
    const db = this.#connected()
    // A run here whose start is not written yet (opening.ts): write it first, so this process sees its own workflow.
    await this.#runs.ensureStarted(workflowId)
    const row = await this.#read(() => getWorkflow(db.sql, db.tables, workflowId))
    if (row === undefined) throw new WorkflowNotFoundError(workflowId)
    return toStatus(row)
  }

  /** Throws DBOS_ERR_INVALID_LIST_FILTER (400) for a bad filter, before any query. */
  async list (filter: ListFilter = {}): Promise<WorkflowStatus[]> {
    const checked = checkListFilter(filter)
    const db = this.#connected()
    return (await this.#read(() => listWorkflows(db.sql, db.tables, checked))).map(toStatus)
  }

  async listSteps (workflowId: string): Promise<StepInfo[]> {
    checkReadId(workflowId)
    const db = this.#connected()
    await this.#runs.ensureStarted(workflowId)
    const rows = await this.#read(() => listSteps(db.sql, db.tables, workflowId))
    if (rows.length === 0) await this.getStatus(workflowId)
    return rows.map(toStepInfo)
  }

  /** Waits for the workflow's outcome (see results.ts); 504 after `timeoutMs`, 404 for an unknown id. */
  async getResult (workflowId: string, options: GetResultOptions = {}): Promise<unknown> {
    checkReadId(workflowId)
    return this.#connected().results.wait(workflowId, options.timeoutMs)
  }

  /**
   * Reads answer 503 while the database is unreachable, and also when it does
   * not answer within the connect timeout: a query sent on a connection whose
   * server vanished (a cut network) would otherwise wait for TCP to notice.
   * A read abandoned that way changes nothing; its late answer is dropped.
   * A read that failed on a dead connection (the server restarted since it
   * was last used) is tried once more, on a fresh one, before it is a 503.
   */
  async #read<T> (query: () => Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new DatabaseUnavailableError()), READ_TIMEOUT_MS)
    })
    const once = (): Promise<T> => Promise.race([query(), timeout])
    try {
      return await once().catch((err: unknown) => {
        if (isConnectionError(err)) return once()
        throw err
      })
    } catch (err) {
      if (isConnectionError(err)) throw new DatabaseUnavailableError({ cause: err })
      throw err
    } finally {
      clearTimeout(timer)
    }
  }
}

/**
 * A looked-up id that no workflow can have, because Postgres could not store
 * it: 400 rather than the driver's 500 (a NUL) or a miss (a lone surrogate).
 */
function checkReadId (workflowId: unknown): void {
  if (typeof workflowId !== 'string') throw new InvalidWorkflowIdError('must be a string')
  const bad = unstorableTextReason(workflowId)
  if (bad !== undefined) throw new InvalidWorkflowIdError(bad)
}
