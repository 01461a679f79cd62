// Durable routes (plugins/durable-routes.ts), in one process through
// app.inject: what a retry with the key gets (status, body, headers), what is
// not stored, 422 for another request under the key, errors stored and
// replayed, the key and request id headers, and what a handler can and
// cannot use. Crashes are in durable-routes-crash.test.ts, concurrency over
// real HTTP in durable-routes-http.test.ts, 409 and 202 in
// durable-routes-pending.test.ts.
import { randomUUID } from 'node:crypto'
import { Writable } from 'node:stream'
import Fastify from 'fastify'
import t from 'tap'
import dbosPlugin from '../plugins/index.js'
import { adminSql, buildApp, databaseUrl, dropSchema, silentLogger, testDefaults, uniqueSchema } from './helpers/db.js'
import { Counter, errorBody } from './helpers/workflows.js'

const KEY = 'idempotency-key'
const REPLAYED = 'idempotent-replayed'

t.test('a retry gets the stored status, body and headers, and nothing runs again', async (t) => {
  const counter = new Counter()
  const app = await buildApp(t)
  app.post('/payment', { config: { durable: true } }, async (req, reply) => {
    counter.hit('handler')
    const receipt = await req.step('charge', () => { counter.hit('charge'); return randomUUID() })
    reply.code(201)
      .header('x-receipt', receipt)
      .header('set-cookie', ['a=1; Path=/', 'b=2; Path=/'])
      .header('cache-control', 'no-store')
      .type('application/vnd.payment+json')
    return { receipt, amount: (req.body as { amount: number }).amount }
  })
  const send = (requestId: string) => app.inject({ method: 'POST', url: '/payment', headers: { [KEY]: 'pay-1', 'dbos-request-id': requestId }, payload: { amount: 42 } })
  const first = await send('first')
  t.equal(first.statusCode, 201)
  t.notOk(REPLAYED in first.headers, 'the first response is not marked replayed')
  const receipt = first.json().receipt as string
  t.same(first.json(), { receipt, amount: 42 })

  for (const requestId of ['second', 'third']) {
    const again = await send(requestId)
    t.equal(again.statusCode, 201, 'status replayed')
    t.equal(again.body, first.body, 'body replayed byte for byte')
    t.equal(again.headers[REPLAYED], 'true')
    t.equal(again.headers['x-receipt'], receipt, 'a header set with reply.header is replayed')
    t.same(again.headers['set-cookie'], ['a=1; Path=/', 'b=2; Path=/'], 'a header with several values is replayed as sent')
    t.equal(again.headers['cache-control'], 'no-store')
    t.equal(again.headers['content-type'], first.headers['content-type'], 'content type replayed')
    t.match(again.headers['content-type'], /^application\/vnd\.payment\+json/)
    t.equal(again.headers['dbos-request-id'], requestId, 'the request id header is each request\'s own, not stored')
  }
  t.equal(counter.get('handler'), 1, 'the handler ran once')
  t.equal(counter.get('charge'), 1, 'its step ran once')
  const status = await app.workflows.getStatus('pay-1')
  t.equal(status.name, 'route:POST /payment', 'the workflow is named after the route')
  t.equal(status.requestId, 'first', 'the workflow keeps the first request\'s id')
})

t.test('transport headers are not stored: date, content-length, connection and the request id are made anew', async (t) => {
  const schema = uniqueSchema()
  const app = await buildApp(t, { schema })
  app.post('/h', { config: { durable: true } }, async (_req, reply) => {
    reply.header('date', 'Mon, 01 Jan 2001 00:00:00 GMT')
      .header('content-length', '999')
      .header('transfer-encoding', 'chunked')
      .header('keep-alive', 'timeout=1')
      .header('connection', 'close')
      .header('dbos-request-id', 'set-by-handler')
      .header('x-kept', 'yes')
    return { hello: 'world' }
  })
  const first = await app.inject({ method: 'POST', url: '/h', headers: { [KEY]: 'h-1' }, payload: {} })
  const again = await app.inject({ method: 'POST', url: '/h', headers: { [KEY]: 'h-1', 'dbos-request-id': 'retry' }, payload: {} })
  for (const res of [first, again]) {
    t.equal(res.statusCode, 200)
    t.equal(res.headers['x-kept'], 'yes')
    t.equal(res.headers['content-length'], String(Buffer.byteLength(res.body)), 'content-length is the body\'s')
    t.not(res.headers.date, 'Mon, 01 Jan 2001 00:00:00 GMT', 'date is the response\'s own')
    t.notOk('transfer-encoding' in res.headers)
    t.not(res.headers.connection, 'close')
    t.not(res.headers['dbos-request-id'], 'set-by-handler', 'the request id header is the plugin\'s')
  }
  t.equal(again.headers['dbos-request-id'], 'retry')
  const output = (await app.workflows.getStatus('h-1')).output as { headers: Record<string, unknown> }
  t.same(output.headers, { 'x-kept': 'yes' }, 'only the handler\'s own headers are stored')
})

