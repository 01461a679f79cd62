import { connect } from 'node:net'
import t, { type Test } from 'tap'
import { defineWorkflow } from '../plugins/index.js'
import { adminSql, buildApp, pollUntil, uniqueSchema } from './helpers/db.js'
import { errorBody, gate } from './helpers/workflows.js'

const echo = defineWorkflow('echo', async (ctx, input: string) => ({ input, workflowId: ctx.workflowId }))
const other = defineWorkflow('other', async (_ctx, input: string) => input)

const BAD_VALUES: Record<string, string> = {
  empty: '',
  'too long (257)': 'k'.repeat(257),
  '\\u0001': 'a\u0001b',
  '\\n': 'a\nb',
  '\\r': 'a\rb',
  '\\t': 'a\tb',
  'DEL \\u007f': 'a\u007fb',
  'C1 \\u0085': 'a\u0085b'
}

async function appWithRoute (t: Test, schema = uniqueSchema()) {
  const app = await buildApp(t, { workflows: [echo, other], schema })
  app.post('/echo', async (req) => {
    const h = await req.workflows.start(echo, 'x')
    return h.getResult()
  })
  return app
}

/** Sends raw header bytes over a real socket, as a client would. */
function rawRequest (port: number, header: string, value: Buffer): Promise<{ status: number, body: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => {
      socket.write(Buffer.concat([
        Buffer.from(`POST /echo HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: 0\r\n${header}: `),
        value, Buffer.from('\r\n\r\n')]))
    })
    let data = ''
    socket.on('data', (d) => { data += d.toString('latin1') })
    socket.on('end', () => resolve({ status: Number(data.split(' ')[1]), body: data.slice(data.indexOf('\r\n\r\n') + 4) }))
    socket.on('error', reject)
  })
}

for (const [header, code] of [['dbos-idempotency-key', 'DBOS_ERR_INVALID_IDEMPOTENCY_KEY'], ['dbos-request-id', 'DBOS_ERR_INVALID_REQUEST_ID']]) {
  t.test(`a bad ${header} is refused with 400 ${code} and starts nothing`, async (t) => {
    const schema = uniqueSchema()
    const app = await appWithRoute(t, schema)
    for (const [label, value] of Object.entries(BAD_VALUES)) {
      const res = await app.inject({ method: 'POST', url: '/echo', headers: { [header]: value } })
      t.equal(res.statusCode, 400, label)
      t.equal(errorBody(res).code, code, label)
    }
    const sql = adminSql(t)
    t.same(await sql`SELECT workflow_id FROM ${sql(schema)}.workflows`, [], 'no workflow was started')
  })

  t.test(`a bad ${header} sent over real HTTP (tab, C1 byte, empty) is refused with ${code}`, async (t) => {
    const app = await appWithRoute(t)
    await app.listen({ port: 0, host: '127.0.0.1' })
    const port = (app.server.address() as { port: number }).port
    for (const bytes of [Buffer.from('a\tb'), Buffer.from([0x61, 0x85, 0x62]), Buffer.alloc(0)]) {
      const res = await rawRequest(port, header, bytes)
      t.equal(res.status, 400, bytes.toString('hex'))
      t.equal(JSON.parse(res.body).code, code, bytes.toString('hex'))
    }
  })
}

t.test('a 256-character idempotency key is accepted', async (t) => {
  const app = await appWithRoute(t)
  const key = 'k'.repeat(256)
  const res = await app.inject({ method: 'POST', url: '/echo', headers: { 'dbos-idempotency-key': key } })
  t.equal(res.statusCode, 200)
  t.equal(res.json().workflowId, key)
})

t.test('a 256-character key also works for the second workflow of a request (K::2)', async (t) => {
  const app = await buildApp(t, { workflows: [echo, other] })
  app.post('/two', async (req) => {
    const a = await req.workflows.start(echo, 'a')
    const b = await req.workflows.start(other, 'b')
    return [a.workflowId, b.workflowId]
  })
  const key = 'k'.repeat(256)
  const res = await app.inject({ method: 'POST', url: '/two', headers: { 'dbos-idempotency-key': key } })
  t.equal(res.statusCode, 200, 'a key the header check accepts must not fail later as a workflow id')
  t.same(res.json(), [key, `${key}::2`])
})

