// Several engines on one schema, in one process: executor ids, executors(),
// adoption after a graceful stop, and app versions. (Crashes and zombies need
// real processes: see scale-out.test.ts.)
import t from 'tap'
import { defineWorkflow, ExecutorIdInUseError, WorkflowNotPendingError, type Engine } from '../lib/index.js'
import { pollUntil } from './helpers/db.js'
import { gate, sharedSchema } from './helpers/workflows.js'

const fast = { heartbeatMs: 50, leaseMs: 200 }

function holding (name: string, hold: { wait (): Promise<void> }) {
  return defineWorkflow(name, async (ctx, n: number) => {
    await ctx.step('before', () => n)
    await ctx.step('hold', () => hold.wait())
    return ctx.step('after', () => n * 2)
  })
}

t.test('executors() lists the live instances, with heartbeat age and the PENDING workflows each owns', async (t) => {
  const processes = sharedSchema(t)
  const hold = gate()
  const wf = holding('exec-list', hold)
  const a = await processes.start({ ...fast, workflows: [wf], executorId: 'a' })
  const b = await processes.start({ ...fast, workflows: [wf], executorId: 'b', appVersion: 'v7' })
  await a.startWorkflow(wf, 1)
  await pollUntil(() => hold.entered > 0, { what: 'the workflow to hold' })
  const list = await b.executors()
  t.same(list.map((e) => [e.executorId, e.alive, e.self, e.appVersion, e.pendingWorkflows]),
    [['a', true, false, null, 1], ['b', true, true, 'v7', 0]])
  t.ok(list.every((e) => e.heartbeatAgeMs >= 0 && e.heartbeatAgeMs < 2000 && e.leaseMs === 200))
  hold.open()
})

t.test('a graceful stop hands its unfinished work to a live instance at once', async (t) => {
  const processes = sharedSchema(t)
  const hold = gate()
  const wf = holding('exec-handoff', hold)
  // A long lease: only the hand-off can explain an adoption within seconds.
  const slow = { heartbeatMs: 100, leaseMs: 60_000 }
  const a = await processes.start({ ...slow, workflows: [wf], executorId: 'a', shutdownTimeoutMs: 0 })
  const b = await processes.start({ ...slow, workflows: [wf], executorId: 'b' })
  const handle = await a.startWorkflow(wf, 21)
  await pollUntil(() => hold.entered > 0, { what: 'the workflow to hold' })
  // b started a moment ago: a stopped executor's work is adopted at once all the same.
  await a.stop()
  hold.open()
  t.equal(await b.getResult(handle.workflowId, { timeoutMs: 10_000 }), 42, 'finished on b')
  const status = await b.getStatus(handle.workflowId)
  t.equal(status.executorId, 'b')
  t.equal(status.attempts, 1, 'the run a graceful stop cut short is not counted (the hand-back took it back); the adopter\'s run is')
  const stopped = (await b.executors()).find((e) => e.executorId === 'a')
  t.ok(stopped?.stoppedAt instanceof Date && stopped.alive === false, 'a is listed as stopped')
})

t.test('a chosen executor id held by a live instance is refused; a restart after a graceful stop takes it at once', async (t) => {
  const processes = sharedSchema(t)
  const a = await processes.start({ ...fast, workflows: [], executorId: 'same' })
  const started = Date.now()
  await t.rejects(processes.start({ ...fast, workflows: [], executorId: 'same' }), { code: ExecutorIdInUseError.code })
  t.ok(Date.now() - started >= fast.leaseMs, 'it waited a lease for the holder to go silent first')
  await a.stop()
  const again = await processes.start({ ...fast, workflows: [], executorId: 'same' })
  t.equal(again.executorId, 'same')
})

t.test('the default executor id held by a live instance is replaced by a fresh one', async (t) => {
  const saved = process.env.DBOS_EXECUTOR_ID
  delete process.env.DBOS_EXECUTOR_ID
  t.teardown(() => { if (saved !== undefined) process.env.DBOS_EXECUTOR_ID = saved })
  const processes = sharedSchema(t)
  const a = await processes.start({ ...fast, workflows: [] })
  const b = await processes.start({ ...fast, workflows: [] })
  t.not(a.executorId, b.executorId)
  t.ok(b.executorId.startsWith(`${a.executorId}:`), `${b.executorId} is the default id with a suffix`)
  t.same((await a.executors()).filter((e) => e.alive).length, 2, 'two live owners, two ids')
})

t.test('app versions: a pinned instance leaves other versions alone; setAppVersion moves a workflow to it', async (t) => {
  const processes = sharedSchema(t)
  const hold = gate()
  const wf = holding('exec-versions', hold)
  const v1 = await processes.start({ ...fast, workflows: [wf], executorId: 'old', appVersion: 'v1', shutdownTimeoutMs: 0 })
  const v2 = await processes.start({ ...fast, workflows: [wf], executorId: 'new', appVersion: 'v2' })
  const handle = await v1.startWorkflow(wf, 5)
  await pollUntil(() => hold.entered > 0, { what: 'the workflow to hold' })
  t.equal((await v1.getStatus(handle.workflowId)).appVersion, 'v1')
  await waitSteady(v2)
  await v1.stop()
  hold.open()
  // v2 beats many times while the v1 workflow waits: it must not take it.
  const beats = await beatsOf(v2, 10)
  t.ok(beats >= 10)
  const left = await v2.list({ appVersion: 'v1', status: 'PENDING' })
  t.same(left.map((w) => [w.workflowId, w.executorId]), [[handle.workflowId, 'old']], 'listable, still with its dead owner')
  await v2.setAppVersion(handle.workflowId, 'v2')
  t.equal(await v2.getResult(handle.workflowId, { timeoutMs: 10_000 }), 10, 'adopted and finished by the v2 instance')
  t.equal((await v2.getStatus(handle.workflowId)).appVersion, 'v2')
  await t.rejects(v2.setAppVersion(handle.workflowId, 'v3'), { code: WorkflowNotPendingError.code })
  await t.rejects(v2.setAppVersion('nope', 'v3'), { code: WorkflowNotPendingError.code })
})

/** Waits until `engine` has beaten for one lease since it started (it adopts only then). */
async function waitSteady (engine: Engine): Promise<void> {
  const lease = engine.options.leaseMs
  const since = Date.now()
  await pollUntil(() => Date.now() - since > lease + engine.options.heartbeatMs, { what: 'a lease of steady beats' })
}

/** Counts `n` more heartbeats of `engine`, by its row's heartbeat_at changing. */
async function beatsOf (engine: Engine, n: number): Promise<number> {
  let seen = 0
  let last = (await engine.executors()).find((e) => e.self)!.heartbeatAt.getTime()
  await pollUntil(async () => {
    const at = (await engine.executors()).find((e) => e.self)!.heartbeatAt.getTime()
    if (at !== last) { seen++; last = at }
    return seen >= n
  }, { what: `${n} heartbeats`, intervalMs: 10 })
  return seen
}