t.test('text and bytes are replayed with their content type', async (t) => {
  const counter = new Counter()
  const app = await buildApp(t)
  app.post('/text', { config: { durable: true } }, async (_req, reply) => {
    counter.hit('text')
    return reply.type('text/html; charset=utf-8').send(`<p>${randomUUID()}</p>`)
  })
  app.post('/plain', { config: { durable: true } }, async () => { counter.hit('plain'); return `plain ${randomUUID()}` })
  app.post('/bytes', { config: { durable: true } }, async (_req, reply) => {
    counter.hit('bytes')
    reply.type('application/octet-stream')
    return Buffer.from([0, 1, 2, 255])
  })
  for (const url of ['/text', '/plain', '/bytes']) {
    const first = await app.inject({ method: 'POST', url, headers: { [KEY]: `k${url}` }, payload: {} })
    const again = await app.inject({ method: 'POST', url, headers: { [KEY]: `k${url}` }, payload: {} })
    t.equal(first.statusCode, 200, url)
    t.same(again.rawPayload, first.rawPayload, `${url}: the same bytes`)
    t.equal(again.headers['content-type'], first.headers['content-type'], `${url}: the same content type`)
    t.equal(again.headers[REPLAYED], 'true')
  }
  t.equal((await app.inject({ method: 'POST', url: '/plain', headers: { [KEY]: 'k/plain' }, payload: {} })).headers['content-type'], 'text/plain; charset=utf-8')
  t.same([counter.get('text'), counter.get('plain'), counter.get('bytes')], [1, 1, 1])
})

t.test('the same key with another method, path, query or body is 422, and reveals nothing of the stored response', async (t) => {
  const counter = new Counter()
  const app = await buildApp(t)
  app.route({
    method: ['POST', 'PUT'],
    url: '/orders/:id',
    config: { durable: true },
    handler: async (req) => {
      counter.hit('orders')
      return { order: (req.params as { id: string }).id, secret: 'hunter2-output' }
    }
  })
  app.post('/other', { config: { durable: true } }, async () => { counter.hit('other'); return 'other ran' })
  const body = { items: [{ sku: 'a', n: 1 }], note: { to: 'x', from: 'y' } }
  const first = await app.inject({ method: 'POST', url: '/orders/1?view=full&lang=en', headers: { [KEY]: 'o-1' }, payload: body })
  t.equal(first.statusCode, 200)

  const sameButReordered = await app.inject({
    method: 'POST',
    url: '/orders/1?lang=en&view=full',
    headers: { [KEY]: 'o-1', 'content-type': 'application/json' },
    payload: '{"note":{"from":"y","to":"x"},"items":[{"n":1,"sku":"a"}]}'
  })
  t.equal(sameButReordered.statusCode, 200, 'object key order in the body and parameter order in the query make no other request')
  t.equal(sameButReordered.headers[REPLAYED], 'true')
  t.equal(sameButReordered.body, first.body)

  const changed: [string, { method: 'POST' | 'PUT', url: string, payload: unknown }][] = [
    ['another body', { method: 'POST', url: '/orders/1?view=full&lang=en', payload: { ...body, note: { to: 'x', from: 'z' } } }],
    ['array order', { method: 'POST', url: '/orders/1?view=full&lang=en', payload: { ...body, items: [{ sku: 'a', n: 1 }, { sku: 'b', n: 1 }] } }],
    ['another query value', { method: 'POST', url: '/orders/1?view=short&lang=en', payload: body }],
    ['one more query parameter', { method: 'POST', url: '/orders/1?view=full&lang=en&x=1', payload: body }],
    ['no query', { method: 'POST', url: '/orders/1', payload: body }],
    ['another path', { method: 'POST', url: '/orders/2?view=full&lang=en', payload: body }],
    ['another method', { method: 'PUT', url: '/orders/1?view=full&lang=en', payload: body }],
    ['another route', { method: 'POST', url: '/other?view=full&lang=en', payload: body }]
  ]
  for (const [what, request] of changed) {
    const res = await app.inject({ ...request, headers: { [KEY]: 'o-1' } } as Parameters<typeof app.inject>[0] & object)
    t.equal(res.statusCode, 422, what)
    t.equal(errorBody(res).code, 'DBOS_ERR_IDEMPOTENCY_KEY_REUSED', what)
    t.notMatch(res.body, /hunter2|order|route:/, `${what}: nothing of the stored response or workflow`)
    t.notOk(REPLAYED in res.headers, `${what}: not marked replayed`)
  }
  t.equal(counter.get('orders'), 1, 'the handler ran once')
  t.equal(counter.get('other'), 0, 'the other route never ran')
  t.equal((await app.inject({ method: 'POST', url: '/orders/1?view=full&lang=en', headers: { [KEY]: 'o-1' }, payload: body })).body, first.body,
    'the stored response is untouched')
})

