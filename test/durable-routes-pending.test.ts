// Durable routes while the handler still runs: a retry under whileRunning
// 'conflict' (409), respondAfterMs (202 + Location, then the stored response
// at /dbos/responses/:id), what that route serves to whom, and the route's
// response schema applied to replays there and on the route.
import { randomUUID } from 'node:crypto'
import t from 'tap'
import { defineWorkflow } from '../plugins/index.js'
import { adminSql, buildApp, pollUntil, uniqueSchema } from './helpers/db.js'
import { Counter, errorBody, gate } from './helpers/workflows.js'

const KEY = 'idempotency-key'
const REPLAYED = 'idempotent-replayed'

t.test("whileRunning 'conflict': a retry while the handler runs gets 409, then the stored response once it is done", async (t) => {
  const counter = new Counter()
  const hold = gate()
  const app = await buildApp(t)
  app.post('/transfer', { config: { durable: { whileRunning: 'conflict' } } }, async (req, reply) => {
    counter.hit('transfer')
    const ref = await req.step('move', async () => { counter.hit('move'); await hold.wait(); return randomUUID() })
    reply.code(201)
    return { ref, secret: 'stored-secret' }
  })
  const first = app.inject({ method: 'POST', url: '/transfer', headers: { [KEY]: 't-1' }, payload: { amount: 3 } })
  await pollUntil(() => hold.entered === 1, { what: 'the handler to reach its step' })

  const during = await app.inject({ method: 'POST', url: '/transfer', headers: { [KEY]: 't-1' }, payload: { amount: 3 } })
  t.equal(during.statusCode, 409)
  t.equal(errorBody(during).code, 'DBOS_ERR_REQUEST_IN_PROGRESS')
  t.notOk(REPLAYED in during.headers, 'a 409 is no replay')
  t.notMatch(during.body, /stored-secret/)
  const changed = await app.inject({ method: 'POST', url: '/transfer', headers: { [KEY]: 't-1' }, payload: { amount: 4 } })
  t.equal(changed.statusCode, 422, 'another body is 422 while it runs too')

  hold.open()
  const done = await first
  t.equal(done.statusCode, 201)
  t.notOk(REPLAYED in done.headers)
  const after = await app.inject({ method: 'POST', url: '/transfer', headers: { [KEY]: 't-1' }, payload: { amount: 3 } })
  t.equal(after.statusCode, 201)
  t.equal(after.body, done.body)
  t.equal(after.headers[REPLAYED], 'true')
  t.same([counter.get('transfer'), counter.get('move')], [1, 1])
})

t.test("whileRunning 'wait' (the default): a retry sent while the handler runs is answered once it is done, with its response", async (t) => {
  const counter = new Counter()
  const hold = gate()
  let released = false
  // The key's scope is asked for just before the workflow start: a count of
  // the requests that got that far, the retry's start then under way.
  let starting = 0
  const app = await buildApp(t, { idempotencyKeyScope: () => { starting++; return 'tenant' } })
  app.post('/wait', { config: { durable: true } }, async (req) => {
    counter.hit('wait')
    return { token: await req.step('held', async () => { await hold.wait(); return randomUUID() }) }
  })
  const first = app.inject({ method: 'POST', url: '/wait', headers: { [KEY]: 'w-1' }, payload: {} })
  await pollUntil(() => hold.entered === 1, { what: 'the handler to reach its step' })
  const retry = app.inject({ method: 'POST', url: '/wait', headers: { [KEY]: 'w-1' }, payload: {} }).then((res) => ({ res, released }))
  await pollUntil(() => starting === 2, { what: 'the retry to start its workflow' })
  t.equal((await app.workflows.getStatus('tenant:w-1')).status, 'PENDING', 'the handler still runs')
  released = true
  hold.open()
  const [a, b] = await Promise.all([first, retry])
  t.ok(b.released, 'the retry was answered after the handler finished')
  t.equal(b.res.statusCode, 200)
  t.equal(b.res.body, a.body)
  t.equal(b.res.headers[REPLAYED], 'true')
  t.equal(counter.get('wait'), 1)
})

