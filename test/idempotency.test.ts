import { randomUUID } from 'node:crypto'
import { connect } from 'node:net'
import t, { type Test } from 'tap'
import { defineWorkflow } from '../plugins/index.js'
import { adminSql, buildApp, pollUntil, uniqueSchema } from './helpers/db.js'
import { Counter, errorBody, gate } from './helpers/workflows.js'

const KEY = 'dbos-idempotency-key'

/** A workflow whose body and step are counted, returning a value only the first run could have produced. */
function countedWorkflow (counter: Counter, name = 'charge') {
  return defineWorkflow(name, async (ctx, input: { amount: number }) => {
    counter.hit(name)
    const receipt = await ctx.step('pay', () => { counter.hit(`${name}.pay`); return randomUUID() })
    return { amount: input.amount, receipt, workflowId: ctx.workflowId }
  })
}

t.test('the same key sent again runs the body once and answers every caller alike', async (t) => {
  const counter = new Counter()
  const charge = countedWorkflow(counter)
  const schema = uniqueSchema()
  const app = await buildApp(t, { workflows: [charge], schema })
  app.post('/charge', async (req) => {
    const handle = await req.workflows.start(charge, req.body as { amount: number })
    return { workflowId: handle.workflowId, result: await handle.getResult() }
  })
  const bodies = []
  for (let i = 0; i < 3; i++) {
    const res = await app.inject({ method: 'POST', url: '/charge', headers: { [KEY]: 'order-1' }, payload: { amount: 5 } })
    t.equal(res.statusCode, 200)
    bodies.push(res.json())
  }
  t.equal(bodies[0].workflowId, 'order-1', 'the first workflow of a keyed request has the key as its id')
  t.same(bodies[1], bodies[0])
  t.same(bodies[2], bodies[0])
  t.equal(counter.get('charge'), 1, 'body ran once')
  t.equal(counter.get('charge.pay'), 1, 'step ran once')
  const sql = adminSql(t)
  const [{ n }] = await sql`SELECT count(*)::int AS n FROM ${sql(schema)}.workflows`
  t.equal(n, 1, 'one workflow row')
})

t.test('50 concurrent requests with one key share one run, and callers arriving mid-run wait for it', async (t) => {
  const counter = new Counter()
  const hold = gate()
  let released = false
  let arrived = 0
  const slow = defineWorkflow('slow', async (ctx, input: { n: number }) => {
    counter.hit('body')
    const token = await ctx.step('blocked', async () => { counter.hit('step'); await hold.wait(); return randomUUID() })
    return { n: input.n, token }
  })
  const app = await buildApp(t, { workflows: [slow] })
  app.post('/slow', async (req) => {
    const handle = await req.workflows.start(slow, req.body as { n: number })
    arrived++
    const result = await handle.getResult()
    return { workflowId: handle.workflowId, result, releasedBeforeAnswer: released }
  })
  const requests = Array.from({ length: 50 }, () =>
    app.inject({ method: 'POST', url: '/slow', headers: { [KEY]: 'burst' }, payload: { n: 7 } }))
  await pollUntil(() => arrived === 50 && hold.entered === 1, { what: 'all 50 requests to have started the workflow' })
  t.equal(counter.get('body'), 1, 'only one run started while all 50 callers wait')
  released = true
  hold.open()
  const responses = await Promise.all(requests)
  const bodies = responses.map((r) => r.json())
  t.same(responses.map((r) => r.statusCode), Array(50).fill(200))
  t.equal(new Set(bodies.map((b) => b.workflowId)).size, 1)
  t.equal(bodies[0].workflowId, 'burst')
  t.equal(new Set(bodies.map((b) => JSON.stringify(b.result))).size, 1, 'every caller got the same result')
  t.ok(bodies.every((b) => b.releasedBeforeAnswer), 'no caller was answered before the run finished')
  t.equal(counter.get('body'), 1, 'body ran once')
  t.equal(counter.get('step'), 1, 'step ran once')
  t.equal((await app.workflows.list()).length, 1)
})