t.test('a body the parser gives as text is hashed as that text', async (t) => {
  const counter = new Counter()
  const app = await buildApp(t)
  app.post('/echo', { config: { durable: true } }, async (req) => { counter.hit('echo'); return { got: req.body } })
  const send = (payload: string) => app.inject({ method: 'POST', url: '/echo', headers: { [KEY]: 'e-1', 'content-type': 'text/plain' }, payload })
  t.same((await send('a=1 b=2')).json(), { got: 'a=1 b=2' })
  t.equal((await send('a=1 b=2')).headers[REPLAYED], 'true')
  t.equal((await send('b=2 a=1')).statusCode, 422, 'text is compared as it is')
  t.equal(counter.get('echo'), 1)
})

t.test('an error the handler throws is stored: a retry gets the same status and body, and nothing runs again', async (t) => {
  const counter = new Counter()
  const app = await buildApp(t)
  app.post('/missing', { config: { durable: true } }, async (req) => {
    counter.hit('missing')
    await req.step('look', () => { counter.hit('look') })
    // The shape of @fastify/sensible's httpErrors.notFound(), with a header.
    throw Object.assign(new Error('no such shop'), { statusCode: 404, code: 'SHOP_NOT_FOUND', headers: { 'x-shop': 'gone' } })
  })
  app.post('/broken', { config: { durable: true } }, async () => {
    counter.hit('broken')
    throw new Error('plain failure')
  })
  const notFound = await app.inject({ method: 'POST', url: '/missing', headers: { [KEY]: 'm-1' }, payload: {} })
  t.equal(notFound.statusCode, 404)
  t.same(notFound.json(), { statusCode: 404, code: 'SHOP_NOT_FOUND', error: 'Not Found', message: 'no such shop' })
  t.equal(notFound.headers['x-shop'], 'gone')
  t.notOk(REPLAYED in notFound.headers)
  const notFoundAgain = await app.inject({ method: 'POST', url: '/missing', headers: { [KEY]: 'm-1' }, payload: {} })
  t.equal(notFoundAgain.statusCode, 404)
  t.equal(notFoundAgain.body, notFound.body)
  t.equal(notFoundAgain.headers['x-shop'], 'gone', 'the error\'s headers too')
  t.equal(notFoundAgain.headers[REPLAYED], 'true')

  const broken = await app.inject({ method: 'POST', url: '/broken', headers: { [KEY]: 'b-1' }, payload: {} })
  t.equal(broken.statusCode, 500)
  t.same(broken.json(), { statusCode: 500, error: 'Internal Server Error', message: 'plain failure' })
  const brokenAgain = await app.inject({ method: 'POST', url: '/broken', headers: { [KEY]: 'b-1' }, payload: {} })
  t.equal(brokenAgain.statusCode, 500)
  t.equal(brokenAgain.body, broken.body)
  t.equal(brokenAgain.headers[REPLAYED], 'true')

  t.same([counter.get('missing'), counter.get('look'), counter.get('broken')], [1, 1, 1], 'each handler ran once')
  t.equal((await app.workflows.getStatus('m-1')).status, 'ERROR')
  t.equal((await app.workflows.getStatus('b-1')).status, 'ERROR', 'the key is spent: a new key tries again')
})

