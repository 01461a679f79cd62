/**
 * `req.workflows`: starting workflows from a route, with the request's
 * idempotency key and request id applied.
 *
 * Id rule under `dbos-idempotency-key: K` (scoped, see idempotencyKey): the
 * first distinct workflow a request starts gets id K, the n-th (n >= 2) gets
 * `K::n`, an id no key can be (see lib/ids.ts). Starting the same definition
 * with the same input again in that request returns the workflow it already
 * started. A retried request makes the same calls in the same order, so it
 * lands on the same ids.
 */
import type { Engine } from '../lib/engine/engine.js'
import type { EnqueueOptions, StartOptions } from '../lib/calls.js'
import type { QueueDefinition } from '../lib/queue.js'
import type { WorkflowHandle, GetResultOptions } from '../lib/handle.js'
import { derivedWorkflowId, scopedKey } from '../lib/core/ids.js'
import type { WorkflowDefinition } from '../lib/workflow.js'
import type { PreparedInput } from '../lib/core/inputs.js'

/**
 * run(): start options as for start() (`timeoutMs` is the workflow's
 * timeout: past it the workflow is cancelled and run() rejects with
 * DBOS_ERR_WORKFLOW_TIMEOUT), plus `waitMs`, how long to wait for the
 * outcome: past it run() rejects with 504 DBOS_ERR_RESULT_TIMEOUT and the
 * workflow runs on.
 */
export interface RunOptions extends Omit<StartOptions, 'requestId'> {
  waitMs?: GetResultOptions['timeoutMs']
}

export class RequestWorkflows {
  readonly #engine: Engine
  /** The dbos-request-id of this request: the header, or an id generated for it (unique across processes). */
  readonly requestId: string
  readonly #key: string | undefined
  readonly #scope: (() => string | undefined) | undefined
  #scopedKey: string | undefined
  #distinct = 0
  readonly #byInput = new Map<string, Promise<WorkflowHandle<any>>>()

  constructor (engine: Engine, requestId: string, key: string | undefined, scope?: () => string | undefined) {
    this.#engine = engine
    this.requestId = requestId
    this.#key = key
    this.#scope = scope
  }

  /**
   * The idempotency key with its scope applied, when the request carried one.
   * The scope is asked for on first use, not when the request arrives, so it
   * can depend on authentication done in later hooks.
   */
  get idempotencyKey (): string | undefined {
    if (this.#key === undefined || this.#scopedKey !== undefined) return this.#scopedKey
    // With a scope function, every key gets a prefix (empty when it returns undefined).
    this.#scopedKey = this.#scope === undefined ? this.#key : scopedKey(this.#scope(), this.#key)
    return this.#scopedKey
  }

  /** Starts a workflow (resolves once it is durably recorded) and returns its handle. */
  async start<I, O> (def: WorkflowDefinition<I, O>, input: I, options: Omit<StartOptions, 'requestId'> = {}): Promise<WorkflowHandle<O>> {
    const requestId = this.requestId
    const key = this.idempotencyKey
    if (options.workflowId !== undefined || key === undefined) {
      return this.#engine.startWorkflow(def, input, { ...options, requestId })
    }
    return this.#derived(def, input, 'start', key, (prepared, workflowId) =>
      this.#engine.startWorkflow(def, input, { ...options, workflowId, requestId }, { prepared, derivedId: true }))
  }

  /**
   * Enqueues a workflow (status ENQUEUED until an instance takes it) and
   * returns its handle at once. The request's idempotency key and request id
   * apply as for start(): a retried request enqueues nothing new.
   */
  async enqueue<I, O> (queue: QueueDefinition | string, def: WorkflowDefinition<I, O>, input: I, options: Omit<EnqueueOptions, 'requestId'> = {}): Promise<WorkflowHandle<O>> {
    const requestId = this.requestId
    const key = this.idempotencyKey
    if (options.workflowId !== undefined || options.debounce !== undefined || key === undefined) {
      return this.#engine.enqueue(queue, def, input, { ...options, requestId })
    }
    const queueName = typeof queue === 'string' ? queue : queue?.name
    return this.#derived(def, input, `enqueue:${queueName}`, key, (prepared, workflowId) =>
      this.#engine.enqueue(queue, def, input, { ...options, workflowId, requestId }, { prepared, derivedId: true }))
  }

  /**
   * The workflow this request makes of `def` and `input` in this way (a
   * start, or an enqueue on one queue) under its key: the one it made
   * already, or a new one with the next derived id. Everything up to the
   * call runs synchronously, so concurrent calls within one request are
   * numbered in call order.
   */
  #derived<O> (def: WorkflowDefinition<any, O>, input: unknown, kind: string, key: string, make: (prepared: PreparedInput, workflowId: string) => Promise<WorkflowHandle<O>>): Promise<WorkflowHandle<O>> {
    const prepared = this.#engine.prepareInput(def, input)
    const seen = `${kind}\n${prepared.hash}`
    const known = this.#byInput.get(seen)
    if (known !== undefined) return known
    const made = make(prepared, derivedWorkflowId(key, ++this.#distinct))
    this.#byInput.set(seen, made)
    return made
  }

  /** Starts a workflow and waits for its result. */
  async run<I, O> (def: WorkflowDefinition<I, O>, input: I, options: RunOptions = {}): Promise<O> {
    const { waitMs, ...startOptions } = options
    const handle = await this.start(def, input, startOptions)
    return handle.getResult({ timeoutMs: waitMs })
  }

  /** A handle to an existing workflow; 404 if there is none. */
  retrieve<O = unknown> (workflowId: string): Promise<WorkflowHandle<O>> {
    return this.#engine.retrieve<O>(workflowId)
  }
}
