/**
 * Durable routes: `app.post(url, { config: { durable: true } }, handler)`.
 * The handler runs as a workflow whose id is the request's idempotency key
 * (or generated), with the request as it arrived stored as its input; what it
 * sends (status, headers, body) is its output. A retry with the key gets the
 * stored response without anything running again; a request cut short by a
 * crash or a deploy finishes on recovery (here or on another instance), and
 * its retry then gets that response. See docs/Guides/durable-routes.md.
 */
import { hash as digest } from 'node:crypto'
import type { FastifyInstance, FastifyReply, FastifyRequest, RouteOptions } from 'fastify'
import { serialize } from '../lib/core/codec.js'
import type { Engine } from '../lib/engine/engine.js'
import {
  DatabaseUnavailableError, EngineStoppedError, InvalidOptionError, InvalidWorkflowIdError, NotReadyError,
  RequestInProgressError, ResultTimeoutError, ShuttingDownError, WorkflowNotFoundError
} from '../lib/errors.js'
import { defineWorkflow, type WorkflowDefinition } from '../lib/workflow.js'
import { DurableRequest, ReplyRecorder, type StoredRequest, type StoredResponse } from './durable-request.js'

export interface DurableRouteOptions {
  /**
   * A retry that comes while the first request is still being handled:
   * 'wait' (the default) gets its response once it is done; 'conflict' gets
   * 409 DBOS_ERR_REQUEST_IN_PROGRESS (the IETF draft's answer).
   */
  whileRunning?: 'wait' | 'conflict'
  /**
   * Answer 202 with a Location header if the handler still runs after this
   * long; GET that location for 202 while it runs, then its response.
   */
  respondAfterMs?: number
  /**
   * Request headers kept for the handler (it may run on recovery, without the
   * request). Default: content-type and accept.
   */
  headers?: string[]
  /**
   * Takes what the handler needs from the request beyond params, query,
   * body and headers (the authenticated user, say), when it arrives; stored
   * with the workflow and given to the handler as `req.context`.
   */
  context?: (request: FastifyRequest) => unknown
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Runs the handler as a workflow whose response is stored and replayed to retries: see docs/Guides/durable-routes.md. */
    durable?: boolean | DurableRouteOptions
  }
}

/** The response header that marks a stored response given again (Stripe's name for it). */
export const REPLAYED_HEADER = 'idempotent-replayed'
/** Durable route workflows are named so, and only they are served at the responses route. */
const PREFIX = 'route:'
/** Set in the config of every route the onRoute hook made durable. */
const kMadeDurable = Symbol('fastify-dbos.madeDurable')

export interface DurableRoutesContext {
  engine: Engine
  /** Where a response still being made is served. */
  responsesPrefix: string
  /** The request id header: set on every response anew, not stored. */
  requestIdHeader: string
  /** The idempotency key scope function, if any: the responses route only serves a requester's own. */
  scope?: (request: FastifyRequest) => string | undefined
}

interface DurableRoute {
  def: WorkflowDefinition<StoredRequest, StoredResponse>
  options: Required<Pick<DurableRouteOptions, 'whileRunning' | 'headers'>> & DurableRouteOptions
  responseSchemas: Record<string, unknown> | undefined
}

