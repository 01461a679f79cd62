/**
 * The Fastify plugin: one engine per registration, started in onReady and
 * stopped in onClose, plus `app.workflows` and `req.workflows`.
 */
import type { FastifyInstance, FastifyPluginCallback, FastifyReply, FastifyRequest, HookHandlerDoneFunction } from 'fastify'
import fp from 'fastify-plugin'
import { nanoid } from 'nanoid'
import { Engine } from '../lib/engine/engine.js'
import { invalidKeyReason, invalidRequestIdReason } from '../lib/core/ids.js'
import { InvalidIdempotencyKeyError, InvalidRequestIdError } from '../lib/errors.js'
import type { EngineOptions } from '../lib/options.js'
import { AppWorkflows } from './app-workflows.js'
import { readIdHeader, readKeyHeaders } from './id-headers.js'
import { RequestWorkflows } from './request-workflows.js'
import { durableRoutes } from './durable-routes.js'

export const IDEMPOTENCY_KEY_HEADER = 'dbos-idempotency-key'
export const REQUEST_ID_HEADER = 'dbos-request-id'

export interface FastifyDbosOptions extends Omit<EngineOptions, 'logger'> {
  /**
   * Scopes idempotency keys, e.g. per authenticated user: return a string and
   * the workflow id becomes `<encoded scope>:<key>`, so two users sending the
   * same key never meet. When it returns undefined (say, an anonymous
   * request) the prefix is empty: the id is `:<key>`. Called at the
   * request's first workflow start, so authentication hooks have run.
   */
  idempotencyKeyScope?: (request: FastifyRequest) => string | undefined
  /**
   * Request headers an idempotency key is read from (lower case). Default
   * `['dbos-idempotency-key', 'idempotency-key']`: the IETF draft's
   * Idempotency-Key too, its quoted form included.
   */
  idempotencyKeyHeaders?: string[]
  /** The request header a request id is read from, and echoed in. Default 'dbos-request-id'. */
  requestIdHeader?: string
  /** Durable routes: where the status of a response still being made is served (202 + Location). Default '/dbos/responses'. */
  responsesPrefix?: string
  /** Defaults to the app's logger. */
  logger?: EngineOptions['logger']
}

declare module 'fastify' {
  interface FastifyInstance {
    workflows: AppWorkflows
  }
  interface FastifyRequest {
    workflows: RequestWorkflows
  }
}

const plugin: FastifyPluginCallback<FastifyDbosOptions> = (fastify: FastifyInstance, options, done) => {
  const { idempotencyKeyScope, idempotencyKeyHeaders, requestIdHeader: requestIdOption, responsesPrefix, ...engineOptions } = options
  const keyHeaders = (idempotencyKeyHeaders ?? [IDEMPOTENCY_KEY_HEADER, 'idempotency-key']).map((h) => h.toLowerCase())
  const requestIdHeader = (requestIdOption ?? REQUEST_ID_HEADER).toLowerCase()
  const engine = new Engine({ ...engineOptions, logger: options.logger ?? fastify.log.child({ plugin: 'fastify-dbos' }) })

  fastify.decorate('workflows', new AppWorkflows(engine))
  fastify.decorateRequest('workflows', null as unknown as RequestWorkflows)

  fastify.addHook('onRequest', (request: FastifyRequest, reply: FastifyReply, next: HookHandlerDoneFunction) => {
    const sentRequestId = readIdHeader(request, requestIdHeader, invalidRequestIdReason)
    if (sentRequestId.invalid !== undefined) return next(new InvalidRequestIdError(sentRequestId.invalid))
    // Not Fastify's req.id: its default (req-1, req-2, ...) restarts at 1 in
    // every process, while workflows keep their request id forever. The log
    // binding links this id to the reqId Fastify's log lines carry.
    const requestId = sentRequestId.value ?? nanoid()
    request.log = reply.log = request.log.child({ dbosRequestId: requestId })
    reply.header(requestIdHeader, requestId)
    const key = readKeyHeaders(request, keyHeaders, invalidKeyReason)
    if (key.invalid !== undefined) return next(new InvalidIdempotencyKeyError(key.invalid, key.header))
    const scope = idempotencyKeyScope === undefined ? undefined : () => idempotencyKeyScope(request)
    request.workflows = new RequestWorkflows(engine, requestId, key.value, scope)
    next()
  })

  durableRoutes(fastify, {
    engine,
    responsesPrefix: responsesPrefix ?? '/dbos/responses',
    requestIdHeader,
    scope: idempotencyKeyScope
  })

  fastify.addHook('onReady', () => engine.start())
  // Stopping starts at preClose, not onClose: Fastify runs onClose only after
  // in-flight requests finish, and a request awaiting a long workflow would
  // hold the close open past shutdownTimeoutMs. From here new starts get 503,
  // and waiting requests get 503 once the timeout abandons their workflow.
  fastify.addHook('preClose', (done) => {
    engine.stop().catch((err) => fastify.log.error({ event: 'engine.stop_failed', err }, 'fastify-dbos: stopping the workflow engine failed'))
    done()
  })
  fastify.addHook('onClose', () => engine.stop())
  done()
}

/** Durable workflows for Fastify: `app.register(dbosPlugin, { workflows: [...] })`. */
export const dbosPlugin = fp(plugin, { fastify: '5.x', name: 'fastify-dbos' })
export default dbosPlugin

export { AppWorkflows } from './app-workflows.js'
export { RequestWorkflows, type RunOptions } from './request-workflows.js'
export { sse, lastEventId } from './sse.js'
export { REPLAYED_HEADER, type DurableRouteOptions } from './durable-routes.js'
export { DurableRequest, ReplyRecorder, type StoredRequest, type StoredResponse } from './durable-request.js'
export * from '../lib/index.js'