t.test('respondAfterMs: 202 with a Location while the handler runs, then the stored response there and on the route', async (t) => {
  const counter = new Counter()
  const hold = gate()
  const app = await buildApp(t)
  const schema = {
    response: {
      '2xx': { type: 'object', properties: { report: { type: 'string' }, rows: { type: 'integer' } } }
    }
  }
  app.post('/reports', { config: { durable: { respondAfterMs: 100 } }, schema }, async (req, reply) => {
    counter.hit('report')
    const rows = await req.step('build', async () => { await hold.wait(); return 7 })
    reply.code(201).header('x-report', 'r-1')
    return { report: 'r-1', rows, internalCost: 'stripped-by-schema' }
  })
  const first = await app.inject({ method: 'POST', url: '/reports', headers: { [KEY]: 'rep/1?#%' }, payload: { month: 5 } })
  t.equal(first.statusCode, 202)
  const location = first.headers.location as string
  t.equal(location, `/dbos/responses/${encodeURIComponent('rep/1?#%')}`, 'the id is encoded in the Location')
  t.equal(first.headers['retry-after'], '1')
  t.same(first.json(), { workflowId: 'rep/1?#%', status: 'PENDING' }, 'the 202 body is not cut by the route\'s 2xx schema')
  t.match(first.headers['content-type'], /^application\/json/)
  t.notOk(REPLAYED in first.headers)

  const polled = await app.inject({ method: 'GET', url: location })
  t.equal(polled.statusCode, 202)
  t.same(polled.json(), { workflowId: 'rep/1?#%', status: 'PENDING' })
  t.equal(polled.headers.location, location)
  const retried = await app.inject({ method: 'POST', url: '/reports', headers: { [KEY]: 'rep/1?#%' }, payload: { month: 5 } })
  t.equal(retried.statusCode, 202, 'a retry while it runs waits respondAfterMs, then gets 202 too')
  t.notOk(REPLAYED in retried.headers)
  t.equal(counter.get('report'), 1)

  hold.open()
  const final = await pollUntil(async () => {
    const res = await app.inject({ method: 'GET', url: location })
    return res.statusCode === 202 ? undefined : res
  }, { what: 'the response to be stored' })
  t.equal(final.statusCode, 201, 'the stored status')
  t.same(final.json(), { report: 'r-1', rows: 7 }, 'the route\'s response schema applies at the Location: the field it strips stays stripped')
  t.equal(final.headers['x-report'], 'r-1', 'the stored headers')
  t.equal(final.headers['content-type'], 'application/json; charset=utf-8')
  const replay = await app.inject({ method: 'POST', url: '/reports', headers: { [KEY]: 'rep/1?#%' }, payload: { month: 5 } })
  t.equal(replay.statusCode, 201)
  t.equal(replay.body, final.body, 'the route itself replays the same, through its schema')
  t.equal(replay.headers[REPLAYED], 'true')
  t.equal(counter.get('report'), 1)
  const stored = (await app.workflows.getStatus('rep/1?#%')).output as { body: Record<string, unknown> }
  t.equal(stored.body.internalCost, 'stripped-by-schema', 'what is stored is what the handler sent; the schema applies on the way out')
})

t.test('respondAfterMs: a handler that fails after the 202 has its error served at the Location', async (t) => {
  const hold = gate()
  const app = await buildApp(t)
  app.post('/fails', { config: { durable: { respondAfterMs: 50 } } }, async (req) => {
    await req.step('held', () => hold.wait())
    throw Object.assign(new Error('quota exceeded'), { statusCode: 429, code: 'QUOTA' })
  })
  const first = await app.inject({ method: 'POST', url: '/fails', payload: {} })
  t.equal(first.statusCode, 202)
  const location = first.headers.location as string
  t.match(location, /^\/dbos\/responses\/[\w-]{21}$/, 'without a key, the generated id')
  hold.open()
  const final = await pollUntil(async () => {
    const res = await app.inject({ method: 'GET', url: location })
    return res.statusCode === 202 ? undefined : res
  }, { what: 'the error to be stored' })
  t.equal(final.statusCode, 429)
  t.same(final.json(), { statusCode: 429, code: 'QUOTA', error: 'Too Many Requests', message: 'quota exceeded' })
})

