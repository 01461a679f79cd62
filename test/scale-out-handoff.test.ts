// Work moving between instances on purpose (issue 10): a graceful stop
// hands its unfinished workflows to the living at once, without waiting for
// its lease; appVersion keeps workflows on instances of their version, and
// setAppVersion moves one. Real child processes (test/fixtures/cluster-app.js).
import t from 'tap'
import { deserialize } from '../lib/core/codec.js'
import { pollUntil } from './helpers/db.js'
import { checkExactlyOnce, fleet, startLoad, type Instance } from './helpers/scale-out.js'

t.test('a graceful stop (SIGTERM) of one of three under load: its unfinished workflows finish on the others at once, not after its lease', async (t) => {
  // A lease of 30 s and beats 5 s apart: only the hand-off (marked stopped,
  // and announced) can explain adoption within a second or two.
  const leaseMs = 30_000
  const f = await fleet(t, { env: { HEARTBEAT_MS: '5000', LEASE_MS: String(leaseMs), SLEEP_IN_MEMORY_MAX_MS: '100', SHUTDOWN_TIMEOUT_MS: '300' } })
  const instances = await Promise.all(['one', 'two', 'three'].map((id) => f.launch({ EXECUTOR_ID: id })))
  const [leaving, ...staying] = instances as [Instance, Instance, Instance]
  const { kinds, started } = await startLoad(instances, 15)
  await pollUntil(async () => (await f.effects()).filter((e) => e.pid === leaving.pid).length >= 40, { what: 'the leaving instance to be under way' })

  leaving.terminate()
  const closing = await leaving.child.waitForLine((l) => l.fixture === 'closing', 'the stop to begin')
  t.same(await leaving.child.exited, { code: 0, signal: null }, 'it stopped gracefully')
  const [row] = (await f.executors()).filter((e) => e.executor_id === 'one')
  t.ok(row?.stopped_at instanceof Date, 'it marked itself stopped')

  // Sleepers of a share left for a later beat wake late, but before the lease would have let anyone adopt them.
  await checkExactlyOnce(t, f, kinds, leaving, { lateWakeMs: leaseMs })
  const handedOff = (await f.workflows()).filter((r) => started.get(leaving)!.includes(r.workflow_id) && r.executor_id !== 'one')
  t.ok(handedOff.length > 10, `it handed ${handedOff.length} unfinished workflows to the others`)
  const adoptions = staying.flatMap((s) => s.events('adoption.adopted', (l) => l.from.includes('one')))
  t.ok(adoptions.length > 0, 'the others adopted its work')
  t.comment(`adoptions (ms after SIGTERM: count): ${adoptions.map((l) => `${l.time - closing.at}: ${l.count}`).join(', ')}`)
  const firstAdoption = Math.min(...adoptions.map((l) => l.time as number))
  t.ok(firstAdoption - closing.at < 2000, `adopted ${firstAdoption - closing.at} ms after SIGTERM (lease ${leaseMs} ms, beats ${5000} ms apart)`)
  // Each instance told takes its share at once (the handed-off work divided
  // by the living); what a share leaves over waits for a later beat.
  const atOnce = adoptions.filter((l) => l.time - closing.at < 2000).reduce((n, l) => n + (l.count as number), 0)
  t.ok(atOnce >= handedOff.length / staying.length, `${atOnce} of ${handedOff.length} adopted within 2 s`)
  const { sql } = f
  const [{ last }] = await sql<{ last: Date }[]>`
    SELECT max(completed_at) AS last FROM ${sql(`${f.schema}.workflows`)} WHERE workflow_id = ANY(${handedOff.map((r) => r.workflow_id)})`
  t.ok(last.getTime() - closing.at < leaseMs, `all finished ${last.getTime() - closing.at} ms after SIGTERM, within what its lease alone would have taken`)
  const rows = await f.workflows()
  t.ok(rows.every((r) => r.attempts === 1), 'a graceful stop counts no attempt, for what it handed off either')
  t.equal(started.get(leaving)!.length, 60)
})

