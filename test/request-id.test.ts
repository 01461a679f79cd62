import { Writable } from 'node:stream'
import Fastify from 'fastify'
import t, { type Test } from 'tap'
import dbosPlugin, { defineWorkflow } from '../plugins/index.js'
import { buildApp, databaseUrl, dropSchema, silentLogger, uniqueSchema } from './helpers/db.js'
import { gate, interruptAndResume } from './helpers/workflows.js'

const REQUEST_ID = 'dbos-request-id'

const seeRequestId = defineWorkflow('seeRequestId', async (ctx, input: { n: number }) =>
  ({ n: input.n, requestId: ctx.requestId }))

async function appWithRoute (t: Test) {
  const app = await buildApp(t, { workflows: [seeRequestId] })
  app.post('/start', async (req) => {
    const handles = await Promise.all([req.workflows.start(seeRequestId, { n: 1 }), req.workflows.start(seeRequestId, { n: 2 })])
    return {
      fastifyId: req.id,
      ids: handles.map((h) => h.workflowId),
      results: await Promise.all(handles.map((h) => h.getResult()))
    }
  })
  return app
}

t.test('dbos-request-id is stored on every workflow of the request, echoed, and filterable', async (t) => {
  const app = await appWithRoute(t)
  const res = await app.inject({ method: 'POST', url: '/start', headers: { [REQUEST_ID]: 'req-abc' } })
  t.equal(res.statusCode, 200)
  t.equal(res.headers[REQUEST_ID], 'req-abc', 'echoed in the response')
  const body = res.json()
  t.same(body.results.map((r: { requestId: string }) => r.requestId), ['req-abc', 'req-abc'], 'ctx.requestId inside the workflow')
  for (const id of body.ids) t.equal((await app.workflows.getStatus(id)).requestId, 'req-abc')

  const other = await app.inject({ method: 'POST', url: '/start', headers: { [REQUEST_ID]: 'req-other' } })
  t.equal(other.statusCode, 200)
  const listed = await app.workflows.list({ requestId: 'req-abc' })
  t.same(listed.map((w) => w.workflowId).sort(), [...body.ids].sort(), 'list({ requestId }) finds exactly that request\'s workflows')
  t.same(await app.workflows.list({ requestId: 'req-none' }), [])
})

t.test('without the header, a generated id is recorded, echoed and seen by the workflow', async (t) => {
  const app = await appWithRoute(t)
  const res = await app.inject({ method: 'POST', url: '/start' })
  t.equal(res.statusCode, 200)
  const body = res.json()
  const requestId = res.headers[REQUEST_ID] as string
  t.match(requestId, /^[A-Za-z0-9_-]{21}$/, 'a nanoid')
  t.not(requestId, body.fastifyId, 'not Fastify\'s per-process counter')
  t.same(body.results.map((r: { requestId: string }) => r.requestId), [requestId, requestId])
  t.equal((await app.workflows.getStatus(body.ids[0])).requestId, requestId)
  t.equal((await app.workflows.list({ requestId })).length, 2)
})

t.test('without the header, two app instances (processes, restarts) never record the same request id', async (t) => {
  const ids: string[] = []
  for (let i = 0; i < 2; i++) {
    const app = await appWithRoute(t)
    for (let j = 0; j < 2; j++) {
      const res = await app.inject({ method: 'POST', url: '/start' })
      t.equal(res.statusCode, 200)
      const { ids: workflowIds } = res.json()
      ids.push((await app.workflows.getStatus(workflowIds[0])).requestId as string)
    }
  }
  t.equal(new Set(ids).size, 4, `four distinct request ids: ${ids.join(' ')}`)
})

/** An app with a real logger writing JSON lines into `lines`, and its own genReqId. */
async function appWithLogger (t: Test, lines: Array<Record<string, unknown>>) {
  const schema = uniqueSchema()
  let n = 0
  const stream = new Writable({ write (chunk, _enc, done) { lines.push(JSON.parse(chunk.toString())); done() } })
  const app = Fastify({ logger: { level: 'info', stream }, genReqId: () => `app-${++n}` })
  await app.register(dbosPlugin, { databaseUrl, logger: silentLogger, workflows: [seeRequestId], schema })
  t.teardown(async () => {
    await app.close()
    await dropSchema(schema)
  })
  app.post('/start', async (req) => {
    req.log.info({ event: 'route.started' })
    return req.workflows.run(seeRequestId, { n: 1 })
  })
  return app
}

t.test('request.log carries the dbos request id next to Fastify\'s reqId, with or without the header', async (t) => {
  const lines: Array<Record<string, unknown>> = []
  const app = await appWithLogger(t, lines)
  const generated = await app.inject({ method: 'POST', url: '/start' })
  const sent = await app.inject({ method: 'POST', url: '/start', headers: { [REQUEST_ID]: 'from-client' } })
  const generatedId = generated.json().requestId
  t.equal(generatedId, generated.headers[REQUEST_ID])
  t.equal(sent.json().requestId, 'from-client')
  const routeLines = lines.filter((l) => l.event === 'route.started')
  t.same(routeLines.map((l) => [l.reqId, l.dbosRequestId]), [['app-1', generatedId], ['app-2', 'from-client']], 'the route\'s log lines')
  const completed = lines.filter((l) => typeof l.responseTime === 'number')
  t.same(completed.map((l) => [l.reqId, l.dbosRequestId]), [['app-1', generatedId], ['app-2', 'from-client']], 'Fastify\'s "request completed" lines')
})

t.test('the request id is echoed on routes that start no workflow', async (t) => {
  const app = await buildApp(t, { workflows: [seeRequestId] })
  app.get('/plain', async (req) => ({ requestId: req.workflows.requestId }))
  const res = await app.inject({ method: 'GET', url: '/plain', headers: { [REQUEST_ID]: 'plain-1' } })
  t.equal(res.headers[REQUEST_ID], 'plain-1')
  t.same(res.json(), { requestId: 'plain-1' })
})

t.test('workflows started outside a request have no request id unless given one', async (t) => {
  const app = await buildApp(t, { workflows: [seeRequestId] })
  await app.ready()
  const h = await app.workflows.start(seeRequestId, { n: 1 })
  t.same(await h.getResult(), { n: 1, requestId: null })
  t.equal((await h.getStatus()).requestId, null)
  t.same(await app.workflows.run(seeRequestId, { n: 2 }, { requestId: 'job-7' }), { n: 2, requestId: 'job-7' })
})

t.test('a recovered workflow still sees its request id', async (t) => {
  const hold = gate()
  let hang = true
  let runs = 0
  const wf = defineWorkflow('recoverRequestId', async (ctx) => {
    runs++
    await ctx.step('maybeHang', async () => { if (hang) await hold.wait() })
    return ctx.requestId
  })
  const { b, workflowId } = await interruptAndResume(t, {
    def: wf, input: undefined, hold, requestId: 'req-before-crash', beforeRestart: () => { hang = false }
  })
  t.equal(await b.getResult(workflowId, { timeoutMs: 15_000 }), 'req-before-crash')
  t.equal(runs, 2, 'the second engine ran it again from its checkpoint')
  t.equal((await b.getStatus(workflowId)).requestId, 'req-before-crash')
  hold.open()
})
