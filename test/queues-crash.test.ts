// An instance killed (SIGKILL) while it holds a queue's slots (issue 12):
// the workflows it had taken are adopted by the living and finish once
// there, their slots come back, and the queue's limit held throughout.
import t from 'tap'
import { groupBy, maxOverlap, queueFleet, workIntervals } from './helpers/queue-fleet.js'
import { pollUntil } from './helpers/db.js'

t.test('killed holding both slots of a concurrency-2 queue: its workflows finish once elsewhere, the rest follow, never more than 2 at once', async (t) => {
  const f = await queueFleet(t, { env: { QUEUES: JSON.stringify([{ name: 'slots', concurrency: 2 }]), HEARTBEAT_MS: '200', LEASE_MS: '1000' } })
  const victim = await f.launch({ EXECUTOR_ID: 'victim' })
  const ids = await victim.enqueueMany('slots', 'tracked', Array.from({ length: 8 }, (_, i) => ({ input: { ms: 50, gate: 'go', tag: `w${i}` } })))
  await pollUntil(async () => (await f.runs()).filter((r) => r.step === 'work').length === 2, { what: 'the victim to take both slots' })
  const survivors = await Promise.all(['left', 'right'].map((id) => f.launch({ EXECUTOR_ID: id })))
  const held = (await f.runs()).filter((r) => r.step === 'work')
  t.ok(held.every((r) => r.executor === 'victim'), 'the victim holds both slots')
  const heldIds = held.map((r) => r.workflow_id)
  t.same(heldIds.sort(), ids.slice(0, 2).sort(), 'the first two enqueued')

  t.equal((await victim.kill()).signal, 'SIGKILL')
  const killedAt = await f.now()
  // Adopted, they run again and take the slots back, before anything else starts.
  const reruns = await pollUntil(async () => {
    const work = (await f.runs()).filter((r) => r.step === 'work' && r.executor !== 'victim')
    return work.length >= 2 && work
  }, { what: 'the held workflows to run again on a survivor' })
  t.same(reruns.map((r) => r.workflow_id).sort(), [...heldIds].sort(), 'the first to run again are the ones the victim held')
  await f.openGate('go')
  const rows = await f.finished(ids, 60_000)
  t.ok(rows.every((r) => r.status === 'SUCCESS'), 'every workflow succeeded')

  const runs = await f.runs()
  const steps = groupBy(runs, (r) => `${r.workflow_id} ${r.step}`)
  for (const id of ids) {
    t.equal(steps.get(`${id} after`)?.length, 1, `${id}: its step after the work ran once`)
    const work = steps.get(`${id} work`) ?? []
    if (heldIds.includes(id)) {
      t.same(work.map((r) => [r.executor, r.ended_at === null]), [['victim', true], [work[1]?.executor, false]], `${id}: its work was cut short on the victim and ran again once`)
      t.not(work[1]?.executor, 'victim')
    } else {
      t.equal(work.length, 1, `${id}: its work ran once`)
    }
  }
  const byId = new Map(rows.map((r) => [r.workflow_id, r]))
  t.ok(heldIds.every((id) => byId.get(id)!.executor_id !== 'victim' && byId.get(id)!.attempts === 2), 'the held ones were adopted: one attempt more')
  t.ok(ids.filter((id) => !heldIds.includes(id)).every((id) => byId.get(id)!.attempts === 1 && byId.get(id)!.executor_id !== 'victim'), 'the others ran once, on the survivors')
  t.ok(survivors.some((s) => s.events('adoption.adopted', (l) => l.from.includes('victim')).length > 0), 'a survivor adopted the victim\'s work')
  // The killed runs were open until the kill at the latest.
  t.equal(maxOverlap(workIntervals(runs, killedAt)), 2, 'never more than 2 at once, counting the killed runs until the kill')
  const [{ n }] = await f.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM ${f.sql(`${f.schema}.workflows`)} WHERE status IN ('PENDING', 'ENQUEUED')`
  t.equal(n, 0, 'no slot is left taken')
})
