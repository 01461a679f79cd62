// The database goes away while the living adopt a dead instance's work
// (issue 10): nothing is lost or run twice. A Postgres restart, on an
// embedded Postgres of the test's own (never the shared test database),
// stopped and started again on the same port; and an adoption whose answer
// is lost (a TCP proxy drops it). The instances are real child processes
// (test/fixtures/cluster-app.js).
import t from 'tap'
import { startCluster } from './helpers/cluster.js'
import { pollUntil } from './helpers/db.js'
import { startProxy } from './helpers/proxy.js'
import { checkExactlyOnce, fleet, startLoad, type Instance } from './helpers/scale-out.js'

t.test('three instances, one killed, Postgres restarted as the others adopt its work: every workflow finishes once', async (t) => {
  const cluster = await startCluster(t)
  const f = await fleet(t, { url: cluster.url, env: { HEARTBEAT_MS: '200', LEASE_MS: '1000', SLEEP_IN_MEMORY_MAX_MS: '100' } })
  const instances = await Promise.all(['one', 'two', 'three'].map((id) => f.launch({ EXECUTOR_ID: id })))
  const [victim, ...survivors] = instances as [Instance, Instance, Instance]
  const { kinds } = await startLoad(instances, 15)
  await pollUntil(async () => (await f.effects()).filter((e) => e.pid === victim.pid).length >= 60, { what: 'the victim to be under way' })
  await victim.kill()
  const orphaned = (await f.workflows()).filter((r) => r.executor_id === victim.executorId && r.status === 'PENDING').map((r) => r.workflow_id)

  // The first batch is adopted; the database goes away while the adopters
  // resume it and take more, for longer than a lease: when it is back,
  // every heartbeat is stale, and the survivors must not take each other's work.
  await pollUntil(() => survivors.some((s) => s.events('adoption.adopted').length > 0), { intervalMs: 5, what: 'adoption to begin' })
  const downAt = Date.now()
  await cluster.stop()
  const adoptedBefore = survivors.flatMap((s) => s.events('adoption.adopted')).reduce((n, l) => n + (l.count as number), 0)
  await pollUntil(() => Date.now() - downAt > 1500 && survivors.every((s) => s.events('database.unreachable').length > 0),
    { what: 'the survivors to find the database gone, for longer than a lease' })
  await cluster.start()
  t.comment(`Postgres was down for ${Date.now() - downAt} ms`)
  t.ok(adoptedBefore > 0, `${adoptedBefore} workflows were adopted before the restart`)

  // Not a bound on lateness: now and then a pool connection of postgres.js
  // 3.4.9 stays stuck for tens of seconds after a restart (a cancelled write
  // timer it never resets: LanternOps/breeze#3225), and its instance's
  // checkpoints wait meanwhile.
  await checkExactlyOnce(t, f, kinds, victim, { lateWakeMs: 120_000, timeoutMs: 120_000 })
  t.comment(`all finished ${Date.now() - downAt} ms after it went down`)
  const rows = await f.workflows()
  t.ok(orphaned.length > 0 && rows.filter((r) => orphaned.includes(r.workflow_id)).every((r) => r.executor_id !== victim.executorId),
    `the ${orphaned.length} workflows it left finished on the others`)
  t.ok(survivors.every((s) => s.events('executor.silent').length > 0), 'each survivor knew it had been silent past its lease')
})

t.test('an adoption that committed although its answer was lost: the adopter still resumes what it took', async (t) => {
  const f = await fleet(t, { env: { HEARTBEAT_MS: '200', LEASE_MS: '1000' } })
  const victim = await f.launch({ EXECUTOR_ID: 'victim' })
  // The adopter reaches the database through a proxy that can lose its answers.
  const proxy = await startProxy(t, f.url)
  const adopter = await f.launch({ EXECUTOR_ID: 'adopter', DATABASE_URL: proxy.url })
  const ids = await Promise.all([1, 2, 3, 4, 5].map(() => victim.start('gatedSteps', { gate: 'g' })))
  await pollUntil(async () => (await f.effects()).filter((e) => e.step === 'two').length === 5, { what: 'every workflow to be in its second step' })
  const held = await f.holdAdoptionsBy('adopter')
  await victim.kill()

  // The adoption's COMMIT waits for the test; its answer is then dropped and its connection cut.
  await pollUntil(async () => await held.waiting() > 0, { what: 'the adoption to be committing' })
  proxy.dropReplies()
  await held.release()
  await pollUntil(async () => (await f.workflows()).every((r) => r.executor_id === 'adopter'), { what: 'the adoption to commit' })
  proxy.cutAll()
  await adopter.waitForEvent('adoption.failed')

  await f.openGate('g')
  const rows = await f.finished(ids, 15_000)
  t.ok(rows.every((r) => r.status === 'SUCCESS' && r.executor_id === 'adopter'), 'the adopter ran what it took')
  const effects = await f.effects()
  t.same(ids.map((id) => effects.filter((e) => e.workflow_id === id && e.step === 'three').length), ids.map(() => 1), 'each finished once')
})