t.test('a key reused with another workflow is refused with 422 and reveals nothing of the stored one', async (t) => {
  const counter = new Counter()
  const first = defineWorkflow('first', async (_ctx, input: { secret: string }) => ({ echoed: `out-${input.secret}` }))
  const second = defineWorkflow('second', async () => { counter.hit('second'); return 'second ran' })
  const app = await buildApp(t, { workflows: [first, second] })
  app.post('/first', async (req) => req.workflows.run(first, req.body as { secret: string }))
  app.post('/second', async (req) => req.workflows.run(second, req.body as { secret: string }))
  const ok = await app.inject({ method: 'POST', url: '/first', headers: { [KEY]: 'shared' }, payload: { secret: 'hunter2' } })
  t.same(ok.json(), { echoed: 'out-hunter2' })

  const res = await app.inject({ method: 'POST', url: '/second', headers: { [KEY]: 'shared' }, payload: { secret: 'hunter2' } })
  t.equal(res.statusCode, 422)
  t.equal(errorBody(res).code, 'DBOS_ERR_IDEMPOTENCY_KEY_REUSED')
  t.notMatch(res.body, /hunter2/, 'no trace of the stored input or output')
  t.notMatch(res.body, /"first"|echoed/, 'no trace of the stored workflow name or output')
  t.equal(counter.get('second'), 0, 'the other workflow never ran')
  const status = await app.workflows.getStatus('shared')
  t.equal(status.name, 'first', 'the stored workflow is untouched')
})

t.test('a key reused with another input is refused with 422', async (t) => {
  const counter = new Counter()
  const charge = countedWorkflow(counter)
  const app = await buildApp(t, { workflows: [charge] })
  app.post('/charge', async (req) => req.workflows.run(charge, req.body as { amount: number }))
  const first = await app.inject({ method: 'POST', url: '/charge', headers: { [KEY]: 'k' }, payload: { amount: 1 } })
  t.equal(first.statusCode, 200)
  const res = await app.inject({ method: 'POST', url: '/charge', headers: { [KEY]: 'k' }, payload: { amount: 2 } })
  t.equal(res.statusCode, 422)
  t.equal(errorBody(res).code, 'DBOS_ERR_IDEMPOTENCY_KEY_REUSED')
  t.notMatch(res.body, /receipt|amount/)
  t.equal(counter.get('charge'), 1)
  t.same((await app.workflows.getStatus('k')).input, { amount: 1 })
})

t.test('one request starting two workflows under one key gets K and K::2, and a retry gets them again', async (t) => {
  const counter = new Counter()
  const a = countedWorkflow(counter, 'a')
  const b = countedWorkflow(counter, 'b')
  const app = await buildApp(t, { workflows: [a, b] })
  app.post('/both', async (req) => {
    const ha = await req.workflows.start(a, { amount: 1 })
    const hb = await req.workflows.start(b, { amount: 2 })
    return { ids: [ha.workflowId, hb.workflowId], results: [await ha.getResult(), await hb.getResult()] }
  })
  const first = await app.inject({ method: 'POST', url: '/both', headers: { [KEY]: 'K' } })
  t.equal(first.statusCode, 200)
  t.same(first.json().ids, ['K', 'K::2'])
  const retry = await app.inject({ method: 'POST', url: '/both', headers: { [KEY]: 'K' } })
  t.same(retry.json(), first.json(), 'same ids and results')
  t.equal(counter.get('a'), 1)
  t.equal(counter.get('b'), 1)
  t.same((await app.workflows.list({ order: 'asc' })).map((w) => [w.workflowId, w.name]).sort(), [['K', 'a'], ['K::2', 'b']])
})

