// Step and workflow timeouts, cancel, resume and fork
// (docs/Guides/cancel-resume-fork.md). Outcomes are read back from Postgres:
// statuses, stored errors, recorded steps; side effects are counted per
// workflow id to tell a replay from a rerun.
import type postgres from 'postgres'
import t from 'tap'
import { WorkflowClient } from '../lib/client/index.js'
import { defineWorkflow, type Engine } from '../lib/index.js'
import { adminSql, buildEngine, databaseUrl, pollUntil, silentLogger } from './helpers/db.js'
import { Counter, gate, sharedSchema, type Gate } from './helpers/workflows.js'

const counter = new Counter()
const gates = new Map<string, Gate>()
function gateOf (key: string): Gate {
  let g = gates.get(key)
  if (g === undefined) gates.set(key, g = gate())
  return g
}
t.teardown(() => { for (const g of gates.values()) g.open() })

async function rejection (p: Promise<unknown>): Promise<{ code?: string, statusCode?: number }> {
  try {
    await p
  } catch (err) {
    return err as { code?: string, statusCode?: number }
  }
  throw new Error('expected a rejection')
}

function untilAborted (signal: AbortSignal): Promise<unknown> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve(signal.reason)
    signal.addEventListener('abort', () => resolve(signal.reason), { once: true })
  })
}

async function storedErrorCode (sql: postgres.Sql, engine: Engine, id: string): Promise<string | undefined> {
  const [row] = await sql<{ error: string | null }[]>`SELECT error FROM ${sql(engine.options.schema + '.workflows')} WHERE workflow_id = ${id}`
  return row?.error == null ? undefined : JSON.parse(row.error)?.v?.props?.code
}

const stepTimeout = defineWorkflow('stepTimeout', async (ctx) => {
  let reason: unknown
  try {
    await ctx.step('slow', async (signal) => { reason = await untilAborted(signal); return 'never' }, { timeoutMs: 200 })
  } catch (err) {
    return { thrown: (err as { code: string }).code, signalReason: (reason as { code?: string } | undefined)?.code }
  }
  return 'not timed out'
})

/** Step one, then step two waits on a gate (ignoring its signal), then step three. */
const threeSteps = defineWorkflow('threeSteps', async (ctx) => {
  const id = ctx.workflowId
  const a = await ctx.step('one', () => { counter.hit(`${id}:one`); return 1 })
  const b = await ctx.step('two', async () => {
    const n = counter.hit(`${id}:two`)
    if (n === 1) await gateOf(id).wait()
    return 2
  })
  const c = await ctx.step('three', () => { counter.hit(`${id}:three`); return 3 })
  return a + b + c
})

/** A step that waits for its signal: what it was aborted with. */
const abortable = defineWorkflow('abortable', async (ctx) => {
  await ctx.step('wait', async (signal) => {
    const reason = await untilAborted(signal)
    counter.hit(`${ctx.workflowId}:aborted:${(reason as { code?: string }).code}`)
  })
  counter.hit(`${ctx.workflowId}:after`)
  return 'finished'
})

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

const sleeper = defineWorkflow('longSleeper', async (ctx) => {
  await ctx.step('before', () => 1)
  await ctx.sleep(60_000)
  counter.hit(`${ctx.workflowId}:after-sleep`)
  return 'woke'
})

const waitsForever = defineWorkflow('waitsForever', async (ctx) => ctx.recv('never'))

const parent = defineWorkflow('timedParent', async (ctx) => {
  await ctx.startChild(waitsForever, undefined)
  return ctx.recv('never')
})

/** A step held open on a gate until past the deadline; the step after it must not begin. */
const busy = defineWorkflow('busy', async (ctx) => {
  await ctx.step('zero', () => 0)
  await ctx.step('held', () => gateOf(ctx.workflowId).wait())
  await ctx.step('next', () => counter.hit(`${ctx.workflowId}:next`))
  return 'done'
})

/** The definition's default timeout applies when the start gives none. */
const timedByDefault = defineWorkflow('timedByDefault', async (ctx) => ctx.recv('never'), { timeoutMs: 1000 })

