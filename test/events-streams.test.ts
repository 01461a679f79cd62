// ctx.setEvent / getEvent / listEvents and ctx.writeStream / closeStream /
// readStream, with the SSE helper of plugins/sse.ts (docs/Guides/events.md,
// docs/Guides/streams.md).
import { request } from 'node:http'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import { defineWorkflow } from '../lib/index.js'
import { lastEventId, sse } from '../plugins/sse.js'
import { buildApp, buildEngine, pollUntil } from './helpers/db.js'

const events = defineWorkflow('events', async (ctx) => {
  await ctx.setEvent('status', 'one')
  await ctx.recv('go')
  await ctx.setEvent('status', 'two')
  await ctx.setEvent('other', { n: 1 })
  await ctx.setEvent('status', 'three')
  return 'done'
})

/** Sets its event only once told to. */
const lateEvent = defineWorkflow('lateEvent', async (ctx) => {
  await ctx.recv('go')
  await ctx.setEvent('ready', 42)
  await ctx.recv('end')
  return 'done'
})

const noEvent = defineWorkflow('noEvent', async () => 'nothing set')

/** Writes a, b; waits; writes c and closes; then waits again before finishing. */
const streamer = defineWorkflow('streamer', async (ctx) => {
  await ctx.writeStream('s', 'a')
  await ctx.writeStream('s', { b: 2 })
  await ctx.recv('go')
  await ctx.writeStream('s', 'c')
  await ctx.closeStream('s')
  let code: string | undefined
  try { await ctx.writeStream('s', 'too late') } catch (err) { code = (err as { code: string }).code }
  await ctx.recv('end')
  return code
})

/** Writes without closing; the stream ends when the workflow does. */
const unclosed = defineWorkflow('unclosed', async (ctx) => {
  await ctx.writeStream('s', 1)
  await ctx.recv('go')
  await ctx.writeStream('s', 2)
  return 'finished'
})

const all = [events, lateEvent, noEvent, streamer, unclosed]

async function collect (it: AsyncIterable<{ offset: number, value: unknown }>): Promise<[number, unknown][]> {
  const out: [number, unknown][] = []
  for await (const v of it) out.push([v.offset, v.value])
  return out
}

async function rejection (p: Promise<unknown>): Promise<{ code?: string, statusCode?: number }> {
  try { await p } catch (err) { return err as { code?: string } }
  throw new Error('expected a rejection')
}

t.test('setEvent: the latest value wins, listEvents keeps the history', async (t) => {
  const engine = await buildEngine(t, { workflows: all })
  const h = await engine.startWorkflow(events, undefined)
  t.equal(await engine.getEvent(h.workflowId, 'status', { timeoutMs: 20_000 }), 'one', 'while the workflow waits, its event is readable')
  t.equal((await engine.getStatus(h.workflowId)).status, 'PENDING')
  await engine.send(h.workflowId, 'x', { topic: 'go' })
  t.equal(await h.getResult({ timeoutMs: 20_000 }), 'done')
  t.equal(await engine.getEvent(h.workflowId, 'status'), 'three')
  t.same(await engine.getEvent(h.workflowId, 'other'), { n: 1 })
  const history = await engine.listEvents(h.workflowId)
  t.same(history.map((e) => [e.key, e.value]), [['status', 'one'], ['status', 'two'], ['other', { n: 1 }], ['status', 'three']])
  t.ok(history.every((e, i) => i === 0 || e.stepId > history[i - 1]!.stepId), 'in the order they were set')
})

t.test('getEvent waits until the event is set, and returns null at its timeout', async (t) => {
  const engine = await buildEngine(t, { workflows: all })
  const h = await engine.startWorkflow(lateEvent, undefined)
  t.equal(await engine.getEvent(h.workflowId, 'ready', { timeoutMs: 300 }), null, 'not set yet: null at the timeout')
  const waiting = engine.getEvent(h.workflowId, 'ready', { timeoutMs: 20_000 })
  await engine.send(h.workflowId, 'x', { topic: 'go' })
  t.equal(await waiting, 42, 'the waiter got the value once it was set')
  await engine.send(h.workflowId, 'x', { topic: 'end' })
  await h.getResult({ timeoutMs: 20_000 })

  const none = await engine.startWorkflow(noEvent, undefined)
  await none.getResult()
  t.equal(await engine.getEvent(none.workflowId, 'ready', { timeoutMs: 20_000 }), null, 'finished without setting it: null (at once)')
  t.match(await rejection(engine.getEvent('no-such', 'k', { timeoutMs: 100 })), { code: 'DBOS_ERR_WORKFLOW_NOT_FOUND' })
  for (const timeoutMs of [-1, Number.NaN]) {
    t.match(await rejection(engine.getEvent(h.workflowId, 'k', { timeoutMs })), { code: 'DBOS_ERR_INVALID_TIMEOUT', statusCode: 400 })
  }
})