t.test('the same workflow and input started twice in one request is one workflow', async (t) => {
  const counter = new Counter()
  const charge = countedWorkflow(counter)
  const app = await buildApp(t, { workflows: [charge] })
  app.post('/twice', async (req) => {
    const h1 = await req.workflows.start(charge, { amount: 3 })
    const h2 = await req.workflows.start(charge, { amount: 3 })
    const h3 = await req.workflows.start(charge, { amount: 4 })
    await Promise.all([h1.getResult(), h3.getResult()])
    return [h1.workflowId, h2.workflowId, h3.workflowId]
  })
  const res = await app.inject({ method: 'POST', url: '/twice', headers: { [KEY]: 'dup' } })
  t.same(res.json(), ['dup', 'dup', 'dup::2'], 'a different input is the next distinct workflow')
  t.equal(counter.get('charge'), 2)
})

t.test('idempotencyKeyScope keeps two users with the same key apart', async (t) => {
  const counter = new Counter()
  const charge = countedWorkflow(counter)
  const app = await buildApp(t, {
    workflows: [charge],
    idempotencyKeyScope: (req) => req.headers['x-user'] as string | undefined
  })
  app.post('/charge', async (req) => {
    const handle = await req.workflows.start(charge, { amount: 1 })
    return { workflowId: handle.workflowId, result: await handle.getResult() }
  })
  const send = (user: string) => app.inject({ method: 'POST', url: '/charge', headers: { [KEY]: 'same', 'x-user': user } })
  const alice = (await send('alice')).json()
  const bob = (await send('bob:1/x')).json()
  const aliceAgain = (await send('alice')).json()
  t.equal(alice.workflowId, 'alice:same')
  t.equal(bob.workflowId, `${encodeURIComponent('bob:1/x')}:same`, 'the scope is encoded so it cannot forge another scope')
  t.not(alice.result.receipt, bob.result.receipt, 'two distinct runs')
  t.same(aliceAgain, alice, 'the same user gets the same workflow back')
  t.equal(counter.get('charge'), 2)
})

t.test('app.workflows.start with an explicit workflowId twice returns the same workflow', async (t) => {
  const counter = new Counter()
  const charge = countedWorkflow(counter)
  const app = await buildApp(t, { workflows: [charge] })
  await app.ready()
  const h1 = await app.workflows.start(charge, { amount: 9 }, { workflowId: 'explicit' })
  const r1 = await h1.getResult()
  const h2 = await app.workflows.start(charge, { amount: 9 }, { workflowId: 'explicit' })
  t.equal(h2.workflowId, 'explicit')
  t.same(await h2.getResult(), r1)
  const [h3, h4] = await Promise.all([
    app.workflows.start(charge, { amount: 1 }, { workflowId: 'together' }),
    app.workflows.start(charge, { amount: 1 }, { workflowId: 'together' })
  ])
  t.same(await h3.getResult(), await h4.getResult(), 'concurrent starts with one id share a run')
  t.equal(counter.get('charge'), 2)
  await t.rejects(app.workflows.start(charge, { amount: 10 }, { workflowId: 'explicit' }),
    { code: 'DBOS_ERR_IDEMPOTENCY_KEY_REUSED', statusCode: 422 }, 'another input under that id is refused')
})


/** Sends a request over a real socket with the given header lines, as a client (or a proxy) would. */
function rawRequest (port: number, path: string, headerLines: Buffer[]): Promise<{ status: number, body: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => {
      const lines = headerLines.flatMap((line) => [line, Buffer.from('\r\n')])
      socket.write(Buffer.concat([
        Buffer.from(`POST ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: 0\r\n`), ...lines, Buffer.from('\r\n')]))
    })
    let data = ''
    socket.on('data', (d) => { data += d.toString('latin1') })
    socket.on('end', () => resolve({ status: Number(data.split(' ')[1]), body: data.slice(data.indexOf('\r\n\r\n') + 4) }))
    socket.on('error', reject)
  })
}

