// cancel, resume and fork (docs/Guides/cancel-resume-fork.md): outcomes
// read back from Postgres (statuses, recorded steps); side effects counted
// per workflow id to tell a replay from a rerun.
import t from 'tap'
import { WorkflowClient } from '../lib/client/index.js'
import { defineWorkflow } from '../lib/index.js'
import { adminSql, buildEngine, databaseUrl, pollUntil, silentLogger } from './helpers/db.js'
import { sharedSchema } from './helpers/workflows.js'
import { abortable, counter, gateOf, openAllGates, parent, rejection, threeSteps, waitsForever } from './helpers/control-workflows.js'

t.teardown(openAllGates)

/** Fails its second step on the first run. */
const failsOnce = defineWorkflow('failsOnce', async (ctx) => {
  const id = ctx.workflowId
  await ctx.step('one', () => counter.hit(`${id}:one`))
  await ctx.step('two', () => { if (counter.hit(`${id}:two`) === 1) throw new Error('first time'); return 'ok' })
  return ctx.step('three', () => counter.hit(`${id}:three`))
})

/** Three paid steps, each counted; the result records which run did each. */
const paid = defineWorkflow('paid', async (ctx) => {
  const out: string[] = []
  for (const name of ['a', 'b', 'c']) out.push(await ctx.step(name, () => { counter.hit(`paid:${name}`); return `${name}@${ctx.workflowId}` }))
  return out
})

const all = [threeSteps, abortable, failsOnce, paid, waitsForever, parent]

t.test('cancel: waiters get 409 at once while the step still runs; nothing after it runs', async (t) => {
  const engine = await buildEngine(t, { workflows: all })
  const h = await engine.startWorkflow(threeSteps, undefined)
  await pollUntil(() => gateOf(h.workflowId).entered > 0, { what: 'step two to begin' })
  const result = rejection(h.getResult({ timeoutMs: 10_000 }))
  await engine.cancel(h.workflowId)
  t.match(await result, { code: 'DBOS_ERR_WORKFLOW_CANCELLED', statusCode: 409 }, 'before the stubborn step returned')
  t.equal((await engine.getStatus(h.workflowId)).status, 'CANCELLED')
  gateOf(h.workflowId).open()
  await pollUntil(() => engine.listSteps(h.workflowId).then((s) => s.length === 1), { what: 'the steps' })
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.same((await engine.listSteps(h.workflowId)).map((s) => s.name), ['one'], 'step two\'s result is not recorded')
  t.equal(counter.get(`${h.workflowId}:three`), 0, 'step three never ran')
  t.equal((await engine.getStatus(h.workflowId)).status, 'CANCELLED', 'still CANCELLED once the run ended')
  // A finished workflow is left as it is; unknown is 404.
  await engine.cancel(h.workflowId)
  t.match(await rejection(engine.cancel('nope')), { code: 'DBOS_ERR_WORKFLOW_NOT_FOUND', statusCode: 404 })
})

t.test('cancel from another engine and from a WorkflowClient on the same schema', async (t) => {
  const processes = sharedSchema(t, 'cancel')
  const owner = await processes.start({ workflows: all, executorId: 'owner' })
  const other = await processes.start({ workflows: all, executorId: 'other' })
  const client = new WorkflowClient({ databaseUrl, schema: processes.schema, logger: silentLogger })
  t.teardown(() => client.close())
  for (const [who, control] of [['engine', other], ['client', client]] as const) {
    const h = await owner.startWorkflow(abortable, undefined)
    await pollUntil(async () => (await owner.getStatus(h.workflowId)).status === 'PENDING', { what: 'started' })
    const result = rejection(h.getResult({ timeoutMs: 15_000 }))
    await control.cancel(h.workflowId)
    t.match(await result, { code: 'DBOS_ERR_WORKFLOW_CANCELLED' }, `the owner's waiter sees the ${who}'s cancel`)
    await pollUntil(() => counter.get(`${h.workflowId}:aborted:DBOS_ERR_WORKFLOW_CANCELLED`) === 1, { what: `the owner's step signal to abort (${who})` })
    t.equal(counter.get(`${h.workflowId}:after`), 0)
    t.equal((await other.getStatus(h.workflowId)).status, 'CANCELLED')
    // A run stuck in a step that ignores its signal: the owner's waiters learn of the cancel at once anyway.
    const stuck = await owner.startWorkflow(threeSteps, undefined)
    await pollUntil(() => gateOf(stuck.workflowId).entered > 0, { what: 'step two to begin' })
    const waiting = rejection(stuck.getResult({ timeoutMs: 10_000 }))
    await control.cancel(stuck.workflowId)
    t.match(await waiting, { code: 'DBOS_ERR_WORKFLOW_CANCELLED' }, `the ${who}'s cancel reached the owner's waiter while the step still runs`)
    gateOf(stuck.workflowId).open()
  }
})