const all = [stepTimeout, threeSteps, abortable, failsOnce, paid, sleeper, waitsForever, parent, busy, timedByDefault]

t.test('a step timeout aborts the step\'s signal and fails it with DBOS_ERR_STEP_TIMEOUT', async (t) => {
  const engine = await buildEngine(t, { workflows: all })
  const h = await engine.startWorkflow(stepTimeout, undefined)
  t.same(await h.getResult({ timeoutMs: 20_000 }), { thrown: 'DBOS_ERR_STEP_TIMEOUT', signalReason: 'DBOS_ERR_STEP_TIMEOUT' })
  const [s] = await engine.listSteps(h.workflowId)
  t.match(s, { name: 'slow', error: { code: 'DBOS_ERR_STEP_TIMEOUT' } }, 'the timeout is the step\'s recorded error')
})

t.test('a workflow timeout ends a running workflow CANCELLED with DBOS_ERR_WORKFLOW_TIMEOUT', async (t) => {
  const engine = await buildEngine(t, { workflows: all })
  const sql = adminSql(t)
  const h = await engine.startWorkflow(abortable, undefined, { timeoutMs: 1000 })
  t.match(await rejection(h.getResult({ timeoutMs: 20_000 })), { code: 'DBOS_ERR_WORKFLOW_TIMEOUT' })
  const status = await engine.getStatus(h.workflowId)
  t.equal(status.status, 'CANCELLED')
  t.ok(status.deadlineAt instanceof Date, 'the deadline is stored')
  t.equal(await storedErrorCode(sql, engine, h.workflowId), 'DBOS_ERR_WORKFLOW_TIMEOUT')
  await pollUntil(() => counter.get(`${h.workflowId}:aborted:DBOS_ERR_WORKFLOW_TIMEOUT`) === 1, { what: 'the step\'s signal to abort' })
  t.equal(counter.get(`${h.workflowId}:after`), 0, 'nothing after the step ran')
})

t.test('a workflow timeout ends a workflow suspended in a sleep', async (t) => {
  const engine = await buildEngine(t, { workflows: all, sleepInMemoryMaxMs: 0 })
  const h = await engine.startWorkflow(sleeper, undefined, { timeoutMs: 1500 })
  await pollUntil(async () => (await engine.getStatus(h.workflowId)).wakeAt !== null, { what: 'the sleep to suspend' })
  t.match(await rejection(h.getResult({ timeoutMs: 20_000 })), { code: 'DBOS_ERR_WORKFLOW_TIMEOUT' }, 'cancelled at its deadline, not at the end of the sleep')
  t.equal((await engine.getStatus(h.workflowId)).status, 'CANCELLED')
  t.equal(counter.get(`${h.workflowId}:after-sleep`), 0)
})

t.test('a workflow timeout ends a workflow suspended in recv, and its children', async (t) => {
  const engine = await buildEngine(t, { workflows: all })
  const sql = adminSql(t)
  const h = await engine.startWorkflow(parent, undefined, { timeoutMs: 1500 })
  t.match(await rejection(h.getResult({ timeoutMs: 20_000 })), { code: 'DBOS_ERR_WORKFLOW_TIMEOUT' })
  const children = await engine.list({ parentId: h.workflowId })
  t.equal(children.length, 1)
  t.equal(children[0]!.status, 'CANCELLED', 'the child is cancelled with it')
  // Its own deadline is its parent's: cancelled by either, whichever comes first.
  t.match(await rejection(engine.getResult(children[0]!.workflowId, { timeoutMs: 5000 })), { code: /^DBOS_ERR_WORKFLOW_(CANCELLED|TIMEOUT)$/ })
  const [row] = await sql<{ wake_at: Date | null, waiting_topic: string | null }[]>`
    SELECT wake_at, waiting_topic FROM ${sql(engine.options.schema + '.workflows')} WHERE workflow_id = ${h.workflowId}`
  t.same(row, { wake_at: null, waiting_topic: null }, 'no longer suspended')
})