/** An app with /one (workflow a, input 1) and /both (a with 1, then b with 2): the second gets a derived id. */
async function appWithTwo (t: Test, counter: Counter) {
  const a = countedWorkflow(counter, 'a')
  const b = countedWorkflow(counter, 'b')
  const app = await buildApp(t, { workflows: [a, b] })
  app.post('/one', async (req) => {
    const h = await req.workflows.start(b, { amount: 2 })
    return { workflowId: h.workflowId, result: await h.getResult() }
  })
  app.post('/both', async (req) => {
    const ha = await req.workflows.start(a, { amount: 1 })
    const hb = await req.workflows.start(b, { amount: 2 })
    return { ids: [ha.workflowId, hb.workflowId], results: [await ha.getResult(), await hb.getResult()] }
  })
  return app
}

t.test('no client key reaches the id derived for another request\'s second workflow (K::2)', async (t) => {
  const counter = new Counter()
  const app = await appWithTwo(t, counter)
  const first = await app.inject({ method: 'POST', url: '/both', headers: { [KEY]: 'K' } })
  t.same(first.json().ids, ['K', 'K::2'], 'the derived id keeps its form')
  const other = await app.inject({ method: 'POST', url: '/one', headers: { [KEY]: 'K::2' } })
  t.equal(other.statusCode, 400, 'a key containing "::" is refused')
  t.equal(errorBody(other).code, 'DBOS_ERR_INVALID_IDEMPOTENCY_KEY')
  t.notMatch(other.body, first.json().results[1].receipt, 'the other client does not get the second workflow\'s result')
  t.equal(counter.get('b'), 1)
})

t.test('a key like K6::2 used first does not make a later request with K6 fail after its first workflow ran', async (t) => {
  const counter = new Counter()
  const app = await appWithTwo(t, counter)
  const squatter = await app.inject({ method: 'POST', url: '/one', headers: { [KEY]: 'K6::2' } })
  t.equal(squatter.statusCode, 400)
  t.equal(errorBody(squatter).code, 'DBOS_ERR_INVALID_IDEMPOTENCY_KEY')
  const res = await app.inject({ method: 'POST', url: '/both', headers: { [KEY]: 'K6' } })
  t.equal(res.statusCode, 200)
  t.same(res.json().ids, ['K6', 'K6::2'])
  t.equal(counter.get('a'), 1)
  t.equal(counter.get('b'), 1)
})

t.test('derived ids cannot be reached under idempotencyKeyScope either', async (t) => {
  const counter = new Counter()
  const a = countedWorkflow(counter, 'a')
  const b = countedWorkflow(counter, 'b')
  const app = await buildApp(t, { workflows: [a, b], idempotencyKeyScope: (req) => req.headers['x-user'] as string | undefined })
  app.post('/both', async (req) => {
    const ha = await req.workflows.start(a, { amount: 1 })
    const hb = await req.workflows.start(b, { amount: 2 })
    return [ha.workflowId, hb.workflowId]
  })
  const alice = await app.inject({ method: 'POST', url: '/both', headers: { [KEY]: 'k', 'x-user': 'alice' } })
  t.same(alice.json(), ['alice:k', 'alice:k::2'])
  const anonymous = await app.inject({ method: 'POST', url: '/both', headers: { [KEY]: ':k' } })
  t.same(anonymous.json(), ['::k', '::k::2'], 'a key starting with ":" stays in the anonymous scope')
  for (const key of ['k::2', 'k:::2', '::2']) {
    const res = await app.inject({ method: 'POST', url: '/both', headers: { [KEY]: key, 'x-user': 'alice' } })
    t.equal(errorBody(res).code, 'DBOS_ERR_INVALID_IDEMPOTENCY_KEY', key)
  }
  t.equal(counter.get('a'), 2)
})