t.test('a response schema for a status applies to replays on the route and at the Location alike', async (t) => {
  const app = await buildApp(t)
  const schema = {
    response: {
      201: { type: 'object', properties: { id: { type: 'string' } } },
      default: { type: 'object', properties: { problem: { type: 'string' } } }
    }
  }
  app.post('/users', { config: { durable: true }, schema }, async (req, reply) => {
    const { name } = req.body as { name: string }
    if (name === '') return reply.code(400).send({ problem: 'empty name', debug: 'stripped' })
    return reply.code(201).send({ id: `u-${name}`, passwordHash: 'stripped' })
  })
  for (const [key, name, status, body] of [['u-1', 'ann', 201, { id: 'u-ann' }], ['u-2', '', 400, { problem: 'empty name' }]] as const) {
    const first = await app.inject({ method: 'POST', url: '/users', headers: { [KEY]: key }, payload: { name } })
    const again = await app.inject({ method: 'POST', url: '/users', headers: { [KEY]: key }, payload: { name } })
    const there = await app.inject({ method: 'GET', url: `/dbos/responses/${key}` })
    for (const res of [first, again, there]) {
      t.equal(res.statusCode, status, key)
      t.same(res.json(), body, `${key}: the ${status} schema`)
      t.notMatch(res.body, /stripped/)
    }
  }
})

t.test('a response schema given per media type applies at the Location as on the route', async (t) => {
  const app = await buildApp(t)
  const only = (name: string) => ({ schema: { type: 'object', properties: { [name]: { type: 'string' } } } })
  const schema = {
    response: {
      200: { content: { 'application/json': only('json'), 'application/vnd.v2+json': only('v2') } },
      '2xx': { content: { '*/*': only('any') } }
    }
  }
  app.post('/media', { config: { durable: true }, schema }, async (req, reply) => {
    const { type, status } = req.body as { type?: string, status: number }
    if (type !== undefined) reply.type(type)
    return reply.code(status).send({ json: 'j', v2: 'v', any: 'a', secret: 'never sent' })
  })
  const cases = [
    ['m-1', { status: 200 }, { json: 'j' }],
    ['m-2', { status: 200, type: 'application/vnd.v2+json' }, { v2: 'v' }],
    ['m-3', { status: 201 }, { any: 'a' }]
  ] as const
  for (const [key, body, expected] of cases) {
    const first = await app.inject({ method: 'POST', url: '/media', headers: { [KEY]: key }, payload: body })
    const there = await app.inject({ method: 'GET', url: `/dbos/responses/${key}` })
    t.same(first.json(), expected, `${key}: on the route`)
    t.same(there.json(), expected, `${key}: at the Location`)
    t.notMatch(there.body, /never sent/)
  }
})

t.test('the responses route serves durable route responses only: other workflows and unknown ids are 404', async (t) => {
  const plain = defineWorkflow('plain', async () => ({ secret: 'not a response' }))
  const app = await buildApp(t, { workflows: [plain] })
  app.post('/r', { config: { durable: true } }, async () => ({ served: true }))
  await app.ready()
  const handle = await app.workflows.start(plain, null, { workflowId: 'plain-1' })
  await handle.getResult()
  const keyed = await app.inject({ method: 'POST', url: '/r', headers: { [KEY]: 'r-1' }, payload: {} })
  t.equal(keyed.statusCode, 200)

  const served = await app.inject({ method: 'GET', url: '/dbos/responses/r-1' })
  t.equal(served.statusCode, 200)
  t.same(served.json(), { served: true })
  t.notOk(REPLAYED in served.headers, 'serving the stored response at its Location is no retry')
  for (const id of ['plain-1', 'nope', encodeURIComponent('a\u0000b')]) {
    const res = await app.inject({ method: 'GET', url: `/dbos/responses/${id}` })
    t.equal(res.statusCode, 404, id)
    t.equal(errorBody(res).code, 'DBOS_ERR_WORKFLOW_NOT_FOUND', id)
    t.notMatch(res.body, /not a response/, `${id}: nothing of the workflow`)
  }
})

