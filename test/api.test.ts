import t from 'tap'
import { defineWorkflow } from '../plugins/index.js'
import { adminSql, buildApp, pollUntil, uniqueSchema } from './helpers/db.js'
import { errorBody, gate, sharedSchema } from './helpers/workflows.js'

const double = defineWorkflow('double', async (ctx, n: number) => ctx.step('double', () => n * 2))
const fail = defineWorkflow('fail', async () => { throw Object.assign(new RangeError('too big'), { code: 'E_TOO_BIG' }) })

t.test('getStatus reports identity, timing and outcome', async (t) => {
  const hold = gate()
  const blocked = defineWorkflow('blocked', async (ctx) => ctx.step('wait', () => hold.wait()))
  const app = await buildApp(t, { workflows: [double, fail, blocked] })
  app.post('/double', async (req) => {
    const h = await req.workflows.start(double, 21)
    await h.getResult()
    return { workflowId: h.workflowId }
  })
  const res = await app.inject({ method: 'POST', url: '/double', headers: { 'dbos-request-id': 'status-req' } })
  const { workflowId } = res.json()
  const ok = await app.workflows.getStatus(workflowId)
  t.match(ok, { workflowId, name: 'double', status: 'SUCCESS', input: 21, output: 42, requestId: 'status-req', executorId: app.workflows.executorId, attempts: 1 })
  t.notOk('error' in ok, 'no error on success')
  t.ok(ok.createdAt instanceof Date && ok.updatedAt instanceof Date && ok.completedAt instanceof Date)
  t.ok(ok.updatedAt.getTime() >= ok.createdAt.getTime())
  t.ok(ok.completedAt!.getTime() >= ok.createdAt.getTime())

  const failed = await app.workflows.start(fail, undefined)
  await t.rejects(failed.getResult(), { code: 'E_TOO_BIG' })
  const err = await failed.getStatus()
  t.match(err, { workflowId: failed.workflowId, name: 'fail', status: 'ERROR', requestId: null })
  t.notOk('output' in err, 'no output on error')
  t.ok(err.error instanceof RangeError, 'the error comes back as its class')
  t.match(err.error, { message: 'too big', code: 'E_TOO_BIG' })

  const pending = await app.workflows.start(blocked, undefined)
  await pollUntil(() => hold.entered === 1)
  const p = await pending.getStatus()
  t.match(p, { status: 'PENDING', completedAt: null })
  t.notOk('output' in p || 'error' in p)
  hold.open()
  await pending.getResult()
})

t.test('list filters by name and status, pages with limit/offset, and orders', async (t) => {
  const app = await buildApp(t, { workflows: [double, fail] })
  await app.ready()
  for (const i of [1, 2, 3]) await (await app.workflows.start(double, i, { workflowId: `d${i}` })).getResult()
  for (const i of [4, 5]) await (await app.workflows.start(fail, undefined, { workflowId: `f${i}` })).getResult().catch(() => {})
  const ids = (ws: { workflowId: string }[]) => ws.map((w) => w.workflowId)
  t.same(ids(await app.workflows.list({ name: 'double', order: 'asc' })), ['d1', 'd2', 'd3'])
  t.same(ids(await app.workflows.list({ status: 'ERROR', order: 'asc' })), ['f4', 'f5'])
  t.same(ids(await app.workflows.list({ name: 'double', status: 'ERROR' })), [])
  t.same(ids(await app.workflows.list({ order: 'asc' })), ['d1', 'd2', 'd3', 'f4', 'f5'])
  t.same(ids(await app.workflows.list()), ['f5', 'f4', 'd3', 'd2', 'd1'], 'newest first by default')
  t.same(ids(await app.workflows.list({ order: 'desc', limit: 2 })), ['f5', 'f4'])
  t.same(ids(await app.workflows.list({ order: 'asc', limit: 2, offset: 1 })), ['d2', 'd3'])
  t.same(ids(await app.workflows.list({ offset: 5 })), [])
  const [first] = await app.workflows.list({ name: 'double', order: 'asc', limit: 1 })
  t.match(first, { name: 'double', status: 'SUCCESS', output: 2, input: 1 }, 'list entries are full statuses')
})

