/**
 * WorkflowClient: the workflows of an app's database, from another process
 * (a script, a cron job, another service), with no Fastify and no workflow
 * code. It enqueues by name (an instance that has the definition runs it)
 * and reads, waits for, messages, cancels, resumes and forks workflows. It
 * owns only its connections: close() and the script can exit.
 */
import type { DeleteFinishedOptions, EnqueueOptions, ForkOptions, GetEventOptions, ReadStreamOptions, SendOptions } from '../calls.js'
import { consoleLogger, type Logger } from '../core/logger.js'
import { unstorableTextReason } from '../core/text.js'
import {
  ClientClosedError, DatabaseUnavailableError, InvalidArgumentError, InvalidOptionError
} from '../errors.js'
import type { ListFilter } from '../list-filter.js'
import type { EventInfo, StepInfo, StreamValue, WorkflowPage, WorkflowStatus } from '../status.js'
import { connect, openPool, tables, type Sql, type Tables } from '../store/connect.js'
import { announceAdoptable, UNOWNED } from '../store/executors.js'
import { Notifications } from '../store/listener.js'
import { migrate } from '../store/migrate.js'
import { isConnectionError } from '../store/pg-errors.js'
import { streamAs503, unavailableAs503 } from '../store/unavailable.js'
import { getOutcome } from '../store/workflows.js'
import { cancelWorkflow, deleteFinishedInBatches, forkTarget, forkWorkflow, reopenWorkflow, type ControlSql } from './control.js'
import { Enqueuer } from './enqueue.js'
import { Messaging } from './messaging.js'
import { Announcements } from '../core/announcements.js'
import { Queries } from './queries.js'
import { ResultWaiters } from './results.js'

export interface WorkflowClientOptions {
  /** The app's database. Default: DATABASE_URL. */
  databaseUrl?: string
  /** The app's schema. Default 'dbos'. */
  schema?: string
  /** Workflows this client enqueues are of this app version (see appVersion in the engine's options). Default: none. */
  appVersion?: string
  /** Connections for reads and writes. Default 2 (plus one for transactions and one for LISTEN). */
  poolSize?: number
  /** The fallback poll while waiting for a result or an event. Default 500 ms. */
  pollMs?: number
  /** Behind a transaction-mode pooler: no prepared statements, no LISTEN. */
  transactionPooling?: boolean
  logger?: Logger
}

/** A workflow, seen from a client. */
export interface ClientHandle<O = unknown> {
  readonly workflowId: string
  getStatus (): Promise<WorkflowStatus>
  getResult (options?: { timeoutMs?: number }): Promise<O>
}

export class WorkflowClient {
  readonly #sql: Sql
  readonly #transactions: Sql
  readonly #tables: Tables
  readonly #control: ControlSql
  readonly #notifications: Notifications
  readonly #abort = new AbortController()
  readonly #results = new ResultWaiters()
  readonly #queries: Queries
  readonly #messaging: Messaging
  readonly #enqueuer: Enqueuer
  #ready: Promise<void> | undefined

