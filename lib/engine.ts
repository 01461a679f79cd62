/**
 * The engine: owns the database connection, the registry of workflow
 * definitions, the workflows running in this process, and their lifecycle.
 * start() and stop() are safe to call twice; stop() waits for start().
 */
import { createHash } from 'node:crypto'
import { nanoid } from 'nanoid'
import { Checkpoints } from './checkpoints.js'
import { deserialize, serialize, serializeError, serializeResult } from './codec.js'
import { startEmbeddedPostgres, defaultDataDir, type EmbeddedPostgres } from './embedded-postgres.js'
import {
  DatabaseUnavailableError, DuplicateWorkflowNameError, EngineStoppedError, IdempotencyConflictError,
  InvalidWorkflowIdError, MaxRecoveryAttemptsError, NotReadyError, ResultTimeoutError, ShuttingDownError,
  UnknownWorkflowError, WorkflowCancelledError, WorkflowFencedError, WorkflowNotFoundError
} from './errors.js'
import { WorkflowHandle, type GetResultOptions, type HandleSource } from './handle.js'
import { resolveOptions, type EngineOptions, type ResolvedOptions } from './options.js'
import { recoverUntilDone } from './recovery.js'
import { ResultWaiters } from './results.js'
import { sleep } from './retry.js'
import { WorkflowRun } from './runner.js'
import { toStatus, toStepInfo, type StepInfo, type WorkflowStatus } from './status.js'
import { connect, tables, type Sql, type Tables } from './store/connect.js'
import { migrate } from './store/migrate.js'
import { isConnectionError } from './store/pg-errors.js'
import { listSteps, type StepRow } from './store/steps.js'
import { getOutcome, getWorkflow, listWorkflows, releaseWorkflows, type ListFilter } from './store/workflows.js'
import type { WorkflowDefinition } from './workflow.js'

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

interface Deadline { at: number, timeoutMs: number }

type LocalOutcome = { ok: true, value: unknown } | { ok: false, error: unknown }

interface Connected {
  sql: Sql
  tables: Tables
  checkpoints: Checkpoints
  results: ResultWaiters
}

/** Longest id or key a caller may give. */
export const MAX_ID_LENGTH = 256
/** Longest id the engine derives from a key (scope prefix and `::n` suffix added). */
export const MAX_DERIVED_ID_LENGTH = 1024
// C0 and C1 control characters, DEL.
const CONTROL_CHARS = /[\u0000-\u001f\u007f-\u009f]/

/** Why `id` is not usable as a workflow id or header value, or undefined if it is. */
export function invalidIdReason (id: unknown, maxLength = MAX_ID_LENGTH): string | undefined {
  if (typeof id !== 'string') return 'must be a string'
  if (id.length === 0) return 'must not be empty'
  if (id.length > maxLength) return `must be at most ${maxLength} characters`
  if (CONTROL_CHARS.test(id)) return 'must not contain control characters'
  return undefined
}

export class Engine implements HandleSource {
  readonly options: ResolvedOptions
  readonly #defs = new Map<string, WorkflowDefinition<any, any>>()
  readonly #running = new Map<string, Promise<LocalOutcome>>()
  /** Epoch each local run holds, so stop() can hand unfinished ones back. */
  readonly #epochs = new Map<string, string>()
  readonly #abort = new AbortController()
  #state: 'new' | 'starting' | 'running' | 'stopping' | 'stopped' = 'new'
  #starting: Promise<void> | undefined
  #stopping: Promise<void> | undefined
  #db: Connected | undefined
  #embedded: EmbeddedPostgres | undefined
  #databaseUrl: string | undefined
  #recovery: Promise<void> | undefined

  constructor (options: EngineOptions = {}) {
    this.options = resolveOptions(options)
    this.register(...this.options.workflows)
  }

  get executorId (): string { return this.options.executorId }