/** Registers the onRoute hook that makes durable routes, and the route that serves their pending responses. */
export function durableRoutes (fastify: FastifyInstance, c: DurableRoutesContext): void {
  const routes = new Map<string, DurableRoute>()

  // A function, not an arrow: Fastify calls onRoute hooks with the instance
  // the route is declared in, and binds handlers to it. The handler must see
  // that instance (its decorators) as `this`, not the plugin's.
  fastify.addHook('onRoute', function (this: FastifyInstance, route: RouteOptions) {
    const instance = this
    const durable = (route.config as { durable?: boolean | DurableRouteOptions } | undefined)?.durable
    if (durable === undefined || durable === false) return
    const options = normalize(durable, route)
    const methods = Array.isArray(route.method) ? route.method : [route.method]
    const name = `${PREFIX}${methods.join(',')} ${route.url}`
    const handler = route.handler
    const skip = [c.requestIdHeader]
    const def = defineWorkflow<StoredRequest, StoredResponse>(name, async (ctx, stored) => {
      // Fastify's reqId of the request that started it, and the plugin's ids, also on recovery.
      const log = instance.log.child({ reqId: stored.id, dbosRequestId: ctx.requestId, workflowId: ctx.workflowId })
      const reply = new ReplyRecorder(skip, log)
      const returned = await (handler as (req: unknown, reply: unknown) => unknown).call(instance, new DurableRequest(ctx, stored, log), reply)
      return reply.response(returned)
    })
    c.engine.register(def)
    const entry: DurableRoute = { def, options, responseSchemas: (route.schema as { response?: Record<string, unknown> } | undefined)?.response }
    routes.set(name, entry)
    route.config = { ...route.config, [kMadeDurable]: true } as RouteOptions['config']
    route.handler = async function durableHandler (request: FastifyRequest, reply: FastifyReply) {
      return handle(c, entry, request, reply)
    }
  })

  // A route declared before this plugin loaded (`app.register(dbosPlugin)`
  // not awaited, then `app.post(...)`) never met the onRoute hook: its
  // handler would run as a plain one, its req.step undefined, nothing stored.
  // Hooks, unlike onRoute, reach every route: refuse it before it runs.
  fastify.addHook('onRequest', (request: FastifyRequest, _reply: FastifyReply, next: (err?: Error) => void) => {
    const config = request.routeOptions.config as { durable?: unknown, [kMadeDurable]?: true } | undefined
    if (config?.durable === undefined || config.durable === false || config[kMadeDurable] === true) return next()
    next(new InvalidOptionError(`durable route ${request.routeOptions.method} ${request.routeOptions.url} was declared before the plugin was registered, so it is not durable: await app.register(dbosPlugin, ...) before declaring it`))
  })

  fastify.get(`${c.responsesPrefix}/:workflowId`, async (request, reply) => {
    const { workflowId } = request.params as { workflowId: string }
    const scope = c.scope?.(request)
    // Only durable responses, and under a key scope only the requester's own: nothing else leaks.
    const status = await c.engine.getStatus(workflowId).catch((err: { code?: string }) => {
      // No such workflow (or no id any workflow could have): 404 below. An
      // outage is no answer about the workflow: its 503 goes to the client,
      // who polls again, rather than a 404 that tells it to give up.
      if (err?.code === WorkflowNotFoundError.code || err?.code === InvalidWorkflowIdError.code) return undefined
      throw err
    })
    const route = status === undefined ? undefined : routes.get(status.name)
    if (route === undefined || (c.scope !== undefined && !workflowId.startsWith(`${encodeURIComponent(scope ?? '')}:`) && !isGenerated(workflowId))) {
      throw new WorkflowNotFoundError(workflowId)
    }
    if (status!.status === 'PENDING' || status!.status === 'ENQUEUED') return pending(reply, c, workflowId)
    return sendStored(reply, route, await c.engine.getResult(workflowId) as StoredResponse, true)
  })
}

/** Generated workflow ids (nanoid: 21 URL-safe characters, no ':'): unguessable, so no scope check. */
function isGenerated (workflowId: string): boolean {
  return /^[\w-]{21}$/.test(workflowId)
}

function normalize (durable: true | DurableRouteOptions, route: RouteOptions): DurableRoute['options'] {
  const o: DurableRouteOptions = durable === true ? {} : durable
  if (o.whileRunning !== undefined && o.whileRunning !== 'wait' && o.whileRunning !== 'conflict') {
    throw new InvalidOptionError(`durable route ${route.url}: whileRunning must be 'wait' or 'conflict'`)
  }
  if (o.respondAfterMs !== undefined && !(typeof o.respondAfterMs === 'number' && o.respondAfterMs >= 0)) {
    throw new InvalidOptionError(`durable route ${route.url}: respondAfterMs must be a non-negative number of milliseconds`)
  }
  return { ...o, whileRunning: o.whileRunning ?? 'wait', headers: (o.headers ?? ['content-type', 'accept']).map((h) => h.toLowerCase()) }
}

/** The live request: start (or find) its workflow, then answer with its response. */
async function handle (c: DurableRoutesContext, route: DurableRoute, request: FastifyRequest, reply: FastifyReply): Promise<unknown> {
  const workflows = request.workflows
  const key = workflows.idempotencyKey
  const stored: StoredRequest = {
    method: request.method,
    url: request.url,
    routeUrl: request.routeOptions.url ?? request.url,
    // Fastify's params and query objects have a prototype of their own (no
    // Object.prototype): copied into plain objects, which can be stored.
    params: { ...(request.params as object) },
    query: { ...(request.query as object) },
    body: request.body ?? null,
    headers: Object.fromEntries(route.options.headers.flatMap((h) => request.headers[h] === undefined ? [] : [[h, request.headers[h]]])),
    context: route.options.context?.(request) ?? null,
    id: request.id
  }
  const text = serialize(stored, 'the request of a durable route')
  // The IETF draft's "same key, different payload": method, path, query and
  // body, with object keys sorted (key order does not make another request).
  const hash = digest('sha256', `${route.def.name}\0${canonical([stored.method, pathOf(stored.url), stored.query, stored.body])}`, 'base64url')
  let inserted = true
  const handle = await c.engine.startWorkflow(route.def, stored, { workflowId: key, requestId: workflows.requestId },
    { prepared: { text, hash }, derivedId: key !== undefined, report: (r) => { inserted = r.inserted } })
  const workflowId = handle.workflowId
  if (!inserted && route.options.whileRunning === 'conflict') {
    const { status } = await handle.getStatus()
    if (status === 'PENDING' || status === 'ENQUEUED') throw new RequestInProgressError(workflowId)
  }
  let response: StoredResponse
  try {
    response = await handle.getResult({ timeoutMs: route.options.respondAfterMs }) as StoredResponse
  } catch (err) {
    const code = (err as { code?: string }).code
    if (route.options.respondAfterMs !== undefined && code === ResultTimeoutError.code) return pending(reply, c, workflowId)
    // The handler threw: its stored error answers, now and on every retry.
    if (!inserted && !NOT_OUTCOMES.has(code)) reply.header(REPLAYED_HEADER, 'true')
    throw err
  }
  // Only a response given again is marked: not the first, not a 409 or a 202.
  if (!inserted) reply.header(REPLAYED_HEADER, 'true')
  return sendStored(reply, route, response)
}