t.test('resume continues a CANCELLED workflow from its last completed step', async (t) => {
  const engine = await buildEngine(t, { workflows: all })
  const h = await engine.startWorkflow(threeSteps, undefined)
  await pollUntil(() => gateOf(h.workflowId).entered > 0, { what: 'step two to begin' })
  await engine.cancel(h.workflowId)
  gateOf(h.workflowId).open()
  await pollUntil(() => engine.listSteps(h.workflowId).then((s) => s.length === 1), { what: 'step one recorded' })
  const resumed = await engine.resume(h.workflowId)
  t.equal(await resumed.getResult({ timeoutMs: 20_000 }), 6)
  t.equal(counter.get(`${h.workflowId}:one`), 1, 'step one replayed')
  t.equal(counter.get(`${h.workflowId}:two`), 2, 'step two ran again')
  t.equal(counter.get(`${h.workflowId}:three`), 1)
  t.match(await rejection(engine.resume(h.workflowId)), { code: 'DBOS_ERR_WORKFLOW_NOT_RESUMABLE', statusCode: 409 })
})

t.test('resume continues an ERROR workflow from the failed step', async (t) => {
  const engine = await buildEngine(t, { workflows: all })
  const h = await engine.startWorkflow(failsOnce, undefined)
  t.match(await rejection(h.getResult({ timeoutMs: 20_000 })), { message: /first time/ })
  t.equal((await engine.getStatus(h.workflowId)).status, 'ERROR')
  const resumed = await engine.resume(h.workflowId)
  t.equal(await resumed.getResult({ timeoutMs: 20_000 }), 1)
  t.equal(counter.get(`${h.workflowId}:one`), 1, 'step one replayed')
  t.equal(counter.get(`${h.workflowId}:two`), 2, 'the failed step ran again')
  t.same((await engine.listSteps(h.workflowId)).map((s) => [s.name, s.error === undefined]), [['one', true], ['two', true], ['three', true]])
})

t.test('fork reuses the steps before fromStep and reruns the rest', async (t) => {
  const engine = await buildEngine(t, { workflows: all })
  const original = await engine.startWorkflow(paid, undefined)
  const first = await original.getResult({ timeoutMs: 20_000 }) as string[]
  const before = ['a', 'b', 'c'].map((n) => counter.get(`paid:${n}`))
  const forked = await engine.fork(original.workflowId, { fromStep: 2, workflowId: 'the-fork' })
  t.equal(forked.workflowId, 'the-fork')
  const again = await forked.getResult({ timeoutMs: 20_000 }) as string[]
  t.same(again, [first[0], first[1], 'c@the-fork'], 'a and b are the original\'s recorded results, c ran in the fork')
  t.same(['a', 'b', 'c'].map((n) => counter.get(`paid:${n}`)), [before[0], before[1], before[2]! + 1], 'only c was paid again')
  t.same(await engine.getResult(original.workflowId), first, 'the original is unchanged')

  const whole = await engine.fork(original.workflowId, { fromStep: 3 })
  t.same(await whole.getResult({ timeoutMs: 20_000 }), first, 'one past the last step: everything reused')
  t.match(await rejection(engine.fork(original.workflowId, { fromStep: 4 })), { code: 'DBOS_ERR_INVALID_FORK_STEP', statusCode: 400 })
  t.match(await rejection(engine.fork(original.workflowId, { fromStep: -1 })), { statusCode: 400 })
  t.match(await rejection(engine.fork('no-such', { fromStep: 0 })), { code: 'DBOS_ERR_WORKFLOW_NOT_FOUND', statusCode: 404 })
})