t.test('listSteps returns recorded steps in call order, and 404 for an unknown workflow', async (t) => {
  const steps = defineWorkflow('steps', async (ctx) => {
    await ctx.step('one', () => 1)
    await ctx.step('two', () => { throw Object.assign(new Error('two failed'), { code: 'E_TWO' }) }).catch(() => {})
    await ctx.transaction('three', async (tx) => (await tx`SELECT 3 AS n`)[0]!.n)
    return 'done'
  })
  const noSteps = defineWorkflow('noSteps', async () => 'none')
  const app = await buildApp(t, { workflows: [steps, noSteps] })
  await app.ready()
  const h = await app.workflows.start(steps, undefined)
  await h.getResult()
  const listed = await app.workflows.listSteps(h.workflowId)
  t.same(listed.map((s) => [s.stepId, s.name]), [[0, 'one'], [1, 'two'], [2, 'three']])
  t.equal(listed[0]!.output, 1)
  t.match(listed[1]!.error, { message: 'two failed', code: 'E_TWO' })
  t.notOk('output' in listed[1]!)
  t.equal(listed[2]!.output, 3)
  t.ok(listed.every((s) => s.createdAt instanceof Date))
  const none = await app.workflows.start(noSteps, undefined)
  await none.getResult()
  t.same(await app.workflows.listSteps(none.workflowId), [], 'a workflow without steps has an empty list')
  await t.rejects(app.workflows.listSteps('no-such-id'), { code: 'DBOS_ERR_WORKFLOW_NOT_FOUND', statusCode: 404 })
})

t.test('retrieve through a route: a known id answers, an unknown one is 404', async (t) => {
  const app = await buildApp(t, { workflows: [double] })
  app.get('/wf/:id', async (req) => {
    const handle = await req.workflows.retrieve((req.params as { id: string }).id)
    return { workflowId: handle.workflowId, result: await handle.getResult(), status: (await handle.getStatus()).status }
  })
  await app.ready()
  await (await app.workflows.start(double, 5, { workflowId: 'known' })).getResult()
  const known = await app.inject({ method: 'GET', url: '/wf/known' })
  t.same(known.json(), { workflowId: 'known', result: 10, status: 'SUCCESS' })
  const res = await app.inject({ method: 'GET', url: '/wf/unknown-id' })
  t.equal(res.statusCode, 404)
  t.equal(errorBody(res).code, 'DBOS_ERR_WORKFLOW_NOT_FOUND')
  await t.rejects(app.workflows.getStatus('unknown-id'), { code: 'DBOS_ERR_WORKFLOW_NOT_FOUND' })
})

t.test('getResult({ timeoutMs }) gives up with DBOS_ERR_RESULT_TIMEOUT and leaves the workflow running', async (t) => {
  const hold = gate()
  const slow = defineWorkflow('slow', async (ctx) => ctx.step('wait', async () => { await hold.wait(); return 'late' }))
  const app = await buildApp(t, { workflows: [slow] })
  app.post('/slow', async (req) => req.workflows.run(slow, undefined, { waitMs: 20 }))
  const res = await app.inject({ method: 'POST', url: '/slow', headers: { 'dbos-idempotency-key': 'slow-1' } })
  t.equal(res.statusCode, 504)
  t.equal(errorBody(res).code, 'DBOS_ERR_RESULT_TIMEOUT')
  const handle = await app.workflows.retrieve('slow-1')
  await t.rejects(handle.getResult({ timeoutMs: 20 }), { code: 'DBOS_ERR_RESULT_TIMEOUT', statusCode: 504 })
  t.equal((await handle.getStatus()).status, 'PENDING')
  hold.open()
  t.equal(await handle.getResult({ timeoutMs: 15_000 }), 'late')
})