/** Errors of the wait for an outcome, not the outcome itself: a retry that gets one was not given a stored response. */
const NOT_OUTCOMES = new Set<string | undefined>([
  ResultTimeoutError.code, ShuttingDownError.code, EngineStoppedError.code, DatabaseUnavailableError.code, NotReadyError.code
])

const JSON_TYPE = 'application/json; charset=utf-8'

/**
 * 202 while the response is being made: where to ask again. The body is
 * serialized here, as text: the route's response schema describes what its
 * handler sends, and one for '2xx' or 'default' would strip this body to {}.
 */
function pending (reply: FastifyReply, c: DurableRoutesContext, workflowId: string): FastifyReply {
  return reply.code(202)
    .header('location', `${c.responsesPrefix}/${encodeURIComponent(workflowId)}`)
    .header('retry-after', '1')
    .type(JSON_TYPE)
    .send(JSON.stringify({ workflowId, status: 'PENDING' }))
}

/**
 * The stored response, through Fastify's serialization: on the durable
 * route itself its response schema applies as to any reply; at the
 * responses route (`elsewhere`) that schema is compiled and applied here,
 * as Fastify would: to bodies that are not already text or bytes, with a
 * JSON content type unless the handler set one. (A serializer set with
 * reply.serializer() would skip Fastify's content type.)
 */
function sendStored (reply: FastifyReply, route: DurableRoute, response: StoredResponse, elsewhere = false): FastifyReply {
  reply.code(response.statusCode)
  for (const [name, value] of Object.entries(response.headers)) reply.header(name, value)
  const schema = elsewhere ? schemaFor(route.responseSchemas, response.statusCode, reply.getHeader('content-type')) : undefined
  const body = response.body
  if (schema === undefined || body === undefined || typeof body === 'string' || body instanceof Uint8Array) return reply.send(body)
  const serialize = reply.compileSerializationSchema(schema as Record<string, unknown>, String(response.statusCode)) as (payload: unknown) => string
  if (!reply.hasHeader('content-type')) reply.type(JSON_TYPE)
  return reply.send(serialize(body))
}

/**
 * The route's response schema for a stored response, chosen as Fastify
 * chooses it: by status (exact, then `2xx`, then `default`), then, for a
 * schema given per media type (`{ content: { 'application/json': { schema } } }`),
 * by the response's content type, else the catch-all media type; none if neither matches.
 */
function schemaFor (schemas: Record<string, unknown> | undefined, statusCode: number, contentType: unknown): unknown {
  if (schemas === undefined) return undefined
  const code = String(statusCode)
  const entry = schemas[code] ?? schemas[`${code[0]}xx`] ?? schemas[`${code[0]}XX`] ?? schemas.default
  const content = (entry as { content?: Record<string, { schema?: unknown } | undefined> } | undefined)?.content
  if (content === undefined) return entry
  // No content type yet: Fastify will send the object as JSON.
  const mediaType = typeof contentType === 'string' ? contentType.split(';')[0]!.trim().toLowerCase() : 'application/json'
  return (content[mediaType] ?? content['*/*'])?.schema
}

function pathOf (url: string): string {
  const at = url.indexOf('?')
  return at === -1 ? url : url.slice(0, at)
}

/** JSON with object keys sorted at every depth: equal requests give equal text, whatever their key order. */
function canonical (value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (v === null || typeof v !== 'object' || Array.isArray(v) || Buffer.isBuffer(v)) return typeof v === 'bigint' ? v.toString() : v
    return Object.fromEntries(Object.keys(v).sort().map((k) => [k, (v as Record<string, unknown>)[k]]))
  }) ?? 'undefined'
}