t.test('a run past its deadline does not begin its next step', async (t) => {
  // The cancellation the deadline timer writes is held up (a FOR SHARE lock
  // on the workflow row blocks its UPDATE, not the run's checkpoints, which
  // take FOR SHARE too): the run itself must see that its deadline passed.
  const engine = await buildEngine(t, { workflows: all })
  const sql = adminSql(t)
  const h = await engine.startWorkflow(busy, undefined, { timeoutMs: 1000 })
  await pollUntil(() => gateOf(h.workflowId).entered > 0, { what: 'the held step' })
  const deadline = (await engine.getStatus(h.workflowId)).deadlineAt!.getTime()
  await sql.begin(async (tx) => {
    await tx`SELECT 1 FROM ${tx(engine.options.schema + '.workflows')} WHERE workflow_id = ${h.workflowId} FOR SHARE`
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, deadline - Date.now()) + 300))
    gateOf(h.workflowId).open()
    await pollUntil(async () => (await engine.listSteps(h.workflowId)).some((s) => s.name === 'held'), { what: 'the held step recorded' })
    await new Promise((resolve) => setTimeout(resolve, 500))
    t.equal(counter.get(`${h.workflowId}:next`), 0, 'the step after the deadline did not begin')
  })
  t.match(await rejection(h.getResult({ timeoutMs: 20_000 })), { code: 'DBOS_ERR_WORKFLOW_TIMEOUT' })
  await pollUntil(async () => (await engine.getStatus(h.workflowId)).status === 'CANCELLED', { what: 'CANCELLED' })
  t.equal(counter.get(`${h.workflowId}:next`), 0, 'nor later')
  t.notOk((await engine.listSteps(h.workflowId)).some((s) => s.name === 'next'))
})

t.test('the deadline survives a restart of the engine', async (t) => {
  const processes = sharedSchema(t, 'deadline')
  const executorId = `deadline-${processes.schema}`
  // The first process sleeps in memory; stopped, it leaves the workflow PENDING mid-sleep.
  const a = await processes.start({ workflows: all, executorId, sleepInMemoryMaxMs: 120_000, shutdownTimeoutMs: 100 })
  const h = await a.startWorkflow(sleeper, undefined, { timeoutMs: 6000 })
  const deadlineAt = (await a.getStatus(h.workflowId)).deadlineAt!
  await pollUntil(async () => (await a.listSteps(h.workflowId)).some((s) => s.name === 'sleep'), { what: 'the run to sleep' })
  await a.stop()
  const sql = adminSql(t)
  const [row] = await sql<{ status: string }[]>`SELECT status FROM ${sql(processes.schema + '.workflows')} WHERE workflow_id = ${h.workflowId}`
  t.equal(row!.status, 'PENDING', 'left PENDING by the stop, before its deadline')
  const b = await processes.start({ workflows: all, executorId })
  t.match(await rejection(b.getResult(h.workflowId, { timeoutMs: 20_000 })), { code: 'DBOS_ERR_WORKFLOW_TIMEOUT' })
  const status = await b.getStatus(h.workflowId)
  t.equal(status.status, 'CANCELLED')
  t.equal(status.deadlineAt?.getTime(), deadlineAt.getTime(), 'the same deadline')
  t.ok(status.completedAt!.getTime() >= deadlineAt.getTime() - 50, 'cancelled at the deadline, not before')
})

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

t.test('the definition\'s default timeout, and bad timeouts refused at the start', async (t) => {
  const engine = await buildEngine(t, { workflows: all })
  const h = await engine.startWorkflow(timedByDefault, undefined)
  t.ok((await engine.getStatus(h.workflowId)).deadlineAt instanceof Date, 'a deadline from the definition')
  t.match(await rejection(h.getResult({ timeoutMs: 20_000 })), { code: 'DBOS_ERR_WORKFLOW_TIMEOUT' })
  for (const timeoutMs of [-1, Number.NaN, 1e300]) {
    t.match(await rejection(engine.startWorkflow(abortable, undefined, { timeoutMs })), { statusCode: 400 }, `timeoutMs ${timeoutMs}`)
  }
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
