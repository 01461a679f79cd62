/**
 * What a durable route's handler gets: a request made of what was stored
 * when the request arrived (so that a recovery, on any instance, runs the
 * handler with the same values), with the durable operations of its
 * workflow; and a reply that records what the handler sends, to be stored
 * with the workflow and replayed to retries.
 */
import type { FastifyBaseLogger } from 'fastify'
import type { ChildHandle, ChildOptions, RecvOptions, SendOptions, StepOptions, TransactionOptions, TransactionSql, WorkflowContext } from '../lib/context.js'
import { DurableRouteUnsupportedError } from '../lib/errors.js'
import type { WorkflowDefinition } from '../lib/workflow.js'

/** The request as stored with the workflow. */
export interface StoredRequest {
  method: string
  url: string
  /** The route's URL pattern (`/orders/:id`). */
  routeUrl: string
  params: unknown
  query: unknown
  body: unknown
  /** The request headers the route keeps (DurableRouteOptions.headers). */
  headers: Record<string, string | string[] | undefined>
  /** What DurableRouteOptions.context took from the request (say, the authenticated user), or null. */
  context: unknown
  /** Fastify's request id of the request that started it. */
  id: string
}

/** A stored response: what the handler sent. */
export interface StoredResponse {
  statusCode: number
  headers: Record<string, string | number | string[]>
  body: unknown
}

/** The `req` of a durable handler: the stored request, plus its workflow's durable operations. */
export class DurableRequest {
  readonly method: string
  readonly url: string
  readonly routeUrl: string
  readonly params: any
  readonly query: any
  readonly body: any
  readonly headers: Record<string, string | string[] | undefined>
  /** What the route's `context` function took from the request when it arrived. */
  readonly context: any
  /** Fastify's request id of the request that started this run's workflow. */
  readonly id: string
  /** The route's logger, bound to the workflow id and the request's ids (on recovery too). */
  readonly log: FastifyBaseLogger
  readonly #ctx: WorkflowContext

  constructor (ctx: WorkflowContext, stored: StoredRequest, log: FastifyBaseLogger) {
    this.#ctx = ctx
    this.log = log
    this.method = stored.method
    this.url = stored.url
    this.routeUrl = stored.routeUrl
    this.params = stored.params
    this.query = stored.query
    this.body = stored.body
    this.headers = stored.headers
    this.context = stored.context
    this.id = stored.id
  }