t.test('run(): timeoutMs is the workflow\'s timeout, as for start; waitMs only bounds the wait', async (t) => {
  const hold = gate()
  t.teardown(() => hold.open())
  const slow = defineWorkflow('slowRun', async (ctx) => ctx.step('wait', async () => { await hold.wait(); return 'late' }))
  const app = await buildApp(t, { workflows: [slow] })
  app.post('/deadline', async (req) => req.workflows.run(slow, undefined, { timeoutMs: 200 }))
  const res = await app.inject({ method: 'POST', url: '/deadline', headers: { 'dbos-idempotency-key': 'deadline-1' } })
  t.equal(errorBody(res).code, 'DBOS_ERR_WORKFLOW_TIMEOUT', 'past its timeout, the workflow is cancelled and run() says so')
  t.equal((await app.workflows.getStatus('deadline-1')).status, 'CANCELLED')
  await t.rejects(app.workflows.run(slow, undefined, { waitMs: 20 }), { code: 'DBOS_ERR_RESULT_TIMEOUT' }, 'app.workflows.run: waitMs')
  // A cancel answers the waiters at once, though the run is still in its step (it ignores its signal).
  const running = await app.workflows.start(slow, undefined)
  const waiting = running.getResult({ timeoutMs: 10_000 })
  await app.workflows.cancel(running.workflowId)
  await t.rejects(waiting, { code: 'DBOS_ERR_WORKFLOW_CANCELLED' }, 'cancelled: its waiter is answered, not left to its timeout')
})

t.test('Date, BigInt, Map, Set, undefined and Error round-trip through input and output', async (t) => {
  const seen: unknown[] = []
  const echo = defineWorkflow('echo', async (ctx, input: Record<string, unknown>) => {
    seen.push(input)
    const fromStep = await ctx.step('copy', () => input)
    return { input, fromStep }
  })
  const app = await buildApp(t, { workflows: [echo] })
  await app.ready()
  const value = {
    date: new Date('2024-05-06T07:08:09.010Z'),
    big: 2n ** 70n,
    map: new Map<unknown, unknown>([['k', new Set([1, 2])], [3, new Date(0)]]),
    set: new Set(['x', 'y']),
    nothing: undefined,
    error: Object.assign(new TypeError('typed'), { code: 'E_T' })
  }
  const check = (label: string, v: typeof value) => {
    t.ok(v.date instanceof Date && v.date.getTime() === value.date.getTime(), `${label}: Date`)
    t.equal(v.big, value.big, `${label}: BigInt`)
    t.ok(v.map instanceof Map && (v.map.get('k') as Set<number>).has(2) && (v.map.get(3) as Date).getTime() === 0, `${label}: Map`)
    t.ok(v.set instanceof Set && v.set.has('y'), `${label}: Set`)
    t.ok('nothing' in v && v.nothing === undefined, `${label}: undefined`)
    t.ok(v.error instanceof TypeError, `${label}: Error class`)
    t.match(v.error, { message: 'typed', code: 'E_T' }, `${label}: Error fields`)
  }
  const handle = await app.workflows.start(echo, value)
  const out = await handle.getResult() as { input: typeof value, fromStep: typeof value }
  check('inside the workflow', seen[0] as typeof value)
  check('output', out.input)
  check('step result', out.fromStep)
  const status = await handle.getStatus()
  check('stored input', status.input as typeof value)
  check('stored output', (status.output as { input: typeof value }).input)
})

t.test('an input that cannot be stored is refused with 400 and writes nothing', async (t) => {
  const schema = uniqueSchema()
  const app = await buildApp(t, { workflows: [double], schema })
  const cyclic: Record<string, unknown> = {}
  cyclic.self = cyclic
  const inputs: Record<string, unknown> = { function: { f: () => 1 }, cycle: cyclic }
  app.post('/bad/:kind', async (req) => {
    const h = await req.workflows.start(double, inputs[(req.params as { kind: string }).kind] as number)
    return { workflowId: h.workflowId }
  })
  app.post('/good', async (req) => {
    const h = await req.workflows.start(double, 1)
    return { workflowId: h.workflowId, result: await h.getResult() }
  })
  const sql = adminSql(t)
  for (const kind of Object.keys(inputs)) {
    for (const headers of [{}, { 'dbos-idempotency-key': `key-${kind}` }]) {
      const res = await app.inject({ method: 'POST', url: `/bad/${kind}`, headers })
      t.equal(res.statusCode, 400, `${kind} ${JSON.stringify(headers)}`)
      t.equal(errorBody(res).code, 'DBOS_ERR_UNSERIALIZABLE_VALUE')
    }
    await t.rejects(app.workflows.start(double, inputs[kind] as number), { code: 'DBOS_ERR_UNSERIALIZABLE_VALUE', statusCode: 400 })
  }
  const [{ n }] = await sql`SELECT count(*)::int AS n FROM ${sql(schema)}.workflows`
  t.equal(n, 0, 'no workflow row was written')
  const retry = await app.inject({ method: 'POST', url: '/good', headers: { 'dbos-idempotency-key': 'key-cycle' } })
  t.same(retry.json(), { workflowId: 'key-cycle', result: 2 }, 'the refused request did not use up its key')
})

