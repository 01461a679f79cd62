// Cron schedules across instances (issue 12): three real child processes
// (test/fixtures/queue-app.js) with every-second schedules start each tick's
// workflow once (its one step recorded once), then all stop; ticks missed
// while none ran are skipped by default and backfilled on request when an
// instance starts again.
import t from 'tap'
import { pollUntil } from './helpers/db.js'
import { groupBy, queueFleet, type QueueFleet, type ScheduleSpec } from './helpers/queue-fleet.js'

const EVERY_SECOND = '* * * * * *'
const SCHEDULES: ScheduleSpec[] = [
  { name: 'skipper', cron: EVERY_SECOND },
  { name: 'filler', cron: EVERY_SECOND, missed: 'backfill' }
]

/** The ticks (ms) whose workflows exist, per schedule, and how often each one's step ran. */
async function ticks (f: QueueFleet): Promise<Map<string, { at: number, id: string, runs: number, status: string }[]>> {
  const runs = groupBy((await f.runs()).filter((r) => r.step === 'tick'), (r) => r.workflow_id)
  const rows = (await f.workflows()).filter((r) => r.name === 'ticker')
  const out = new Map<string, { at: number, id: string, runs: number, status: string }[]>()
  for (const r of rows) {
    // <schedule>@<tick, ISO 8601>; anything after the time shows in the id check.
    const [, name, iso] = /^(.*?)@(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)/.exec(r.workflow_id) as unknown as [string, string, string]
    const list = out.get(name) ?? []
    list.push({ at: Date.parse(iso), id: r.workflow_id, runs: runs.get(r.workflow_id)?.length ?? 0, status: r.status })
    out.set(name, list)
  }
  for (const list of out.values()) list.sort((a, b) => a.at - b.at)
  return out
}

/** Every whole second in (from, to]. */
function secondsBetween (from: number, to: number): number[] {
  const out: number[] = []
  for (let at = Math.floor(from / 1000) * 1000 + 1000; at <= to; at += 1000) out.push(at)
  return out
}

t.test('three instances run each tick once; after all stopped, missed ticks are skipped, or backfilled when asked', async (t) => {
  const f = await queueFleet(t, { env: { SCHEDULES: JSON.stringify(SCHEDULES) } })
  const instances = await Promise.all(['one', 'two', 'three'].map((id) => f.launch({ EXECUTOR_ID: id })))
  const allUp = await f.now()
  // Four ticks with all three running, finished.
  await pollUntil(async () => {
    const seen = await ticks(f)
    return SCHEDULES.every((s) => (seen.get(s.name) ?? []).filter((x) => x.at > allUp && x.status === 'SUCCESS').length >= 4)
  }, { timeoutMs: 30_000, what: 'four ticks of each schedule' })
  await Promise.all(instances.map((i) => i.stop()))

  const before = await ticks(f)
  for (const s of SCHEDULES) {
    const mine = before.get(s.name)!
    t.ok(mine.every((x) => x.id === `${s.name}@${new Date(x.at).toISOString()}`), `${s.name}: the workflow ids are <schedule>@<tick>`)
    t.equal(new Set(mine.map((x) => x.at)).size, mine.length, `${s.name}: one workflow per tick`)
    t.ok(mine.every((x) => x.runs === 1 && x.status === 'SUCCESS'), `${s.name}: each tick's workflow ran its step once`)
    const first = mine[0]!.at
    const last = mine.at(-1)!.at
    t.same(mine.map((x) => x.at), [first, ...secondsBetween(first, last)], `${s.name}: every second from the first tick to the last, none missing`)
  }
  t.comment(`tick owners: ${JSON.stringify(Object.fromEntries([...groupBy((await f.workflows()).filter((r) => r.name === 'ticker'), (r) => r.executor_id)].map(([k, v]) => [k, v.length])))}`)

  // Nothing runs for three seconds and more.
  const lastBefore = new Map(SCHEDULES.map((s) => [s.name, before.get(s.name)!.at(-1)!.at]))
  const stoppedUntil = Math.max(...lastBefore.values()) + 3500
  await pollUntil(async () => await f.now() >= stoppedUntil, { timeoutMs: 10_000, what: 'three seconds to pass' })
  const restartAt = await f.now()
  await f.launch({ EXECUTOR_ID: 'again' })
  await pollUntil(async () => {
    const seen = await ticks(f)
    return SCHEDULES.every((s) => (seen.get(s.name) ?? []).some((x) => x.at > restartAt && x.status === 'SUCCESS'))
  }, { timeoutMs: 20_000, what: 'a tick of each schedule after the restart' })

  const after = await ticks(f)
  const skipped = after.get('skipper')!.filter((x) => x.at > lastBefore.get('skipper')! && x.at < restartAt)
  t.same(skipped, [], 'skip: no tick missed while no instance ran was started')
  t.ok(after.get('skipper')!.some((x) => x.at > restartAt), 'skip: ticks run again from the restart on')
  const missed = secondsBetween(lastBefore.get('filler')!, restartAt)
  t.ok(missed.length >= 3, `${missed.length} ticks were missed`)
  const filled = await pollUntil(async () => {
    const mine = (await ticks(f)).get('filler')!
    return mine.filter((x) => missed.includes(x.at) && x.status === 'SUCCESS').length >= missed.length && mine
  }, { timeoutMs: 20_000, what: 'the backfill' })
  t.same(filled.filter((x) => missed.includes(x.at)).map((x) => x.at), missed, 'backfill: every missed tick was started')
  t.ok(filled.every((x) => x.runs === 1), 'backfill: each ran its step once')
})
