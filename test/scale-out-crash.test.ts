// Several instances on one Postgres (issue 10), as real child processes
// (test/fixtures/cluster-app.js): one is killed (SIGKILL) under load, or
// frozen (SIGSTOP) past its lease and thawed. Side effects and ledger rows
// are counted in tables to tell what ran once from what ran again, and where.
import t from 'tap'
import { deserialize } from '../lib/core/codec.js'
import { pollUntil } from './helpers/db.js'
import { checkExactlyOnce, fleet, startLoad, type Instance } from './helpers/scale-out.js'

const SHORT_LEASE = { HEARTBEAT_MS: '200', LEASE_MS: '1000' }

t.test('three instances, 300 workflows in flight, one killed: each finishes once, only its steps in flight run again', async (t) => {
  const f = await fleet(t, { env: { ...SHORT_LEASE, SLEEP_IN_MEMORY_MAX_MS: '100' } })
  const instances = await Promise.all(['one', 'two', 'three'].map((id) => f.launch({ EXECUTOR_ID: id })))
  const [victim, ...survivors] = instances as [Instance, Instance, Instance]
  const { kinds, started } = await startLoad(instances, 25)
  // Killed mid-way: a third of its step executions have begun.
  await pollUntil(async () => (await f.effects()).filter((e) => e.pid === victim.pid).length >= 100, { what: 'the victim to be under way' })
  t.same((await victim.kill()).signal, 'SIGKILL')
  const pendingAtKill = (await f.workflows()).filter((r) => r.executor_id === victim.executorId && r.status === 'PENDING').length
  t.ok(pendingAtKill > 50, `the victim left ${pendingAtKill} workflows PENDING`)

  await checkExactlyOnce(t, f, kinds, victim)
  const rows = await f.workflows()
  const victims = rows.filter((r) => started.get(victim)!.includes(r.workflow_id))
  t.notOk(rows.some((r) => r.executor_id === victim.executorId && r.status === 'PENDING'), 'nothing is left on the dead executor')
  t.ok(victims.filter((r) => r.executor_id !== victim.executorId).length >= pendingAtKill, 'its PENDING workflows finished on the others')
  for (const survivor of survivors) {
    t.ok(survivor.events('adoption.adopted', (l) => l.from.includes(victim.executorId)).length > 0, `${survivor.executorId} adopted a share`)
  }
  t.ok(rows.every((r) => r.attempts <= 2), 'an adopted workflow counts one attempt more, others none')
})