t.test('req.workflows.start reports an unstorable input as a rejected promise, not a synchronous throw', async (t) => {
  const app = await buildApp(t, { workflows: [double] })
  app.post('/start', (req, reply) => {
    let outcome: string
    try {
      const p = req.workflows.start(double, { f: () => 1 } as unknown as number)
      outcome = 'promise'
      p.then(() => reply.send({ outcome }), (err) => reply.send({ outcome, code: err.code }))
    } catch (err) {
      reply.send({ outcome: 'threw', code: (err as { code?: string }).code })
    }
  })
  for (const headers of [{}, { 'dbos-idempotency-key': 'sync' }]) {
    const res = await app.inject({ method: 'POST', url: '/start', headers })
    t.same(res.json(), { outcome: 'promise', code: 'DBOS_ERR_UNSERIALIZABLE_VALUE' }, JSON.stringify(headers))
  }
})

t.test('a workflow not registered with the engine is refused with DBOS_ERR_UNKNOWN_WORKFLOW', async (t) => {
  const schema = uniqueSchema()
  const app = await buildApp(t, { workflows: [double], schema })
  const stranger = defineWorkflow('stranger', async () => 'x')
  const impostor = defineWorkflow('double', async () => 'not the registered one')
  app.post('/stranger', async (req) => req.workflows.run(stranger, undefined))
  await app.ready()
  await t.rejects(app.workflows.start(stranger, undefined), { code: 'DBOS_ERR_UNKNOWN_WORKFLOW' })
  await t.rejects(app.workflows.start(impostor, undefined), { code: 'DBOS_ERR_UNKNOWN_WORKFLOW' }, 'same name, other definition')
  const res = await app.inject({ method: 'POST', url: '/stranger', headers: { 'dbos-idempotency-key': 'str' } })
  t.equal(errorBody(res).code, 'DBOS_ERR_UNKNOWN_WORKFLOW')
  const sql = adminSql(t)
  t.same(await sql`SELECT workflow_id FROM ${sql(schema)}.workflows`, [], 'nothing written')
})

t.test('getResult in another process wakes when the first one finishes the workflow', async (t) => {
  const hold = gate()
  const wf = defineWorkflow('crossProcess', async (ctx) => ctx.step('wait', async () => { await hold.wait(); return new Date(5) }))
  const processes = sharedSchema(t)
  const first = await processes.start({ workflows: [wf], executorId: 'first' })
  // Only a notification can wake the second process within the deadline below.
  const second = await processes.start({ executorId: 'second', resultPollIntervalMs: 600_000 })
  const handle = await first.startWorkflow(wf, undefined)
  const elsewhere = await second.retrieve<Date>(handle.workflowId)
  let settled = false
  const result = elsewhere.getResult({ timeoutMs: 15_000 }).finally(() => { settled = true })
  const sql = adminSql(t)
  await pollUntil(async () => (await sql`
    SELECT 1 FROM pg_stat_activity WHERE query ILIKE 'listen%' AND query LIKE ${'%' + processes.schema + '%'}`).length > 0,
  { what: 'the second engine to LISTEN' })
  await pollUntil(() => hold.entered === 1)
  t.notOk(settled, 'still waiting while the workflow runs')
  hold.open()
  const value = await result
  t.ok(value instanceof Date && value.getTime() === 5, 'the stored result, restored')
})