t.test('a reply.code() error response is a response like any other: stored, replayed', async (t) => {
  const counter = new Counter()
  const app = await buildApp(t)
  app.post('/declined', { config: { durable: true } }, async (_req, reply) => {
    counter.hit('declined')
    return reply.code(402).send({ declined: true, ref: randomUUID() })
  })
  const first = await app.inject({ method: 'POST', url: '/declined', headers: { [KEY]: 'd-1' }, payload: {} })
  const again = await app.inject({ method: 'POST', url: '/declined', headers: { [KEY]: 'd-1' }, payload: {} })
  t.equal(first.statusCode, 402)
  t.equal(again.statusCode, 402)
  t.equal(again.body, first.body)
  t.equal(counter.get('declined'), 1)
  t.equal((await app.workflows.getStatus('d-1')).status, 'SUCCESS')
})

t.test('the IETF Idempotency-Key, quoted or not, and dbos-idempotency-key name one key', async (t) => {
  const counter = new Counter()
  const app = await buildApp(t)
  app.post('/k', { config: { durable: true } }, async (req) => { counter.hit('k'); return { id: (req as unknown as { workflowId: string }).workflowId, n: counter.get('k') } })
  const forms = [{ 'idempotency-key': '"abc"' }, { 'idempotency-key': 'abc' }, { 'dbos-idempotency-key': 'abc' }, { 'Idempotency-Key': '"abc"', 'dbos-idempotency-key': 'abc' }]
  const bodies = []
  for (const headers of forms) {
    const res = await app.inject({ method: 'POST', url: '/k', headers, payload: {} })
    t.equal(res.statusCode, 200, JSON.stringify(headers))
    bodies.push(res.json())
  }
  t.same(bodies, Array(4).fill({ id: 'abc', n: 1 }), 'every form is the key abc: one run')
  const escaped = await app.inject({ method: 'POST', url: '/k', headers: { 'idempotency-key': '"a\\"b"' }, payload: {} })
  t.same(escaped.json(), { id: 'a"b', n: 2 }, 'a structured-field string\'s escapes are taken off')
  const two = await app.inject({ method: 'POST', url: '/k', headers: { 'idempotency-key': '"abc"', 'dbos-idempotency-key': 'abd' }, payload: {} })
  t.equal(two.statusCode, 400)
  t.equal(errorBody(two).code, 'DBOS_ERR_INVALID_IDEMPOTENCY_KEY', 'two headers with different keys are refused')
  t.equal(counter.get('k'), 2)
})

t.test('idempotencyKeyHeaders and requestIdHeader choose the headers', async (t) => {
  const counter = new Counter()
  const app = await buildApp(t, { idempotencyKeyHeaders: ['X-Op-Key'], requestIdHeader: 'X-Correlation-Id' })
  app.post('/op', { config: { durable: true } }, async (req, reply) => {
    counter.hit('op')
    reply.header('x-correlation-id', 'set-by-handler')
    return { workflowId: (req as unknown as { workflowId: string }).workflowId, requestId: (req as unknown as { requestId: string }).requestId }
  })
  const first = await app.inject({ method: 'POST', url: '/op', headers: { 'x-op-key': 'op-1', 'x-correlation-id': 'corr-1' }, payload: {} })
  t.same(first.json(), { workflowId: 'op-1', requestId: 'corr-1' })
  t.equal(first.headers['x-correlation-id'], 'corr-1', 'the request id is echoed in its header, not the handler\'s value')
  t.notOk('dbos-request-id' in first.headers, 'the default header is not used')
  const again = await app.inject({ method: 'POST', url: '/op', headers: { 'x-op-key': 'op-1', 'x-correlation-id': 'corr-2' }, payload: {} })
  t.equal(again.headers[REPLAYED], 'true')
  t.equal(again.headers['x-correlation-id'], 'corr-2', 'a replay carries the retry\'s request id')
  t.same(again.json(), first.json())
  t.equal(counter.get('op'), 1)

  // The default key headers are no longer keys: each request is one of its own.
  for (const headers of [{ 'idempotency-key': 'op-1' }, { 'dbos-idempotency-key': 'op-1' }]) {
    const res = await app.inject({ method: 'POST', url: '/op', headers, payload: {} })
    t.equal(res.statusCode, 200)
    t.not(res.json().workflowId, 'op-1')
    t.notOk(REPLAYED in res.headers)
  }
  t.equal(counter.get('op'), 3)
  const bad = await app.inject({ method: 'POST', url: '/op', headers: { 'x-op-key': 'a::b' }, payload: {} })
  t.equal(bad.statusCode, 400)
  t.equal(errorBody(bad).code, 'DBOS_ERR_INVALID_IDEMPOTENCY_KEY', 'the key rules apply to the chosen header')
  t.match(errorBody(bad).message, /^Invalid x-op-key header: /i, 'the message names the header that was sent')
})