t.test('a 256-character key also works under idempotencyKeyScope', async (t) => {
  const app = await buildApp(t, { workflows: [echo], idempotencyKeyScope: () => 'user-1' })
  app.post('/echo', async (req) => (await req.workflows.start(echo, 'x')).workflowId)
  const key = 'k'.repeat(256)
  const res = await app.inject({ method: 'POST', url: '/echo', headers: { 'dbos-idempotency-key': key } })
  t.equal(res.statusCode, 200, 'a key the header check accepts must not fail later as a workflow id')
  t.equal(res.body, `user-1:${key}`)
})

t.test('a 256-character request id is accepted and echoed', async (t) => {
  const app = await appWithRoute(t)
  const id = 'r'.repeat(256)
  const res = await app.inject({ method: 'POST', url: '/echo', headers: { 'dbos-request-id': id } })
  t.equal(res.statusCode, 200)
  t.equal(res.headers['dbos-request-id'], id)
})

t.test('an invalid explicit workflowId is refused with 400 DBOS_ERR_INVALID_WORKFLOW_ID', async (t) => {
  const schema = uniqueSchema()
  const app = await buildApp(t, { workflows: [echo], schema })
  app.post('/explicit', async (req) => (await req.workflows.start(echo, 'x', { workflowId: (req.body as { id: string }).id })).workflowId)
  await app.ready()
  for (const id of ['', 'w'.repeat(257), 'a\u0000b']) {
    await t.rejects(app.workflows.start(echo, 'x', { workflowId: id }), { code: 'DBOS_ERR_INVALID_WORKFLOW_ID', statusCode: 400 }, JSON.stringify(id))
    const res = await app.inject({ method: 'POST', url: '/explicit', payload: { id } })
    t.equal(res.statusCode, 400)
    t.equal(errorBody(res).code, 'DBOS_ERR_INVALID_WORKFLOW_ID')
  }
  const sql = adminSql(t)
  t.same(await sql`SELECT workflow_id FROM ${sql(schema)}.workflows`, [])
})

t.test('before app.ready the engine refuses with 503 DBOS_ERR_NOT_READY', async (t) => {
  const app = await buildApp(t, { workflows: [echo] })
  await t.rejects(app.workflows.start(echo, 'x'), { code: 'DBOS_ERR_NOT_READY', statusCode: 503 })
  await t.rejects(app.workflows.getStatus('any'), { code: 'DBOS_ERR_NOT_READY', statusCode: 503 })
  await app.ready()
  t.same(await app.workflows.run(echo, 'x', { workflowId: 'after-ready' }), { input: 'x', workflowId: 'after-ready' })
})

t.test('while closing and after close the engine refuses with 503 DBOS_ERR_SHUTTING_DOWN, and drains running work', async (t) => {
  const hold = gate()
  const slow = defineWorkflow('slow', async (ctx) => ctx.step('wait', async () => { await hold.wait(); return 'drained' }))
  const schema = uniqueSchema()
  const app = await buildApp(t, { workflows: [echo, slow], schema, shutdownTimeoutMs: 15_000 })
  await app.ready()
  const running = await app.workflows.start(slow, undefined)
  await pollUntil(() => hold.entered === 1)
  const closing = app.close()
  // Each probe reuses one id, so a start that still gets through adds nothing.
  await pollUntil(() => app.workflows.start(echo, 'probe', { workflowId: 'probe' }).then(() => false, (err) => err.code),
    { what: 'starts to be refused' }).then((code) => t.equal(code, 'DBOS_ERR_SHUTTING_DOWN', 'refused while closing'))
  hold.open()
  await closing
  await t.rejects(app.workflows.start(echo, 'x'), { code: 'DBOS_ERR_SHUTTING_DOWN', statusCode: 503 }, 'refused after close')
  await t.rejects(app.workflows.getStatus(running.workflowId), { code: 'DBOS_ERR_SHUTTING_DOWN' })
  const sql = adminSql(t)
  const [row] = await sql`SELECT status, output FROM ${sql(schema)}.workflows WHERE workflow_id = ${running.workflowId}`
  t.equal(row!.status, 'SUCCESS', 'the running workflow finished before the engine closed')
})