t.test('readStream: values as they come, ends on close; from resumes at an offset', async (t) => {
  const engine = await buildEngine(t, { workflows: all })
  const h = await engine.startWorkflow(streamer, undefined)
  const reading = collect(engine.readStream(h.workflowId, 's'))
  await pollUntil(async () => (await engine.listSteps(h.workflowId)).filter((s) => s.name === 'writeStream').length === 2, { what: 'two values written' })
  await engine.send(h.workflowId, 'x', { topic: 'go' })
  t.same(await reading, [[0, 'a'], [1, { b: 2 }], [2, 'c']], 'every value once, and the iterator ended at the close while the workflow still runs')
  t.equal((await engine.getStatus(h.workflowId)).status, 'PENDING')
  t.same(await collect(engine.readStream(h.workflowId, 's', { from: 1 })), [[1, { b: 2 }], [2, 'c']], 'from an offset')
  t.same(await collect(engine.readStream(h.workflowId, 's', { from: 3 })), [], 'past the last value: ends at once')
  await engine.send(h.workflowId, 'x', { topic: 'end' })
  t.equal(await h.getResult({ timeoutMs: 20_000 }), 'DBOS_ERR_STREAM_CLOSED', 'writing after the close is refused')
  t.match(await rejection(collect(engine.readStream('no-such', 's'))), { code: 'DBOS_ERR_WORKFLOW_NOT_FOUND', statusCode: 404 })
  for (const from of [-1, 1.5, Number.NaN]) {
    t.match(await rejection(collect(engine.readStream(h.workflowId, 's', { from }))), { statusCode: 400 }, `from ${from}`)
  }
  t.same(await collect(engine.readStream(h.workflowId, 'never-written')), [], 'a stream never written ends once the workflow has finished')
})

t.test('readStream ends when the workflow finishes without closing', async (t) => {
  const engine = await buildEngine(t, { workflows: all })
  const h = await engine.startWorkflow(unclosed, undefined)
  const reading = collect(engine.readStream(h.workflowId, 's'))
  await pollUntil(async () => (await engine.listSteps(h.workflowId)).some((s) => s.name === 'writeStream'), { what: 'one value' })
  await engine.send(h.workflowId, 'x', { topic: 'go' })
  t.same(await reading, [[0, 1], [1, 2]])
  t.equal(await h.getResult(), 'finished')
})

function sseRoute (app: Awaited<ReturnType<typeof buildApp>>): void {
  app.get<{ Params: { id: string } }>('/progress/:id', (req, reply) =>
    sse(req, reply, app.workflows.readStream(req.params.id, 's', { from: lastEventId(req) })))
}

t.test('SSE: each value an event with its offset as id; Last-Event-ID resumes after it', async (t) => {
  const app = await buildApp(t, { workflows: all })
  sseRoute(app)
  await app.ready()
  const engine = app.workflows
  const h = await engine.start(streamer, undefined)
  await engine.send(h.workflowId, 'x', { topic: 'go' })
  await pollUntil(async () => (await engine.listSteps(h.workflowId)).some((s) => s.name === 'closeStream'), { what: 'the close' })
  const whole = await app.inject({ url: `/progress/${h.workflowId}` })
  t.equal(whole.headers['content-type'], 'text/event-stream; charset=utf-8')
  t.equal(whole.body, 'id: 0\ndata: "a"\n\nid: 1\ndata: {"b":2}\n\nid: 2\ndata: "c"\n\nevent: end\ndata: {}\n\n')
  const resumed = await app.inject({ url: `/progress/${h.workflowId}`, headers: { 'last-event-id': '1' } })
  t.equal(resumed.body, 'id: 2\ndata: "c"\n\nevent: end\ndata: {}\n\n', 'only what came after event 1')
  await engine.send(h.workflowId, 'x', { topic: 'end' })
})

t.test('SSE over a real connection: events arrive while the workflow runs', async (t) => {
  const app = await buildApp(t, { workflows: all })
  sseRoute(app)
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as AddressInfo
  const h = await app.workflows.start(streamer, undefined)
  let body = ''
  const ended = new Promise<void>((resolve, reject) => {
    request({ port, host: '127.0.0.1', path: `/progress/${h.workflowId}` }, (res) => {
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => { body += chunk })
      res.on('end', resolve)
      res.on('error', reject)
    }).on('error', reject).end()
  })
  await pollUntil(() => body.includes('id: 1\n'), { what: 'the first two events before the workflow goes on' })
  t.notOk(body.includes('id: 2'), 'nothing more yet')
  await app.workflows.send(h.workflowId, 'x', { topic: 'go' })
  await ended
  t.match(body, /id: 2\ndata: "c"\n\nevent: end\n/, 'the rest, then the end')
  await app.workflows.send(h.workflowId, 'x', { topic: 'end' })
})
