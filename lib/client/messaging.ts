/**
 * Messages, events and streams seen from outside a workflow: send(),
 * getEvent(), listEvents(), readStream(); and the waits of runs here for
 * messages announced on the messages channel.
 */
import { deserialize, serialize } from '../core/codec.js'
import { unstorableTextReason } from '../core/text.js'
import { InvalidArgumentError, WorkflowFinishedError, WorkflowNotFoundError } from '../errors.js'
import type { GetEventOptions, ReadStreamOptions, SendOptions } from '../calls.js'
import type { EventInfo, StreamValue } from '../status.js'
import type { Sql, Tables } from '../store/connect.js'
import { getEvent, listEvents, readStream } from '../store/events.js'
import { sendMessage, sendMessages, type SendResult } from '../store/messages.js'
import { Batcher } from '../core/batcher.js'
import { isConnectionError } from '../store/pg-errors.js'
import { checkTimeout } from '../core/timers.js'
import type { Announcements, AnnouncementWatch } from '../core/announcements.js'

export interface MessagingDeps {
  sql: Sql
  tables: Tables
  /** Announcements of events set and stream values written: `<workflow id>\n<key>`. */
  events: Announcements
  /** Subscribes to the events channel, once somebody waits for one; never rejects. */
  listenEvents (): Promise<void>
  /** The fallback poll while waiting for an event or a stream value. */
  pollMs: number
  signal: AbortSignal
}


/** Values read per statement by readStream. */
const STREAM_PAGE = 100

export class Messaging {
  readonly #deps: MessagingDeps
  readonly #sends: Batcher<{ to: string, topic: string, message: string }, SendResult>

  constructor (deps: MessagingDeps) {
    this.#deps = deps
    // One at a time, the one-row statement: it plans and runs faster than the unnest.
    this.#sends = new Batcher(async (rows) => rows.length === 1
      ? [await sendMessage(deps.sql, deps.tables, { ...rows[0]!, idempotencyKey: null })]
      : (await sendMessages(deps.sql, deps.tables, rows)).map(sendOutcome),
      { maxInFlight: Math.max(1, deps.sql.options.max - 1), maxBatch: 1000, isolateOnError: (err) => !isConnectionError(err) })
  }

  /**
   * Delivers `message` to workflow `to` (on `topic`, '' by default). With an
   * idempotency key, a repeated send delivers nothing more. 404 for an
   * unknown workflow; DBOS_ERR_WORKFLOW_FINISHED (409) for a finished one.
   */
  async send (to: string, message: unknown, options: SendOptions = {}): Promise<void> {
    text('workflowId', to)
    const topic = text('topic', options.topic ?? '')
    const idempotencyKey = options.idempotencyKey === undefined ? null : text('idempotencyKey', options.idempotencyKey)
    const stored = serialize(message, 'a message')
    // Without a key, batched with the sends made at once (one statement, one
    // commit: a commit that notifies cannot share its disk flush with others).
    const result = idempotencyKey === null
      ? await this.#sends.push({ to, topic, message: stored })
      : await sendMessage(this.#deps.sql, this.#deps.tables, { to, topic, message: stored, idempotencyKey })
    if (result === 'not-found') throw new WorkflowNotFoundError(to)
    if (result === 'finished') throw new WorkflowFinishedError(to)
  }

  /**
   * The latest value of event `key`, waiting up to `timeoutMs` (default: as
   * long as it takes) for one to be set; null at the timeout, and at once
   * when the workflow finished without setting it. 404 for an unknown workflow.
   */
  async getEvent (workflowId: string, key: string, options: GetEventOptions = {}): Promise<unknown> {
    text('workflowId', workflowId)
    text('key', key)
    const deadline = Date.now() + checkTimeout(options.timeoutMs)
    const { sql, tables } = this.#deps
    const watch = this.#watch(workflowId, key)
    try {
      for (;;) {
        const row = await getEvent(sql, tables, workflowId, key)
        if (row.status === null) throw new WorkflowNotFoundError(workflowId)
        if (row.value !== null) return deserialize(row.value)
        if (!['PENDING', 'ENQUEUED'].includes(row.status)) return null
        const left = deadline - Date.now()
        if (left <= 0 || this.#deps.signal.aborted) return null
        await watch.next(Math.min(left, this.#deps.pollMs))
      }
    } finally {
      watch.close()
    }
  }

  async listEvents (workflowId: string): Promise<EventInfo[]> {
    text('workflowId', workflowId)
    const rows = await listEvents(this.#deps.sql, this.#deps.tables, workflowId)
    return rows.map((r) => ({ key: r.key, value: deserialize(r.value), stepId: r.step_id, createdAt: r.created_at }))
  }

  /**
   * The values of stream `key` from offset `from` on, as they are written;
   * ends once the stream is closed or the workflow has finished. 404 for an
   * unknown workflow (at the first read).
   */
  async * readStream (workflowId: string, key: string, options: ReadStreamOptions = {}): AsyncGenerator<StreamValue, void, undefined> {
    text('workflowId', workflowId)
    text('key', key)
    let next = options.from ?? 0
    if (!Number.isSafeInteger(next) || next < 0) throw new InvalidArgumentError('from must be a non-negative integer offset')
    const { sql, tables } = this.#deps
    const watch = this.#watch(workflowId, key)
    try {
      for (;;) {
        const { status, rows } = await readStream(sql, tables, workflowId, key, next, STREAM_PAGE)
        if (status === null) throw new WorkflowNotFoundError(workflowId)
        for (const row of rows) {
          if (row.closed) return
          next = row.offset + 1
          yield { offset: row.offset, value: deserialize(row.value!) }
        }
        if (rows.length === STREAM_PAGE) continue
        // Finished when the values were read: all of them were there already.
        if (!['PENDING', 'ENQUEUED'].includes(status) || this.#deps.signal.aborted) return
        if (rows.length === 0) await watch.next(this.#deps.pollMs)
      }
    } finally {
      watch.close()
    }
  }

  /** Announcements of `key` of `workflowId` from now on (made before the read it guards). */
  #watch (workflowId: string, key: string): AnnouncementWatch {
    void this.#deps.listenEvents()
    return this.#deps.events.watch(`${workflowId}\n${key}`)
  }
}

/** A string argument Postgres can store as it is: 400 otherwise. */
function text (what: string, value: unknown): string {
  if (typeof value !== 'string') throw new InvalidArgumentError(`${what} must be a string`)
  const bad = unstorableTextReason(value)
  if (bad !== undefined) throw new InvalidArgumentError(`${what} ${bad}`)
  return value
}

/** A batched send's answer: the target's status then (see sendMessages). */
function sendOutcome (status: string | null): SendResult {
  if (status === null) return 'not-found'
  return status === 'PENDING' || status === 'ENQUEUED' ? 'sent' : 'finished'
}