for (const [header, code] of [[KEY, 'DBOS_ERR_INVALID_IDEMPOTENCY_KEY'], ['dbos-request-id', 'DBOS_ERR_INVALID_REQUEST_ID']]) {
  t.test(`a repeated ${header} header is refused with 400 ${code}`, async (t) => {
    const schema = uniqueSchema()
    const counter = new Counter()
    const charge = countedWorkflow(counter)
    const app = await buildApp(t, { workflows: [charge], schema })
    app.post('/charge', async (req) => req.workflows.run(charge, { amount: 1 }))
    const injected = await app.inject({ method: 'POST', url: '/charge', headers: { [header]: ['A', 'B'] } })
    t.equal(injected.statusCode, 400, 'inject with two values')
    t.equal(errorBody(injected).code, code)
    const same = await app.inject({ method: 'POST', url: '/charge', headers: { [header]: ['A', 'A'] } })
    t.equal(errorBody(same).code, code, 'even twice the same value')

    await app.listen({ port: 0, host: '127.0.0.1' })
    const port = (app.server.address() as { port: number }).port
    const lines = [Buffer.from(`${header}: A`), Buffer.from(`${header.toUpperCase()}: B`)]
    const raw = await rawRequest(port, '/charge', lines)
    t.equal(raw.status, 400, 'two header lines over real HTTP (Node joins them into "A, B")')
    t.equal(JSON.parse(raw.body).code, code)
    const sql = adminSql(t)
    t.same(await sql`SELECT workflow_id FROM ${sql(schema)}.workflows`, [], 'nothing was started')
    t.equal(counter.get('charge'), 0)

    const single = await rawRequest(port, '/charge', [Buffer.from(`${header}: A, B`)])
    t.equal(single.status, 200, 'one header line whose value contains ", " is one value')
  })
}

t.test('keys are printable ASCII: UTF-8 keys are refused with 400 over real HTTP and inject', async (t) => {
  const schema = uniqueSchema()
  const counter = new Counter()
  const charge = countedWorkflow(counter)
  const app = await buildApp(t, { workflows: [charge], schema })
  app.post('/charge', async (req) => (await req.workflows.start(charge, { amount: 1 })).workflowId)
  await app.listen({ port: 0, host: '127.0.0.1' })
  const port = (app.server.address() as { port: number }).port
  for (const key of ['café-1', '€uro-1']) {
    const raw = await rawRequest(port, '/charge', [Buffer.concat([Buffer.from(`${KEY}: `), Buffer.from(key, 'utf8')])])
    t.equal(raw.status, 400, `${key} as UTF-8 bytes`)
    t.equal(JSON.parse(raw.body).code, 'DBOS_ERR_INVALID_IDEMPOTENCY_KEY')
    const injected = await app.inject({ method: 'POST', url: '/charge', headers: { [KEY]: key } })
    t.equal(injected.statusCode, 400, `${key} through inject`)
    t.equal(errorBody(injected).code, 'DBOS_ERR_INVALID_IDEMPOTENCY_KEY')
    const requestId = await app.inject({ method: 'POST', url: '/charge', headers: { 'dbos-request-id': key } })
    t.equal(errorBody(requestId).code, 'DBOS_ERR_INVALID_REQUEST_ID', `${key} as a request id`)
  }
  const sql = adminSql(t)
  t.same(await sql`SELECT workflow_id FROM ${sql(schema)}.workflows`, [], 'nothing was stored under a mangled key')

  for (const key of [' lead', 'trail ', 'tab\tinside', 'del\u007f']) {
    const res = await app.inject({ method: 'POST', url: '/charge', headers: { [KEY]: key } })
    t.equal(errorBody(res).code, 'DBOS_ERR_INVALID_IDEMPOTENCY_KEY', JSON.stringify(key))
  }
  for (const key of ['order 1001', 'a, b', 'x:y', '!~"#$%&\'()*+,-./;<=>?@[\\]^_`{|}']) {
    const res = await rawRequest(port, '/charge', [Buffer.from(`${KEY}: ${key}`)])
    t.equal(res.status, 200, `${key} is a valid key`)
    t.equal(res.body, key, 'stored under exactly the key')
    t.equal((await app.workflows.getStatus(key)).workflowId, key, 'and found by it')
  }
})