t.test('without a key a durable route still runs as a workflow, with a generated id, every time', async (t) => {
  const counter = new Counter()
  const schema = uniqueSchema()
  const app = await buildApp(t, { schema })
  app.post('/nokey', { config: { durable: true } }, async (req, reply) => {
    counter.hit('nokey')
    const token = await req.step('token', () => randomUUID())
    reply.code(201).header('x-token', token)
    return { workflowId: (req as unknown as { workflowId: string }).workflowId, token }
  })
  const a = await app.inject({ method: 'POST', url: '/nokey', payload: { same: true } })
  const b = await app.inject({ method: 'POST', url: '/nokey', payload: { same: true } })
  for (const res of [a, b]) {
    t.equal(res.statusCode, 201)
    t.equal(res.headers['x-token'], res.json().token)
    t.notOk(REPLAYED in res.headers)
    t.match(res.json().workflowId, /^[\w-]{21}$/, 'a generated id')
  }
  t.not(a.json().workflowId, b.json().workflowId)
  t.equal(counter.get('nokey'), 2, 'no key, no replay: the same body runs again')
  const sql = adminSql(t)
  const rows = await sql<{ status: string }[]>`SELECT status FROM ${sql(schema)}.workflows WHERE name = 'route:POST /nokey'`
  t.same(rows.map((r) => r.status), ['SUCCESS', 'SUCCESS'], 'each request is a finished workflow')
})

t.test('what cannot be stored fails at the call with DBOS_ERR_DURABLE_ROUTE_UNSUPPORTED', async (t) => {
  const { Readable } = await import('node:stream')
  const counter = new Counter()
  const app = await buildApp(t)
  const routes: Record<string, (req: any, reply: any) => unknown> = {
    '/hijack': (_req, reply) => { reply.hijack() },
    '/stream': (_req, reply) => reply.send(Readable.from(['a', 'b'])),
    '/web-stream': (_req, reply) => reply.send(new ReadableStream()),
    '/reply-raw': (_req, reply) => { reply.raw.end('x') },
    '/req-raw': (req) => req.raw.headers,
    '/req-workflows': (req) => req.workflows.start
  }
  for (const [url, body] of Object.entries(routes)) {
    app.post(url, { config: { durable: true } }, async (req, reply) => {
      counter.hit(url)
      return body(req, reply)
    })
  }
  for (const url of Object.keys(routes)) {
    const res = await app.inject({ method: 'POST', url, headers: { [KEY]: `u${url}` }, payload: {} })
    t.equal(res.statusCode, 500, url)
    t.equal(errorBody(res).code, 'DBOS_ERR_DURABLE_ROUTE_UNSUPPORTED', url)
    const again = await app.inject({ method: 'POST', url, headers: { [KEY]: `u${url}` }, payload: {} })
    t.equal(again.body, res.body, `${url}: the error is stored`)
    t.equal(counter.get(url), 1)
  }
})