t.test('appVersion: an instance of v2 does not adopt v1 work; setAppVersion moves one to v2; a v1 instance adopts the rest; executors() shows them all', async (t) => {
  const leaseMs = 1000
  const f = await fleet(t, { env: { HEARTBEAT_MS: '200', LEASE_MS: String(leaseMs) } })
  const [v1, v2, v2Victim] = await Promise.all([
    f.launch({ EXECUTOR_ID: 'v1-a', APP_VERSION: 'v1' }),
    f.launch({ EXECUTOR_ID: 'v2-a', APP_VERSION: 'v2' }),
    f.launch({ EXECUTOR_ID: 'v2-b', APP_VERSION: 'v2' })
  ]) as [Instance, Instance, Instance]
  const v1Work = await Promise.all([1, 2, 3].map(() => v1.start('gatedSteps', { gate: 'g' })))
  const v2Work = await Promise.all([1, 2].map(() => v2Victim.start('gatedSteps', { gate: 'g' })))
  await pollUntil(async () => (await f.effects()).filter((e) => e.step === 'two').length === 5, { what: 'every workflow to be in its second step' })
  t.same((await f.workflows()).map((r) => r.app_version).sort(), ['v1', 'v1', 'v1', 'v2', 'v2'], 'each records the version that started it')

  await v1.kill()
  const executors = async (): Promise<Record<string, any>> =>
    Object.fromEntries((await v2.get('/executors')).body.map((e: any) => [e.executorId, e]))
  await pollUntil(async () => (await executors())['v1-a'].alive === false, { what: 'v1-a to be seen dead' })
  await v2Victim.kill()
  await f.openGate('g')
  // The adoption that takes v2-b's work looks at v1-a's too, and leaves it.
  const adoption = await v2.waitForEvent('adoption.adopted', (l) => l.from.includes('v2-b'))
  t.ok(adoption.from.includes('v1-a'), 'the adoption saw both dead executors')
  const adopted = await f.finished(v2Work)
  t.ok(adopted.every((r) => r.status === 'SUCCESS' && r.executor_id === 'v2-a'), 'v2 work finished on v2')
  const v1Rows = (await f.workflows()).filter((r) => v1Work.includes(r.workflow_id))
  t.ok(v1Rows.every((r) => r.status === 'PENDING' && r.executor_id === 'v1-a'), 'v1 work stayed with its dead v1 owner')

  const seen = await executors()
  t.match(seen['v1-a'], { appVersion: 'v1', alive: false, pendingWorkflows: 3, self: false, leaseMs })
  t.ok(seen['v1-a'].heartbeatAgeMs > leaseMs, `v1-a's heartbeat is ${Math.round(seen['v1-a'].heartbeatAgeMs)} ms old`)
  t.match(seen['v2-a'], { appVersion: 'v2', alive: true, pendingWorkflows: 0, self: true, stoppedAt: null })
  t.ok(seen['v2-a'].heartbeatAgeMs < leaseMs, `v2-a's heartbeat is ${Math.round(seen['v2-a'].heartbeatAgeMs)} ms old`)
  t.match(seen['v2-b'], { appVersion: 'v2', alive: false, pendingWorkflows: 0 })
  t.same((await v2.get('/list?appVersion=v1')).body.sort(), [...v1Work].sort(), 'list({ appVersion }) finds the v1 work')

  const [moved, ...rest] = v1Work as [string, ...string[]]
  t.equal((await v2.post('/set-app-version', { workflowId: moved, appVersion: 'v2' })).status, 200)
  const [done] = await f.finished([moved])
  t.match(done, { status: 'SUCCESS', executor_id: 'v2-a', app_version: 'v2' }, 'moved to v2, v2 ran it')
  t.same(deserialize(done!.output!), 'gated steps done')
  t.equal((await executors())['v1-a'].pendingWorkflows, 2)

  const v1b = await f.launch({ EXECUTOR_ID: 'v1-b', APP_VERSION: 'v1' })
  const last = await f.finished(rest)
  t.ok(last.every((r) => r.status === 'SUCCESS' && r.executor_id === 'v1-b' && r.app_version === 'v1'), 'a new v1 instance adopted the rest')

  // A workflow running on a live v1 instance, moved to v2: it leaves that
  // instance (its run is fenced off) for the v2 one.
  const live = await v1b.start('gatedSteps', { gate: 'live' })
  await pollUntil(async () => (await f.effects()).some((e) => e.workflow_id === live && e.step === 'two'), { what: 'it to be in its second step' })
  t.equal((await v2.post('/set-app-version', { workflowId: live, appVersion: 'v2' })).status, 200)
  await f.openGate('live')
  const [liveRow] = await f.finished([live])
  t.match(liveRow, { status: 'SUCCESS', executor_id: 'v2-a', app_version: 'v2' }, 'moved off a live instance of another version')
  await v1b.waitForEvent('workflow.fenced', (l) => l.workflowId === live)
  const effects = await f.effects()
  t.same(effects.filter((e) => e.step === 'one').length, 6, 'first steps ran once each')
  t.ok(effects.filter((e) => e.step === 'three').every((e) => e.executor === (v2Work.includes(e.workflow_id) || [moved, live].includes(e.workflow_id) ? 'v2-a' : 'v1-b')),
    'each last step ran on an instance of its version')
})
