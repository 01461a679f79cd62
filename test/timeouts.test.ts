// Step and workflow timeouts (docs/Guides/cancel-resume-fork.md, Timeouts):
// outcomes read back from Postgres (statuses, stored errors, recorded
// steps); side effects counted per workflow id.
import type postgres from 'postgres'
import t from 'tap'
import { defineWorkflow, type Engine } from '../lib/index.js'
import { adminSql, buildEngine, pollUntil } from './helpers/db.js'
import { sharedSchema } from './helpers/workflows.js'
import { abortable, counter, gateOf, openAllGates, parent, rejection, untilAborted, waitsForever } from './helpers/control-workflows.js'

t.teardown(openAllGates)

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

const sleeper = defineWorkflow('longSleeper', async (ctx) => {
  await ctx.step('before', () => 1)
  await ctx.sleep(60_000)
  counter.hit(`${ctx.workflowId}:after-sleep`)
  return 'woke'
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

const all = [stepTimeout, abortable, sleeper, waitsForever, parent, busy, timedByDefault]

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

t.test('the definition\'s default timeout, and bad timeouts refused at the start', async (t) => {
  const engine = await buildEngine(t, { workflows: all })
  const h = await engine.startWorkflow(timedByDefault, undefined)
  t.ok((await engine.getStatus(h.workflowId)).deadlineAt instanceof Date, 'a deadline from the definition')
  t.match(await rejection(h.getResult({ timeoutMs: 20_000 })), { code: 'DBOS_ERR_WORKFLOW_TIMEOUT' })
  for (const timeoutMs of [-1, Number.NaN, 1e300]) {
    t.match(await rejection(engine.startWorkflow(abortable, undefined, { timeoutMs })), { statusCode: 400 }, `timeoutMs ${timeoutMs}`)
  }
})

t.test('a running step\'s signal aborts when the engine stops (past shutdownTimeoutMs); the workflow stays PENDING', async (t) => {
  const processes = sharedSchema(t, 'stopsig')
  // The stop lets runs finish for shutdownTimeoutMs first, then cuts them short.
  const engine = await processes.start({ workflows: all, shutdownTimeoutMs: 200 })
  const sql = adminSql(t)
  const h = await engine.startWorkflow(abortable, undefined)
  await pollUntil(async () => (await engine.getStatus(h.workflowId)).status === 'PENDING', { what: 'started' })
  await engine.stop()
  t.equal(counter.get(`${h.workflowId}:aborted:DBOS_ERR_ENGINE_STOPPED`), 1, 'the step saw the stop')
  const [row] = await sql<{ status: string }[]>`SELECT status FROM ${sql(processes.schema + '.workflows')} WHERE workflow_id = ${h.workflowId}`
  t.equal(row!.status, 'PENDING', 'left for the next start')
})
