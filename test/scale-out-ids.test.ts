// Executor ids across real processes (issue 10), on the default heartbeat
// and lease (1 s, 3 s): one id is held by one live process at a time; a
// process restarted with its id after kill -9 waits out its own old lease
// and resumes its work; and ctx.patched lets the restarted, newer code
// finish runs of the old code. test/fixtures/cluster-app.js in child processes.
import t, { type Test } from 'tap'
import { deserialize } from '../lib/core/codec.js'
import { request } from './fixtures/child.js'
import { pollUntil } from './helpers/db.js'
import { fleet, type Fleet } from './helpers/scale-out.js'

const LEASE_MS = 3000
const HEARTBEAT_MS = 1000

/** Samples who holds each id (executor row and its instance nonce) until `until` returns something. */
async function watchHolders<T> (f: Fleet, until: () => T | undefined): Promise<{ result: T, holders: Set<string> }> {
  const holders = new Set<string>()
  const result = await pollUntil(async () => {
    for (const e of await f.executors()) holders.add(`${e.executor_id} ${e.instance}`)
    return until()
  }, { timeoutMs: 30_000, intervalMs: 100, what: 'the second process to settle' })
  return { result: result as T, holders }
}

async function chosenId (t: Test): Promise<void> {
  const f = await fleet(t)
  const first = await f.launch({ EXECUTOR_ID: 'api-1' })
  const [held] = await f.executors()
  const spawnedAt = Date.now()
  const second = f.spawn({ EXECUTOR_ID: 'api-1' })
  const { result: failure, holders } = await watchHolders(f, () => second.lines.find((l) => l.fixture === 'error'))
  t.equal(failure.code, 'DBOS_ERR_EXECUTOR_ID_IN_USE', 'chosen id: the second process fails to start')
  t.equal((await second.exited).code, 1)
  t.ok(Date.now() - spawnedAt >= LEASE_MS, `it gave up after ${Date.now() - spawnedAt} ms, not before the lease`)
  t.same([...holders], [`api-1 ${held!.instance}`], 'chosen id: the first process held it throughout')

  const id = await first.start('sequential', { steps: 2, stepMs: 0 })
  t.match((await f.finished([id]))[0], { status: 'SUCCESS', executor_id: 'api-1' }, 'the first process runs on')
  const seen = (await first.get('/executors')).body
  t.match(seen, [{ executorId: 'api-1', alive: true, self: true, stoppedAt: null, leaseMs: LEASE_MS }])
}

async function defaultId (t: Test): Promise<void> {
  const f = await fleet(t)
  const first = await f.launch()
  const [held] = await f.executors()
  t.equal(held!.executor_id, first.executorId)
  const second = f.spawn()
  const { result: ready, holders } = await watchHolders(f, () => second.lines.find((l) => l.fixture === 'listening' || l.fixture === 'error'))
  t.equal(ready.fixture, 'listening', 'default id: the second process starts')
  const taken = second.lines.find((l) => l.event === 'executor.id_taken')
  t.match(taken, { executorId: first.executorId, instead: ready.executorId }, 'default id: it logs that the id was taken, and takes another')
  t.ok(ready.executorId.startsWith(`${first.executorId}:`), `the fresh id ${ready.executorId} names the default one`)
  t.same([...holders].filter((h) => h.startsWith(`${first.executorId} `)), [`${first.executorId} ${held!.instance}`],
    'default id: the first process held it throughout')

  const port = ready.port as number
  const ids = await Promise.all([
    first.start('sequential', { steps: 2, stepMs: 0 }),
    request(port, 'POST', '/start', { name: 'sequential', input: { steps: 2, stepMs: 0 } }).then((r) => r.body.workflowId as string)
  ])
  const rows = await f.finished(ids)
  t.same(rows.map((r) => [r.workflow_id, r.status, r.executor_id]).sort(),
    [[ids[0], 'SUCCESS', first.executorId], [ids[1], 'SUCCESS', ready.executorId]].sort(), 'both run workflows, each under its own id')
  const seen = (await first.get('/executors')).body
  t.same(seen.map((e: any) => [e.executorId, e.alive, e.self]).sort(),
    [[first.executorId, true, true], [ready.executorId, true, false]].sort(), 'two live executors, one id each')
}

t.test('one executor id, two processes: a chosen id fails the second (DBOS_ERR_EXECUTOR_ID_IN_USE); the default id gives it a fresh one; never two live holders', async (t) => {
  // Both wait out a lease; side by side, on schemas of their own.
  await Promise.all([chosenId(t), defaultId(t)])
})

t.test('kill -9, then the same executor id on new code: it waits out its old lease, resumes its work, and ctx.patched keeps old runs on their path', async (t) => {
  const f = await fleet(t)
  const old = await f.launch({ EXECUTOR_ID: 'api', CODE_VERSION: '1' })
  // On old code: one run is past the point where new code calls patched (in
  // step c), one is before it (in step a).
  const past = await old.start('evolving', { gateC: 'c' })
  const before = await old.start('evolving', { gateA: 'a' })
  const ran = async (id: string, step: string) => (await f.effects()).some((e) => e.workflow_id === id && e.step === step)
  await pollUntil(async () => await ran(past, 'c') && await ran(before, 'a'), { what: 'both runs to be in their gated step' })
  await old.kill()
  const killedAt = Date.now()
  await f.openGate('a')
  await f.openGate('c')

  const next = await f.launch({ EXECUTOR_ID: 'api', CODE_VERSION: '2' })
  t.equal(next.executorId, 'api', 'it took its own id back')
  const resumed = await next.waitForEvent('workflow.resumed', (l) => l.workflowId === past)
  t.ok(resumed.time - killedAt < LEASE_MS + HEARTBEAT_MS + 2000, `it resumed its work ${resumed.time - killedAt} ms after the kill (lease ${LEASE_MS} ms)`)
  const fresh = await next.start('evolving', {})
  const rows = Object.fromEntries((await f.finished([past, before, fresh])).map((r) => [r.workflow_id, r]))
  const steps = await f.steps()
  const recorded = (id: string) => steps.filter((s) => s.workflow_id === id).map((s) => s.name)
  const effects = await f.effects()
  const count = (id: string, step: string) => effects.filter((e) => e.workflow_id === id && e.step === step).length

  t.match(rows[past], { status: 'SUCCESS', executor_id: 'api', attempts: 2 }, 'past the patch point: no DBOS_ERR_NONDETERMINISM')
  t.same(deserialize(rows[past]!.output!), { codeVersion: 2, patched: false }, 'patched() was false for it')
  t.same(recorded(past), ['a', 'b', 'c'], 'its old path replayed, with no marker')
  t.same([count(past, 'a'), count(past, 'b'), count(past, 'extra'), count(past, 'c')], [1, 1, 0, 2], 'the new step did not run; only the step in flight ran again')

  t.match(rows[before], { status: 'SUCCESS', executor_id: 'api', attempts: 2 })
  t.same(deserialize(rows[before]!.output!), { codeVersion: 2, patched: true }, 'before the patch point: patched() was true')
  t.same(recorded(before), ['a', 'patched:extra', 'extra', 'b', 'c'])
  t.same([count(before, 'a'), count(before, 'extra'), count(before, 'b')], [2, 1, 1])

  t.same(deserialize(rows[fresh]!.output!), { codeVersion: 2, patched: true }, 'started on new code: patched() was true')
  t.same(recorded(fresh), ['a', 'patched:extra', 'extra', 'b', 'c'])
})