t.test('under idempotencyKeyScope the responses route serves a requester only its own keyed responses', async (t) => {
  const hold = gate()
  const app = await buildApp(t, { idempotencyKeyScope: (req) => req.headers['x-user'] as string | undefined })
  app.post('/jobs', { config: { durable: { respondAfterMs: 50 } } }, async (req) => {
    await req.step('held', () => hold.wait())
    return { owner: 'alice', secret: 'alice-data' }
  })
  const alice = await app.inject({ method: 'POST', url: '/jobs', headers: { [KEY]: 'job-1', 'x-user': 'alice' }, payload: {} })
  t.equal(alice.statusCode, 202)
  t.equal(alice.headers.location, '/dbos/responses/alice%3Ajob-1', 'the id is the scoped key')
  const anonymous = await app.inject({ method: 'POST', url: '/jobs', payload: {} })
  const generated = anonymous.headers.location as string
  hold.open()
  await pollUntil(async () => (await app.inject({ method: 'GET', url: alice.headers.location as string, headers: { 'x-user': 'alice' } })).statusCode === 200,
    { what: 'alice\'s response' })

  for (const headers of [{ 'x-user': 'bob' }, {}]) {
    const res = await app.inject({ method: 'GET', url: alice.headers.location as string, headers })
    t.equal(res.statusCode, 404, `${JSON.stringify(headers)} does not get alice's response`)
    t.notMatch(res.body, /alice-data/)
  }
  const own = await app.inject({ method: 'GET', url: alice.headers.location as string, headers: { 'x-user': 'alice' } })
  t.same(own.json(), { owner: 'alice', secret: 'alice-data' })
  // A generated id is unguessable (126 random bits) and known only to whom it was given: it is served to whoever has it.
  const byId = await app.inject({ method: 'GET', url: generated, headers: { 'x-user': 'bob' } })
  t.equal(byId.statusCode, 200)
})

t.test('responsesPrefix moves the responses route', async (t) => {
  const hold = gate()
  const app = await buildApp(t, { responsesPrefix: '/api/pending' })
  app.post('/slow', { config: { durable: { respondAfterMs: 0 } } }, async (req) => {
    await req.step('held', () => hold.wait())
    return { done: true }
  })
  const first = await app.inject({ method: 'POST', url: '/slow', headers: { [KEY]: 's-1' }, payload: {} })
  t.equal(first.statusCode, 202)
  t.equal(first.headers.location, '/api/pending/s-1')
  t.equal((await app.inject({ method: 'GET', url: '/dbos/responses/s-1' })).statusCode, 404, 'the default prefix is not served')
  hold.open()
  await pollUntil(async () => (await app.inject({ method: 'GET', url: '/api/pending/s-1' })).statusCode === 200, { what: 'the response' })
  t.same((await app.inject({ method: 'GET', url: '/api/pending/s-1' })).json(), { done: true })
})

t.test('the responses route answers 503 when the database does not answer, not 404', async (t) => {
  const schema = uniqueSchema()
  const app = await buildApp(t, { schema })
  app.post('/r', { config: { durable: true } }, async () => ({ ok: true }))
  t.equal((await app.inject({ method: 'POST', url: '/r', headers: { [KEY]: 'o-1' }, payload: {} })).statusCode, 200)
  // A lock no read gets past stands for a database that does not answer (reads give up after 5 s).
  const sql = adminSql(t)
  const locked = sql.begin(async (tx) => {
    await tx`LOCK TABLE ${tx(schema)}.workflows IN ACCESS EXCLUSIVE MODE`
    const res = await app.inject({ method: 'GET', url: '/dbos/responses/o-1' })
    return res
  })
  const res = await locked
  t.equal(res.statusCode, 503)
  t.equal(errorBody(res).code, 'DBOS_ERR_DATABASE_UNAVAILABLE', 'the client learns to ask again')
  t.equal((await app.inject({ method: 'GET', url: '/dbos/responses/o-1' })).statusCode, 200, 'and gets the response once it answers')
})