  /** The connection string in use, once started (the embedded server's, if any). */
  get databaseUrl (): string | undefined { return this.#databaseUrl }

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
      const sql = connect(url, this.options.poolSize)
      const t = tables(sql, this.options.schema)
      this.#db = {
        sql,
        tables: t,
        // A sixth of the pool per batcher (starts, checkpoints) leaves room for user transactions and reads.
        checkpoints: new Checkpoints(sql, t, logger, this.#abort.signal, Math.max(1, Math.floor(this.options.poolSize / 6))),
        results: new ResultWaiters(sql, t.channel, logger)
      }
      const applied = await migrate(sql, t)
      if (applied.length > 0) logger.info({ migrations: applied, schema: t.schema }, 'applied workflow database migrations')
    } catch (err) {
      await this.#closeConnections()
      this.#state = 'stopped'
      throw isConnectionError(err) ? new DatabaseUnavailableError({ cause: err }) : err
    }
    this.#state = 'running'
    this.#recovery = recoverUntilDone({
      ...this.#db,
      logger,
      executorId: this.executorId,
      signal: this.#abort.signal,
      maxRecoveryAttempts: this.options.maxRecoveryAttempts,
      definition: (name) => this.#defs.get(name),
      isRunning: (id) => this.#running.has(id),
      resume: (def, row, input, steps) => this.#launch(def, row.workflow_id, row.epoch, input, row.request_id, steps)
    })
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
    const running = [...this.#running.values()]
    if (running.length > 0) {
      this.options.logger.info({ count: running.length }, 'waiting for running workflows to finish')
      let timer: NodeJS.Timeout | undefined
      const timeout = new Promise<void>((resolve) => { timer = setTimeout(resolve, this.options.shutdownTimeoutMs) })
      await Promise.race([Promise.allSettled(running), timeout])
      clearTimeout(timer)
      if (this.#running.size > 0) {
        this.options.logger.warn({ workflowIds: [...this.#running.keys()] },
          'shutdown timeout: leaving unfinished workflows PENDING; they resume on the next start')
      }
    }
    this.#state = 'stopped'
    this.#abort.abort()
    await this.#recovery
    await this.#db?.checkpoints.drained()
    await this.#releaseUnfinished()
    await this.#closeConnections()
  }

  /**
   * Runs cut short by a graceful stop are not crashes: take their attempt back
   * so that restarts during a long workflow never count toward
   * maxRecoveryAttempts. Best effort; if the database is down they count.
   */
  async #releaseUnfinished (): Promise<void> {
    const db = this.#db
    const rows = [...this.#epochs].map(([workflowId, epoch]) => ({ workflowId, epoch }))
    if (db === undefined || rows.length === 0) return
    await releaseWorkflows(db.sql, db.tables, rows).catch((err) => {
      this.options.logger.warn({ err }, 'could not release unfinished workflows; this shutdown counts as a recovery attempt')
    })
  }

  async #closeConnections (): Promise<void> {
    const db = this.#db
    this.#db = undefined
    if (db !== undefined) {
      await db.results.close()
      await db.sql.end({ timeout: 5 })
    }
    await this.#embedded?.stop()
  }

  /** Serialises an input once; refuses values that cannot be stored (400) before anything is written. */
  prepareInput (def: WorkflowDefinition<any, any>, input: unknown): PreparedInput {
    const text = serialize(input, `the input of workflow ${JSON.stringify(def.name)}`)
    const hash = createHash('sha256').update(def.name).update('\0').update(text).digest('base64url')
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
    const bad = invalidIdReason(workflowId, internal.derivedId === true ? MAX_DERIVED_ID_LENGTH : MAX_ID_LENGTH)
    if (bad !== undefined) throw new InvalidWorkflowIdError(bad)
    const { text, hash } = internal.prepared ?? this.prepareInput(def, input)
    const requestId = options.requestId ?? null
    const started = await db.checkpoints.start({
      workflowId, name: def.name, input: text, inputHash: hash, requestId, executorId: this.executorId
    })
    if (started.inserted) {
      // The body gets the stored form of its input, exactly as a recovery would.
      this.#launch(def, workflowId, started.epoch, deserialize(text), requestId)
    } else if (started.name !== def.name || started.inputHash !== hash) {
      throw new IdempotencyConflictError()
    }
    return new WorkflowHandle<O>(this, workflowId)
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

  #launch (def: WorkflowDefinition<any, any>, workflowId: string, epoch: string, input: unknown, requestId: string | null, steps?: StepRow[]): void {
    const db = this.#db!
    const run = new WorkflowRun({ sql: db.sql, tables: db.tables, checkpoints: db.checkpoints, signal: this.#abort.signal },
      workflowId, epoch, requestId, steps)
    const outcome = this.#execute(db, def, run, input)
    this.#running.set(workflowId, outcome)
    this.#epochs.set(workflowId, epoch)
    void outcome.finally(() => {
      this.#running.delete(workflowId)
      this.#epochs.delete(workflowId)
      db.results.wake(workflowId)
    })
  }

  /** Runs the body and records its outcome; never rejects. */
  async #execute (db: Connected, def: WorkflowDefinition<any, any>, run: WorkflowRun, input: unknown): Promise<LocalOutcome> {
    const { logger } = this.options
    const workflowId = run.workflowId
    let local: LocalOutcome
    let output: string | null = null
    let error: string | null = null
    try {
      const value = await def.fn(run, input)
      output = serializeResult(value, `the output of workflow ${JSON.stringify(def.name)}`)
      local = { ok: true, value }
    } catch (err) {
      if (err instanceof EngineStoppedError || err instanceof WorkflowFencedError) return this.#abandoned(workflowId, err)
      error = serializeError(err)
      local = { ok: false, error: err }
    }
    try {
      const written = await db.checkpoints.complete({
        workflowId, epoch: run.epoch, status: local.ok ? 'SUCCESS' : 'ERROR', output, error
      })
      // Usually already settled: the last step's write shared the completion's statement.
      await run.confirmCheckpoints()
      if (!written) return this.#abandoned(workflowId, new WorkflowFencedError(workflowId))
    } catch (err) {
      if (err instanceof EngineStoppedError || err instanceof WorkflowFencedError) return this.#abandoned(workflowId, err)
      logger.error({ err, workflowId }, 'could not record the outcome of a workflow; it stays PENDING')
      return { ok: false, error: err }
    }
    if (!local.ok) logger.debug({ workflowId, err: local.error }, 'workflow finished with an error')
    return local
  }

  #abandoned (workflowId: string, err: Error): LocalOutcome {
    if (err instanceof WorkflowFencedError) {
      this.options.logger.warn({ workflowId }, 'workflow taken over by another run; this run stopped without writing')
    } else {
      this.options.logger.info({ workflowId }, 'engine stopped before the workflow finished; it stays PENDING')
    }
    return { ok: false, error: err }
  }

  /** A handle to an existing workflow; 404 if there is none with this id. */
  async retrieve<O = unknown> (workflowId: string): Promise<WorkflowHandle<O>> {
    await this.getStatus(workflowId)
    return new WorkflowHandle<O>(this, workflowId)
  }

  async getStatus (workflowId: string): Promise<WorkflowStatus> {
    const db = this.#connected()
    const row = await this.#read(() => getWorkflow(db.sql, db.tables, workflowId))
    if (row === undefined) throw new WorkflowNotFoundError(workflowId)
    return toStatus(row)
  }

  async list (filter: ListFilter = {}): Promise<WorkflowStatus[]> {
    const db = this.#connected()
    return (await this.#read(() => listWorkflows(db.sql, db.tables, filter))).map(toStatus)
  }

  async listSteps (workflowId: string): Promise<StepInfo[]> {
    const db = this.#connected()
    const rows = await this.#read(() => listSteps(db.sql, db.tables, workflowId))
    if (rows.length === 0) await this.getStatus(workflowId)
    return rows.map(toStepInfo)
  }

  async getResult (workflowId: string, options: GetResultOptions = {}): Promise<unknown> {
    const deadline: Deadline = { at: options.timeoutMs === undefined ? Infinity : Date.now() + options.timeoutMs, timeoutMs: options.timeoutMs ?? 0 }
    const local = this.#running.get(workflowId)
    if (local !== undefined) {
      const outcome = await this.#beforeDeadline(local, deadline, workflowId)
      if (outcome.ok) return outcome.value
      // A run that stopped without an outcome: whoever took over writes it to the database.
      if (!(outcome.error instanceof WorkflowFencedError)) throw outcome.error
    }
    return this.#awaitStored(workflowId, deadline)
  }

  async #awaitStored (workflowId: string, deadline: Deadline): Promise<unknown> {
    const db = this.#connected()
    void db.results.listen()
    for (;;) {
      const waiter = db.results.wait(workflowId)
      try {
        const row = await getOutcome(db.sql, db.tables, workflowId).catch((err) => {
          if (isConnectionError(err)) return null // keep waiting through an outage
          throw err
        })
        if (row === undefined) throw new WorkflowNotFoundError(workflowId)
        if (row !== null && row.status !== 'PENDING') {
          if (row.status === 'SUCCESS') return deserialize(row.output!)
          if (row.error !== null) throw deserialize(row.error)
          throw row.status === 'CANCELLED' ? new WorkflowCancelledError(workflowId) : new MaxRecoveryAttemptsError(workflowId, 0)
        }
        const local = this.#running.get(workflowId)
        const wait: Promise<unknown> = local ?? Promise.race([waiter.woken, sleep(this.options.resultPollIntervalMs, this.#abort.signal)])
        await this.#beforeDeadline(wait, deadline, workflowId)
        if (this.#abort.signal.aborted) throw new ShuttingDownError()
      } finally {
        waiter.cancel()
      }
    }
  }

  #beforeDeadline<T> (promise: Promise<T>, deadline: Deadline, workflowId: string): Promise<T> {
    if (deadline.at === Infinity) return promise
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_resolve, reject) => {
      timer = setTimeout(() => reject(new ResultTimeoutError(workflowId, deadline.timeoutMs)), Math.max(0, deadline.at - Date.now()))
    })
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
  }

  /** Reads answer 503 while the database is unreachable. */
  async #read<T> (query: () => Promise<T>): Promise<T> {
    try {
      return await query()
    } catch (err) {
      if (isConnectionError(err)) throw new DatabaseUnavailableError({ cause: err })
      throw err
    }
  }
}
