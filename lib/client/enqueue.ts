/** Enqueueing workflows: checks, then an ENQUEUED row for a dispatcher to take. */
import type { EnqueueOptions, InternalStart } from '../calls.js'
import { checkRequestId, checkWorkflowTimeout, workflowIdFor } from '../core/start-checks.js'
import { unstorableTextReason } from '../core/text.js'
import {
  IdempotencyConflictError, InvalidArgumentError,
  QueueDeduplicatedError, UnknownQueueError
} from '../errors.js'
import type { QueueDefinition } from '../queue.js'
import type { Sql, Tables } from '../store/connect.js'
import { debounce, enqueueWorkflow, enqueueWorkflows, type QueuedRow, type Runner } from '../store/queues.js'
import { Batcher } from '../core/batcher.js'
import { isConnectionError } from '../store/pg-errors.js'
import type { WorkflowDefinition } from '../workflow.js'
import { prepareInput } from '../core/inputs.js'
import { MAX_DURATION_MS } from '../core/timers.js'

export interface EnqueueDeps {
  sql: Sql
  tables: Tables
  appVersion: string | null
  /** The queues one may enqueue on; null: any name (the client, which has no definitions). */
  queues: Map<string, QueueDefinition> | null
}

const MAX_DELAY_MS = MAX_DURATION_MS

export class Enqueuer {
  readonly #deps: EnqueueDeps
  /**
   * Enqueues on our own pool made at once share one statement and one
   * commit: each commit that notifies takes a database-wide lock, so alone
   * they cannot share a disk flush, and enqueueing was the queues' limit.
   */
  readonly #batch: Batcher<QueuedRow, boolean>

  constructor (deps: EnqueueDeps) {
    this.#deps = deps
    this.#batch = new Batcher(async (rows) => {
      const inserted = await enqueueWorkflows(deps.sql, deps.tables, rows)
      // Two enqueues of one id in a batch: the first was inserted; the
      // other is checked against it by enqueueWorkflow (same input, or 422).
      return rows.map((r) => inserted.delete(r.workflowId))
    }, { maxInFlight: Math.max(1, deps.sql.options.max - 1), maxBatch: 1000, isolateOnError: (err) => !isConnectionError(err) })
  }

  /**
   * Enqueues `def` on `queue` and resolves with the workflow's id once it is
   * recorded (in the caller's transaction, with `options.sql`). With a
   * workflowId that exists: the same definition and input give that id back,
   * anything else is 422. DBOS_ERR_QUEUE_DEDUPLICATED (409) while another
   * workflow with the deduplicationId is ENQUEUED or PENDING in the queue.
   */
  async enqueue (queue: QueueDefinition | string, def: Pick<WorkflowDefinition<any, any>, 'name' | 'options'>, input: unknown, options: EnqueueOptions, internal: InternalStart): Promise<string> {
    const q = this.#queue(queue)
    const workflowId = workflowIdFor(options.workflowId, internal.derivedId === true)
    const requestId = checkRequestId(options.requestId)
    const priority = options.priority ?? 0
    if (!Number.isInteger(priority) || Math.abs(priority) > 2 ** 31 - 1) throw new InvalidArgumentError('priority must be an integer')
    const delayMs = options.delayMs ?? 0
    if (typeof delayMs !== 'number' || !(delayMs >= 0 && delayMs <= MAX_DELAY_MS)) throw new InvalidArgumentError('delayMs must be a number of milliseconds from 0 to 1e14')
    const timeoutMs = checkWorkflowTimeout(options.timeoutMs ?? def.options.timeoutMs)
    const partitionKey = optionalText('partitionKey', options.partitionKey)
    const deduplicationId = optionalText('deduplicationId', options.deduplicationId)
    const db = options.debounce
    if (db !== undefined) {
      optionalText('debounce.key', db.key)
      if (typeof db.periodMs !== 'number' || !(db.periodMs > 0 && db.periodMs <= MAX_DELAY_MS)) throw new InvalidArgumentError('debounce.periodMs must be a positive number of milliseconds')
      if (options.workflowId !== undefined || deduplicationId !== null) throw new InvalidArgumentError('a debounced enqueue takes no workflowId and no deduplicationId')
    }
    if (options.sql !== undefined && typeof options.sql.unsafe !== 'function') throw new InvalidArgumentError('sql must be a postgres.js transaction')
    const { text, hash } = internal.prepared ?? prepareInput(def, input)
    const row = {
      workflowId, name: def.name, input: text, inputHash: hash, requestId, executorId: '', appVersion: this.#deps.appVersion,
      parentId: internal.parentId ?? null, timeoutMs, queue: q.name, priority, delayMs, partitionKey, deduplicationId,
      debounceKey: db?.key ?? null
    }
    const sql: Runner = options.sql ?? this.#deps.sql
    if (db !== undefined) {
      const debounced = await debounce(sql, this.#deps.tables, row, db.periodMs)
      if ('heldBy' in debounced) throw new InvalidArgumentError(`debounce key ${JSON.stringify(db.key)} is held by a waiting workflow of another definition (${JSON.stringify(debounced.heldBy)}) in queue ${JSON.stringify(q.name)}`)
      return debounced.workflowId
    }
    // Batched unless in the caller's transaction; a row the batch did not
    // insert met a conflict, which enqueueWorkflow reads (or inserts it, if
    // what was in the way is gone).
    if (options.sql === undefined && await this.#batch.push(row)) return workflowId
    const result = await enqueueWorkflow(sql, this.#deps.tables, row)
    if (result.enqueued) return result.workflowId
    if ('deduplicated' in result) throw new QueueDeduplicatedError(q.name, deduplicationId!)
    // Without a debounce key, only the id can be what was in the way.
    const existing = 'existing' in result ? result.existing : { name: '', inputHash: '' }
    if (existing.name !== def.name || existing.inputHash !== hash) throw new IdempotencyConflictError()
    return workflowId
  }

  #queue (queue: QueueDefinition | string): { name: string } {
    const name = typeof queue === 'string' ? queue : queue?.name
    if (typeof name !== 'string' || name.length === 0 || unstorableTextReason(name) !== undefined) throw new UnknownQueueError(String(name))
    if (this.#deps.queues === null) return { name }
    const known = this.#deps.queues.get(name)
    if (known === undefined || (typeof queue !== 'string' && known !== queue)) throw new UnknownQueueError(name)
    return known
  }
}

function optionalText (what: string, value: unknown): string | null {
  if (value === undefined) return null
  if (typeof value !== 'string') throw new InvalidArgumentError(`${what} must be a string`)
  const bad = unstorableTextReason(value)
  if (bad !== undefined) throw new InvalidArgumentError(`${what} ${bad}`)
  return value
}