t.test('a durable handler has this, req.log, reply.log and reply.redirect as a plain handler does', async (t) => {
  const lines: Record<string, unknown>[] = []
  const stream = new Writable({ write (chunk, _enc, done) { lines.push(JSON.parse(String(chunk))); done() } })
  const schema = uniqueSchema()
  const app = Fastify({ logger: { level: 'info', stream } })
  await app.register(dbosPlugin, { databaseUrl, logger: silentLogger, ...testDefaults, schema })
  t.teardown(async () => { await app.close(); await dropSchema(schema) })
  await app.register(async (shop) => {
    shop.decorate('shopName', 'corner shop')
    shop.post('/who', { config: { durable: true } }, async function (this: typeof shop & { shopName?: string }, req, reply) {
      ;(req as any).log.info({ event: 'test.request-log' }, 'from req.log')
      ;(reply as any).log.info({ event: 'test.reply-log' }, 'from reply.log')
      return { shop: this.shopName ?? null }
    })
    shop.post('/go', { config: { durable: true } }, async (_req, reply) => reply.redirect('/shop/there', 303))
    shop.post('/go-default', { config: { durable: true } }, async (_req, reply) => reply.redirect('/shop/there'))
  }, { prefix: '/shop' })

  const who = await app.inject({ method: 'POST', url: '/shop/who', headers: { [KEY]: 'w-1', 'dbos-request-id': 'req-who' }, payload: {} })
  t.equal(who.statusCode, 200)
  t.same(who.json(), { shop: 'corner shop' }, 'this is the encapsulated instance the route is declared in')
  for (const event of ['test.request-log', 'test.reply-log']) {
    const line = lines.find((l) => l.event === event)
    t.ok(line, `${event} was logged`)
    t.equal(line?.workflowId, 'w-1', `${event}: bound to the workflow id`)
    t.equal(line?.dbosRequestId, 'req-who', `${event}: and the request id`)
  }
  for (const [url, code] of [['/shop/go', 303], ['/shop/go-default', 302]] as const) {
    const go = await app.inject({ method: 'POST', url, headers: { [KEY]: `g${url}` }, payload: {} })
    t.equal(go.statusCode, code, url)
    t.equal(go.headers.location, '/shop/there')
    const again = await app.inject({ method: 'POST', url, headers: { [KEY]: `g${url}` }, payload: {} })
    t.equal(again.statusCode, code)
    t.equal(again.headers.location, '/shop/there', 'the redirect is replayed')
  }
})

t.test('a bad durable option is refused when the route is declared', async (t) => {
  const app = await buildApp(t)
  t.throws(() => app.post('/bad', { config: { durable: { whileRunning: 'queue' as 'wait' } } }, async () => 'x'), { code: 'DBOS_ERR_INVALID_OPTION' })
  t.throws(() => app.post('/bad2', { config: { durable: { respondAfterMs: -1 } } }, async () => 'x'), { code: 'DBOS_ERR_INVALID_OPTION' })
})

t.test('a durable route declared before the plugin loaded is refused at its requests, before its handler runs', async (t) => {
  const counter = new Counter()
  const schema = uniqueSchema()
  const app = Fastify({ logger: false })
  t.teardown(async () => { await app.close(); await dropSchema(schema) })
  // Not awaited: the route below is declared before the plugin's onRoute hook exists.
  void app.register(dbosPlugin, { databaseUrl, logger: silentLogger, ...testDefaults, schema })
  app.post('/early', { config: { durable: true } }, async () => { counter.hit('early'); return 'ran as a plain handler' })
  app.post('/plain', async () => 'plain routes are unaffected')
  await app.ready()
  const res = await app.inject({ method: 'POST', url: '/early', headers: { [KEY]: 'e-1' }, payload: {} })
  t.equal(res.statusCode, 500)
  t.equal(errorBody(res).code, 'DBOS_ERR_INVALID_OPTION')
  t.match(errorBody(res).message, /POST \/early/, 'the message names the route')
  t.equal(counter.get('early'), 0, 'the handler never ran')
  t.equal((await app.inject({ method: 'POST', url: '/plain', payload: {} })).statusCode, 200)
})

t.test('a preHandler can require a key (the guide\'s recipe): refused before any workflow starts', async (t) => {
  const counter = new Counter()
  const schema = uniqueSchema()
  const app = await buildApp(t, { schema })
  app.post('/strict', {
    config: { durable: true },
    preHandler: async (req, reply) => {
      if (req.workflows.idempotencyKey === undefined) return reply.code(400).send({ code: 'KEY_REQUIRED' })
    }
  }, async () => { counter.hit('strict'); return { ok: true } })
  const refused = await app.inject({ method: 'POST', url: '/strict', payload: {} })
  t.equal(refused.statusCode, 400)
  t.same(refused.json(), { code: 'KEY_REQUIRED' })
  t.equal(counter.get('strict'), 0)
  t.same(await app.workflows.list(), [], 'no workflow was started')
  const ok = await app.inject({ method: 'POST', url: '/strict', headers: { [KEY]: 's-1' }, payload: {} })
  t.same(ok.json(), { ok: true })
  t.equal(counter.get('strict'), 1)
})