t.test('a frozen instance (SIGSTOP) past its lease is adopted from; thawed, it writes nothing more', async (t) => {
  const f = await fleet(t, { env: { ...SHORT_LEASE, SLEEP_IN_MEMORY_MAX_MS: '10000' } })
  const [zombie, other] = await Promise.all([f.launch({ EXECUTOR_ID: 'zombie' }), f.launch({ EXECUTOR_ID: 'other' })]) as [Instance, Instance]
  const hold = await f.holdCommits()
  // Each frozen in a known place, whose side effect has landed: any side effect after the thaw is a step begun after it.
  const inStep = await Promise.all([1, 2, 3].map(() => zombie.start('gatedSteps', { gate: 'steps' })))
  const inTx = await zombie.start('gatedTx', { gate: 'tx' })
  // Its COMMIT waits for the test: the transaction holds its workflow row FOR SHARE meanwhile.
  const inCommit = await zombie.start('gatedTx', { entry: 'hold' })
  const inSleep = await zombie.start('sleeper', { stepMs: 0, sleepMs: 2500 })
  const all = [...inStep, inTx, inCommit, inSleep]
  const ranOn = async (id: string, step: string) => (await f.effects()).some((e) => e.workflow_id === id && e.step === step && e.pid === zombie.pid)
  await pollUntil(async () => (await Promise.all(inStep.map((id) => ranOn(id, 'two')))).every(Boolean) && await ranOn(inTx, 'tx') && await hold.waiting() === 1 &&
    (await f.steps()).some((s) => s.workflow_id === inSleep && s.name === 'sleep'), { what: 'the zombie to be in a step, a transaction, a commit and a sleep' })

  zombie.freeze()
  await f.openGate('steps')
  await f.openGate('tx')
  const adopted = await f.finished([...inStep, inTx, inSleep], 30_000)
  t.ok(adopted.every((r) => r.status === 'SUCCESS' && r.executor_id === 'other'), 'its work finished on the other instance')
  t.ok(other.events('adoption.adopted', (l) => l.from.includes('zombie')).length > 0)
  const [committing] = (await f.workflows()).filter((r) => r.workflow_id === inCommit)
  t.match(committing, { status: 'PENDING', executor_id: 'zombie' },
    'the workflow whose transaction is committing was not adopted meanwhile (its row is locked FOR SHARE)')

  // The commit lands under the zombie's epoch; then the workflow is adopted and replays it.
  await hold.release()
  await f.finished([inCommit], 30_000)
  const before = { workflows: await f.workflows(), steps: await f.steps(), effects: await f.effects(), ledger: await f.ledger() }
  t.same(before.ledger.filter((l) => l.workflow_id === inTx).map((l) => l.executor), ['other'], 'the frozen transaction did not commit; the adopter\'s did, once')
  t.same(before.ledger.filter((l) => l.workflow_id === inCommit).map((l) => l.executor), ['zombie'], 'the committing transaction committed once, and was replayed')
  t.same(deserialize(before.workflows.find((r) => r.workflow_id === inTx)!.output!), 1, 'the adopter\'s transaction saw one ledger row')

  // Starts sent to the frozen process are served once it thaws, while it checks what it still owns.
  const startedOnThaw = Promise.all(Array.from({ length: 10 }, () => zombie.start('sequential', { steps: 2, stepMs: 0 })))
  zombie.thaw()
  const fresh = await startedOnThaw
  const silent = await zombie.waitForEvent('executor.silent')
  t.ok(silent.silentMs > 1000, `it knows it was silent for ${silent.silentMs} ms`)
  const stopped = await zombie.waitForEvent('executor.zombie_runs_stopped')
  // Runs whose next write was refused first had ended already (fenced by their epoch).
  t.ok(stopped.workflowIds.length > 0 && stopped.workflowIds.every((id: string) => all.includes(id)), 'it stopped the runs still going, and only those')
  // Each run ends without writing, whatever it was doing when frozen.
  await pollUntil(() => all.every((id) => zombie.events('workflow.fenced', (l) => l.workflowId === id).length === 1), { what: 'every zombie run to end fenced off' })
  t.same(zombie.events('workflow.fenced', (l) => fresh.includes(l.workflowId)), [], 'workflows started as it thawed are not taken for adopted ones')
  const started = await f.finished(fresh, 10_000)
  t.ok(started.every((r) => r.status === 'SUCCESS' && r.executor_id === 'zombie' && r.attempts === 1), 'they run there, once')
  const after = { workflows: await f.workflows(), steps: await f.steps(), effects: await f.effects(), ledger: await f.ledger() }
  const old = <T extends { workflow_id: string }>(rows: T[]): T[] => rows.filter((r) => !fresh.includes(r.workflow_id))
  t.same(old(after.workflows), before.workflows, 'no outcome, status or owner changed')
  t.same(old(after.steps), before.steps, 'no checkpoint was added')
  t.same(after.ledger, before.ledger, 'no ledger row was added')
  t.same(old(after.effects).filter((e) => !before.effects.some((b) => b.seq === e.seq)), [], 'no step of theirs began on the thawed instance')
  t.ok(after.workflows.every((r) => r.status === 'SUCCESS'))
})

t.test('a frozen instance whose work was adopted but not resumed yet: checkpoints of its steps in flight are refused (the adoption bumped the epoch)', async (t) => {
  const f = await fleet(t, { env: SHORT_LEASE })
  // Run once, killed, and recovered on the same id: attempts 2, so the
  // adopter takes them for suspects and resumes them one at a time.
  const first = await f.launch({ EXECUTOR_ID: 'zombie' })
  const ids = await Promise.all([1, 2, 3].map(() => first.start('gatedSteps', { gate: 's', perExecutor: true })))
  const inTwo = async (pid: number) => (await f.effects()).filter((e) => e.step === 'two' && e.pid === pid).length === ids.length
  await pollUntil(() => inTwo(first.pid), { what: 'the first run to be in step two' })
  await first.kill()
  const [zombie, other] = await Promise.all([f.launch({ EXECUTOR_ID: 'zombie' }), f.launch({ EXECUTOR_ID: 'other' })]) as [Instance, Instance]
  await pollUntil(() => inTwo(zombie.pid), { what: 'the recovered runs to be in step two' })

  zombie.freeze()
  await other.waitForEvent('recovery.suspect')
  const before = await f.workflows()
  t.ok(before.every((r) => r.executor_id === 'other'), 'adopted')
  t.ok(before.some((r) => Number(r.attempts) === 2), 'some not resumed yet (their epoch is the adoption\'s)')
  const steps = await f.steps()
  // Its steps in flight end as it thaws and issue their checkpoints at once.
  await f.openGate('s-zombie')
  zombie.thaw()
  await pollUntil(() => ids.every((id) => zombie.events('workflow.fenced', (l) => l.workflowId === id).length === 1), { what: 'every thawed run to end fenced off' })
  t.same(await f.steps(), steps, 'no checkpoint of the thawed instance landed')

  await f.openGate('s-other')
  const rows = await f.finished(ids)
  t.ok(rows.every((r) => r.status === 'SUCCESS' && r.executor_id === 'other'))
  const effects = await f.effects()
  t.same(ids.map((id) => effects.filter((e) => e.workflow_id === id && e.step === 'three').map((e) => e.executor)), ids.map(() => ['other']), 'each last step ran once, on the adopter')
})