  constructor (options: WorkflowClientOptions = {}) {
    const url = options.databaseUrl ?? process.env.DATABASE_URL
    if (url === undefined || url === '') throw new InvalidOptionError('WorkflowClient needs databaseUrl (or DATABASE_URL)')
    const schema = options.schema ?? 'dbos'
    if (!/^[a-z_][a-z0-9_]{0,62}$/.test(schema)) throw new InvalidOptionError('schema must be a lower-case SQL identifier')
    const logger = options.logger ?? consoleLogger
    const pollMs = options.pollMs ?? 500
    const pooled = { transactionPooling: options.transactionPooling === true, name: 'fastify-dbos client' }
    this.#sql = connect(url, options.poolSize ?? 2, pooled)
    this.#transactions = connect(url, 1, pooled)
    this.#tables = tables(this.#sql, schema)
    this.#control = { sql: this.#sql, transactions: this.#transactions, tables: this.#tables }
    this.#notifications = new Notifications(url, logger, { enabled: options.transactionPooling !== true })
    const { signal } = this.#abort
    this.#results.connect({
      read: (id) => getOutcome(this.#sql, this.#tables, id),
      subscribeLocal: () => undefined,
      pollMs,
      signal,
      listen: (handler) => this.#notifications.listen(this.#tables.channel, handler)
    })
    const events = new Announcements()
    let eventsListened: Promise<void> | undefined
    this.#queries = new Queries({ sql: this.#sql, tables: this.#tables, ensureStarted: () => undefined })
    this.#messaging = new Messaging({
      sql: this.#sql,
      tables: this.#tables,
      signal,
      events,
      pollMs,
      listenEvents: () => (eventsListened ??= this.#notifications.listen(this.#tables.eventsChannel, {
        notify: (payload) => events.announce(payload),
        resubscribed: () => events.announceAll()
      }))
    })
    this.#enqueuer = new Enqueuer({ sql: this.#sql, tables: this.#tables, appVersion: options.appVersion ?? null, queues: null })
  }

  /** Connects, and brings the schema up to date, once. */
  async #open (): Promise<void> {
    if (this.#abort.signal.aborted) throw new ClientClosedError()
    this.#ready ??= (async () => {
      try {
        await Promise.all([openPool(this.#sql), openPool(this.#transactions)])
        await migrate(this.#sql, this.#tables)
      } catch (err) {
        this.#ready = undefined
        throw isConnectionError(err) ? new DatabaseUnavailableError({ cause: err }) : err
      }
    })()
    return this.#ready
  }

  /**
   * Enqueues workflow `workflowName` on queue `queueName` (by name: an
   * instance that has both runs it), status ENQUEUED until then. Same
   * options as the engine's enqueue.
   */
  async enqueue<O = unknown> (queueName: string, workflowName: string, input: unknown, options: EnqueueOptions = {}): Promise<ClientHandle<O>> {
    await this.#open()
    return unavailableAs503(async () => {
      if (typeof workflowName !== 'string' || workflowName.length === 0 || unstorableTextReason(workflowName) !== undefined) {
        throw new InvalidArgumentError('workflowName must be a non-empty string')
      }
      const id = await this.#enqueuer.enqueue(queueName, { name: workflowName, options: {} }, input, options, {})
      return this.#handle<O>(id)
    })
  }

  /** A handle to an existing workflow; 404 if there is none. */
  async retrieve<O = unknown> (workflowId: string): Promise<ClientHandle<O>> {
    await this.getStatus(workflowId)
    return this.#handle<O>(workflowId)
  }

  async getStatus (workflowId: string): Promise<WorkflowStatus> {
    await this.#open()
    return this.#queries.getStatus(workflowId)
  }

  /** The workflow's result once it finishes (rejects with its error); 504 after `timeoutMs`. */
  async getResult<O = unknown> (workflowId: string, options: { timeoutMs?: number } = {}): Promise<O> {
    await this.#open()
    return this.#results.wait(workflowId, options.timeoutMs) as Promise<O>
  }

  async list (filter?: ListFilter): Promise<WorkflowStatus[]> {
    await this.#open()
    return this.#queries.list(filter)
  }

  async listPage (filter?: ListFilter): Promise<WorkflowPage> {
    await this.#open()
    return this.#queries.listPage(filter)
  }

  async listSteps (workflowId: string): Promise<StepInfo[]> {
    await this.#open()
    return this.#queries.listSteps(workflowId)
  }

  async send (workflowId: string, message: unknown, options?: SendOptions): Promise<void> {
    await this.#open()
    return unavailableAs503(() => this.#messaging.send(workflowId, message, options))
  }

  async getEvent<T = unknown> (workflowId: string, key: string, options?: GetEventOptions): Promise<T | null> {
    await this.#open()
    return unavailableAs503(() => this.#messaging.getEvent(workflowId, key, options)) as Promise<T | null>
  }

  async listEvents (workflowId: string): Promise<EventInfo[]> {
    await this.#open()
    return unavailableAs503(() => this.#messaging.listEvents(workflowId))
  }

  async * readStream<T = unknown> (workflowId: string, key: string, options?: ReadStreamOptions): AsyncGenerator<StreamValue<T>, void, undefined> {
    await this.#open()
    yield * streamAs503(() => this.#messaging.readStream(workflowId, key, options)) as AsyncGenerator<StreamValue<T>, void, undefined>
  }

  /** Cancels a workflow and its children; its owner stops it at once (cancel channel). */
  async cancel (workflowId: string): Promise<void> {
    await this.#open()
    await unavailableAs503(() => cancelWorkflow(this.#control, workflowId))
  }

  /**
   * Continues a CANCELLED, ERROR or MAX_RECOVERY_ATTEMPTS_EXCEEDED workflow;
   * a live instance that can run it adopts it (a queued one goes back on its
   * queue).
   */
  async resume<O = unknown> (workflowId: string): Promise<ClientHandle<O>> {
    await this.#open()
    return unavailableAs503(async () => {
      if (await reopenWorkflow(this.#control, workflowId, UNOWNED) === 'resumed') await announceAdoptable(this.#sql, this.#tables)
      return this.#handle<O>(workflowId)
    })
  }

  /** A new workflow reusing the source's results before `fromStep`; a live instance that can run it adopts it. */
  async fork<O = unknown> (workflowId: string, options: ForkOptions): Promise<ClientHandle<O>> {
    await this.#open()
    return unavailableAs503(async () => {
      const { fromStep, newId } = forkTarget(workflowId, options)
      const source = await this.#queries.getStatus(workflowId)
      const forked = await forkWorkflow(this.#control, { sourceId: workflowId, newId, fromStep, owner: UNOWNED, appVersion: source.appVersion })
      if (forked === 'forked') await announceAdoptable(this.#sql, this.#tables)
      return this.#handle<O>(newId)
    })
  }

  async deleteFinished (options: DeleteFinishedOptions): Promise<number> {
    await this.#open()
    return unavailableAs503(() => deleteFinishedInBatches(this.#control, options))
  }

  /** Closes the client's connections; waits in progress end with DBOS_ERR_SHUTTING_DOWN. */
  async close (): Promise<void> {
    this.#abort.abort()
    this.#results.close()
    await this.#notifications.close()
    await Promise.all([this.#sql.end({ timeout: 5 }), this.#transactions.end({ timeout: 5 })])
  }

  #handle<O> (workflowId: string): ClientHandle<O> {
    return {
      workflowId,
      getStatus: () => this.getStatus(workflowId),
      getResult: (options) => this.getResult<O>(workflowId, options)
    }
  }
}