t.test('cancelling a parent cancels its children', async (t) => {
  const engine = await buildEngine(t, { workflows: all })
  const h = await engine.startWorkflow(parent, undefined)
  const child = `${h.workflowId}-0`
  await pollUntil(async () => (await engine.list({ parentId: h.workflowId })).length === 1, { what: 'the child' })
  await engine.cancel(h.workflowId)
  t.match(await rejection(engine.getResult(child, { timeoutMs: 10_000 })), { code: 'DBOS_ERR_WORKFLOW_CANCELLED', statusCode: 409 })
  t.same((await engine.list({ parentId: h.workflowId })).map((w) => w.status), ['CANCELLED'])
  t.equal((await engine.getStatus(h.workflowId)).status, 'CANCELLED')
})

t.test('a workflow cancelled while suspended in recv, resumed, receives a message sent after', async (t) => {
  const processes = sharedSchema(t, 'cxrecv')
  const owner = await processes.start({ workflows: all, executorId: 'owner', sleepInMemoryMaxMs: 0 })
  const other = await processes.start({ workflows: all, executorId: 'other', sleepInMemoryMaxMs: 0 })
  const h = await owner.startWorkflow(waitsForever, undefined)
  await pollUntil(async () => (await owner.getStatus(h.workflowId)).wakeAt !== null, { what: 'the recv to suspend' })
  const result = rejection(owner.getResult(h.workflowId, { timeoutMs: 15_000 }))
  await other.cancel(h.workflowId)
  t.match(await result, { code: 'DBOS_ERR_WORKFLOW_CANCELLED' })
  t.match(await rejection(other.send(h.workflowId, 'too late', { topic: 'never' })), { code: 'DBOS_ERR_WORKFLOW_FINISHED' }, 'a cancelled workflow takes no messages')
  const resumed = await other.resume(h.workflowId)
  await pollUntil(async () => (await other.getStatus(h.workflowId)).wakeAt !== null, { what: 'the resumed recv to suspend again' })
  await owner.send(h.workflowId, 'after resume', { topic: 'never' })
  t.equal(await resumed.getResult({ timeoutMs: 20_000 }), 'after resume')
  t.equal((await owner.getStatus(h.workflowId)).executorId, 'other', 'resumed where resume was called')
})

t.test('resume continues a MAX_RECOVERY_ATTEMPTS_EXCEEDED workflow from its last completed step', async (t) => {
  const engine = await buildEngine(t, { workflows: all })
  const sql = adminSql(t)
  const h = await engine.startWorkflow(threeSteps, undefined)
  await pollUntil(() => gateOf(h.workflowId).entered > 0, { what: 'step two to begin' })
  await engine.cancel(h.workflowId)
  gateOf(h.workflowId).open()
  await pollUntil(() => engine.listSteps(h.workflowId).then((s) => s.length === 1), { what: 'step one recorded' })
  // As recovery leaves a workflow that crashed too often.
  await sql`UPDATE ${sql(engine.options.schema + '.workflows')} SET status = 'MAX_RECOVERY_ATTEMPTS_EXCEEDED', attempts = 5 WHERE workflow_id = ${h.workflowId}`
  const resumed = await engine.resume(h.workflowId)
  t.equal(await resumed.getResult({ timeoutMs: 20_000 }), 6)
  t.equal(counter.get(`${h.workflowId}:one`), 1, 'step one replayed')
  t.equal((await engine.getStatus(h.workflowId)).attempts, 1, 'a fresh attempts count')
})

