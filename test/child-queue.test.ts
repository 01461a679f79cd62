/**
 * ctx.startChild(def, input, { queue }): a workflow fans work out onto a
 * queue, the queue's limits hold for the children, and they stay linked to
 * their parent (the durable way to enqueue from inside a workflow).
 */
import t from 'tap'
import { defineQueue, defineWorkflow } from '../lib/index.js'
import { buildEngine, uniqueSchema } from './helpers/db.js'

t.test('children enqueued by a workflow wait their turn on the queue, linked to their parent', async (t) => {
  let running = 0
  let most = 0
  const child = defineWorkflow('fanChild', async (ctx, n: number) => {
    return ctx.step('work', async () => {
      running++
      most = Math.max(most, running)
      await new Promise((resolve) => setTimeout(resolve, 50))
      running--
      return n * 10
    })
  })
  const one = defineQueue('oneAtATime', { concurrency: 1 })
  const parent = defineWorkflow('fanOut', async (ctx, count: number) => {
    const handles = []
    for (let i = 0; i < count; i++) handles.push(await ctx.startChild(child, i, { queue: one, priority: count - i }))
    const results = []
    for (const h of handles) results.push(await h.getResult())
    return results
  })
  const engine = await buildEngine(t, { schema: uniqueSchema(), workflows: [parent, child], queues: [one] })
  const handle = await engine.startWorkflow(parent, 4)
  t.same(await handle.getResult({ timeoutMs: 30_000 }), [0, 10, 20, 30])
  t.equal(most, 1, 'the queue\'s limit held for the children')
  const children = await engine.list({ parentId: handle.workflowId })
  t.equal(children.length, 4, 'linked to the parent')
  t.ok(children.every((c) => c.queueName === 'oneAtATime' && c.status === 'SUCCESS'), 'each went through the queue')
  t.same(children.map((c) => c.workflowId).sort(), [1, 2, 3, 4].map((i) => `${handle.workflowId}-${i - 1}`).sort(), 'deterministic ids')
})

t.test('a child enqueued on a queue the engine lacks fails its parent with DBOS_ERR_UNKNOWN_QUEUE', async (t) => {
  const child = defineWorkflow('lostChild', async () => 1)
  const parent = defineWorkflow('lostParent', async (ctx) => ctx.runChild(child, undefined, { queue: defineQueue('nowhere') }))
  const engine = await buildEngine(t, { schema: uniqueSchema(), workflows: [parent, child] })
  const handle = await engine.startWorkflow(parent, undefined)
  await t.rejects(handle.getResult({ timeoutMs: 20_000 }), { code: 'DBOS_ERR_UNKNOWN_QUEUE' })
})

t.test('a parent that times out cancels its queued children, waiting or running', async (t) => {
  let release!: () => void
  const gate = new Promise<void>((resolve) => { release = resolve })
  t.teardown(() => release())
  const slow = defineWorkflow('slowQueuedChild', async (ctx) => ctx.step('wait', () => gate))
  const one = defineQueue('oneSlot', { concurrency: 1 })
  const parent = defineWorkflow('impatientParent', async (ctx) => {
    const running = await ctx.startChild(slow, 1, { queue: one })
    const waiting = await ctx.startChild(slow, 2, { queue: one })
    await running.getResult()
    return waiting.workflowId
  }, { timeoutMs: 500 })
  const engine = await buildEngine(t, { schema: uniqueSchema(), workflows: [parent, slow], queues: [one] })
  const handle = await engine.startWorkflow(parent, undefined)
  await t.rejects(handle.getResult({ timeoutMs: 20_000 }), { code: 'DBOS_ERR_WORKFLOW_TIMEOUT' })
  const children = await engine.list({ parentId: handle.workflowId })
  t.equal(children.length, 2)
  t.ok(children.every((c) => c.status === 'CANCELLED'), `both cancelled: ${children.map((c) => c.status).join(', ')}`)
})
