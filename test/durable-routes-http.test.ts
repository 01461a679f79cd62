// Durable routes over real HTTP (app.listen on port 0, fetch): many copies of
// one request at once run the handler once and all get its response, and
// what a replay carries on the wire (its own date, content-length, connection).
import { randomUUID } from 'node:crypto'
import t from 'tap'
import { adminSql, buildApp, pollUntil, uniqueSchema } from './helpers/db.js'
import { Counter, gate } from './helpers/workflows.js'

const REPLAYED = 'idempotent-replayed'

t.test('50 concurrent copies of a request run the handler once, and every client gets its response', async (t) => {
  const counter = new Counter()
  const hold = gate()
  const schema = uniqueSchema()
  let arrived = 0
  let released = false
  const app = await buildApp(t, { schema, idempotencyKeyScope: () => { arrived++; return undefined } })
  app.post('/checkout', { config: { durable: true } }, async (req, reply) => {
    counter.hit('handler')
    const order = await req.step('order', async () => { counter.hit('order'); await hold.wait(); return randomUUID() })
    const mail = await req.step('mail', () => { counter.hit('mail'); return `mail-${order}` })
    reply.code(201).header('x-order', order)
    return { order, mail, cart: (req.body as { cart: string[] }).cart }
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as { port: number }

  const requests = Array.from({ length: 50 }, async () => {
    const res = await fetch(`http://127.0.0.1:${port}/checkout`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'idempotency-key': '"cart-77"' },
      body: JSON.stringify({ cart: ['tea', 'milk'] })
    })
    return { status: res.status, body: await res.text(), headers: Object.fromEntries(res.headers), released }
  })
  // Every request has reached its workflow start (the key scope is asked for just before it).
  await pollUntil(() => arrived === 50 && hold.entered === 1, { what: 'all 50 requests to start their workflow', timeoutMs: 60_000 })
  t.equal(counter.get('handler'), 1, 'one run while 50 requests wait')
  released = true
  hold.open()
  const responses = await Promise.all(requests)

  t.same(responses.map((r) => r.status), Array(50).fill(201))
  t.ok(responses.every((r) => r.released), 'no client was answered before the handler finished')
  t.equal(new Set(responses.map((r) => r.body)).size, 1, 'every client got the same body')
  const body = JSON.parse(responses[0]!.body)
  t.same(body.cart, ['tea', 'milk'])
  t.ok(responses.every((r) => r.headers['x-order'] === body.order), 'and the same headers')
  t.equal(responses.filter((r) => r.headers[REPLAYED] === undefined).length, 1, 'one was the first request; 49 were replays')
  t.equal(responses.filter((r) => r.headers[REPLAYED] === 'true').length, 49)
  t.same([counter.get('handler'), counter.get('order'), counter.get('mail')], [1, 1, 1], 'the handler and each step ran once')
  const sql = adminSql(t)
  const rows = await sql<{ workflow_id: string, status: string }[]>`SELECT workflow_id, status FROM ${sql(schema)}.workflows`
  t.same(rows, [{ workflow_id: ':cart-77', status: 'SUCCESS' }], 'one workflow')
})

t.test('a replay on the wire has its own date, content-length and connection, and keeps the connection usable', async (t) => {
  const app = await buildApp(t)
  app.post('/h', { config: { durable: true } }, async (_req, reply) => {
    reply.header('date', 'Mon, 01 Jan 2001 00:00:00 GMT').header('content-length', '3').header('connection', 'close').header('x-mine', 'kept')
    return { text: 'a body longer than three bytes' }
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as { port: number }
  for (let i = 0; i < 3; i++) {
    const res = await fetch(`http://127.0.0.1:${port}/h`, { method: 'POST', headers: { 'content-type': 'application/json', 'idempotency-key': 'wire-1' }, body: '{}' })
    const text = await res.text()
    t.same(JSON.parse(text), { text: 'a body longer than three bytes' }, `response ${i + 1}: the whole body arrives`)
    t.equal(res.headers.get('content-length'), String(Buffer.byteLength(text)))
    t.not(res.headers.get('date'), 'Mon, 01 Jan 2001 00:00:00 GMT')
    t.equal(res.headers.get('connection'), 'keep-alive', 'the handler\'s connection: close is not stored')
    t.equal(res.headers.get('x-mine'), 'kept')
    t.equal(res.headers.get(REPLAYED), i === 0 ? null : 'true')
  }
})