  /** The workflow this handler runs as (its id is the idempotency key, or generated). */
  get workflowId (): string { return this.#ctx.workflowId }
  get requestId (): string | null { return this.#ctx.requestId }
  /** The whole WorkflowContext, for what is not mirrored here. */
  get ctx (): WorkflowContext { return this.#ctx }
  /** There is no live request on recovery: what the handler needs must be stored (DurableRouteOptions.headers, context). */
  get raw (): never { throw new DurableRouteUnsupportedError('req.raw') }
  /** Workflows a durable handler starts are its children: req.startChild, req.runChild. */
  get workflows (): never { throw new DurableRouteUnsupportedError('req.workflows (start workflows with req.startChild or req.runChild)') }

  step<T> (name: string, fn: (signal: AbortSignal) => T | Promise<T>, options?: StepOptions): Promise<T> { return this.#ctx.step(name, fn, options) }
  transaction<T> (name: string, fn: (sql: TransactionSql) => Promise<T>, options?: TransactionOptions): Promise<T> { return this.#ctx.transaction(name, fn, options) }
  sleep (ms: number): Promise<void> { return this.#ctx.sleep(ms) }
  now (): Promise<number> { return this.#ctx.now() }
  randomUUID (): Promise<string> { return this.#ctx.randomUUID() }
  recv<T = unknown> (topic?: string, options?: RecvOptions): Promise<T | null> { return this.#ctx.recv<T>(topic, options) }
  send (workflowId: string, message: unknown, options?: SendOptions): Promise<void> { return this.#ctx.send(workflowId, message, options) }
  setEvent (key: string, value: unknown): Promise<void> { return this.#ctx.setEvent(key, value) }
  writeStream (key: string, value: unknown): Promise<void> { return this.#ctx.writeStream(key, value) }
  closeStream (key: string): Promise<void> { return this.#ctx.closeStream(key) }
  startChild<I, O> (def: WorkflowDefinition<I, O>, input: I, options?: ChildOptions): Promise<ChildHandle<O>> { return this.#ctx.startChild(def, input, options) }
  runChild<I, O> (def: WorkflowDefinition<I, O>, input: I, options?: ChildOptions): Promise<O> { return this.#ctx.runChild(def, input, options) }
  patched (name: string): Promise<boolean> { return this.#ctx.patched(name) }
}

/** Response headers not stored: the transport's, and the per-request id the plugin sets anew. */
const NOT_STORED = new Set(['content-length', 'transfer-encoding', 'connection', 'keep-alive', 'date'])

/**
 * The `reply` of a durable handler: it records status, headers and body.
 * What cannot be stored (a stream, a hijacked socket) throws
 * DBOS_ERR_DURABLE_ROUTE_UNSUPPORTED at the call, rather than failing later
 * as an unstorable output or a missing method.
 */
export class ReplyRecorder {
  statusCode = 200
  sent = false
  /** The route's logger, as on the request. */
  readonly log: FastifyBaseLogger
  readonly #headers: Record<string, string | number | string[]> = {}
  #body: unknown
  #codeSet = false
  readonly #skip: Set<string>

  /** `skip`: headers not to store (the request-id header, which each response gets anew). */
  constructor (skip: string[], log: FastifyBaseLogger) {
    this.#skip = new Set([...NOT_STORED, ...skip])
    this.log = log
  }

  code (statusCode: number): this {
    this.statusCode = statusCode
    this.#codeSet = true
    return this
  }

  status (statusCode: number): this {
    return this.code(statusCode)
  }

  header (name: string, value: string | number | string[]): this {
    const key = name.toLowerCase()
    if (!this.#skip.has(key)) this.#headers[key] = value
    return this
  }

  headers (values: Record<string, string | number | string[]>): this {
    for (const [name, value] of Object.entries(values)) this.header(name, value)
    return this
  }

  getHeaders (): Record<string, string | number | string[]> {
    return { ...this.#headers }
  }

  getHeader (name: string): string | number | string[] | undefined {
    return this.#headers[name.toLowerCase()]
  }

  hasHeader (name: string): boolean {
    return name.toLowerCase() in this.#headers
  }

  removeHeader (name: string): this {
    delete this.#headers[name.toLowerCase()]
    return this
  }

  type (contentType: string): this {
    return this.header('content-type', contentType)
  }

  /** As Fastify's: the first send wins. */
  send (body?: unknown): this {
    if (this.sent) return this
    if (isStream(body)) throw new DurableRouteUnsupportedError('reply.send() of a stream')
    this.#body = body
    this.sent = true
    return this
  }

  /** Fastify 5's redirect(url, code): 302 unless a code was given or set before. */
  redirect (url: string, code?: number): this {
    return this.header('location', url).code(code ?? (this.#codeSet ? this.statusCode : 302)).send()
  }

  hijack (): never {
    throw new DurableRouteUnsupportedError('reply.hijack()')
  }

  get raw (): never {
    throw new DurableRouteUnsupportedError('reply.raw')
  }

  /** What the handler sent: `send`'s body, else what it returned. */
  response (returned: unknown): StoredResponse {
    const body = this.sent || returned === this ? this.#body : returned
    return { statusCode: this.statusCode, headers: { ...this.#headers }, body }
  }
}

/** What Fastify's send streams rather than serializes: a Node stream, a web ReadableStream, a Response. */
function isStream (body: unknown): boolean {
  if (body === null || typeof body !== 'object') return false
  const b = body as { pipe?: unknown, getReader?: unknown }
  return typeof b.pipe === 'function' || typeof b.getReader === 'function' || Object.prototype.toString.call(body) === '[object Response]'
}
