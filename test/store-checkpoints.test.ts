// The checkpoint statements on their own, against a real Postgres. A batch of
// one uses a plain-parameter form of each statement and a larger batch the
// unnest form; both must keep the same rules (epoch fencing, first writer
// wins, outcomes only for PENDING workflows), so every case runs at both sizes.
import t from 'tap'
import { connect, openPool, tables } from '../lib/store/connect.js'
import { migrate } from '../lib/store/migrate.js'
import { writeCheckpoints, stepKey } from '../lib/store/checkpoints.js'
import { insertWorkflows } from '../lib/store/workflows.js'
import { suspendWorkflows } from '../lib/store/wake-ups.js'
import { databaseUrl, dropSchema, pollUntil, uniqueSchema } from './helpers/db.js'

const sql = connect(databaseUrl, 2)
const tb = tables(sql, uniqueSchema('store'))
t.before(async () => {
  await openPool(sql)
  await migrate(sql, tb)
})
t.teardown(async () => {
  await sql.end({ timeout: 5 })
  await dropSchema(tb.schema)
})

let n = 0
async function newWorkflows (count: number): Promise<{ workflowId: string, epoch: string }[]> {
  const rows = Array.from({ length: count }, () => ({
    workflowId: `wf-${++n}`, name: 'w', input: '1', inputHash: 'h', requestId: null, executorId: 'e', appVersion: null, parentId: null, timeoutMs: null
  }))
  const inserted = await insertWorkflows(sql, tb, rows)
  return inserted.map((r) => ({ workflowId: r.workflow_id, epoch: r.epoch }))
}

const step = (w: { workflowId: string, epoch: string }, stepId: number, output = '1') =>
  ({ workflowId: w.workflowId, epoch: w.epoch, stepId, name: `s${stepId}`, output, error: null, startedAt: null })
const done = (w: { workflowId: string, epoch: string }) =>
  ({ workflowId: w.workflowId, epoch: w.epoch, status: 'SUCCESS' as const, output: '"ok"', error: null })

for (const size of [1, 3]) {
  t.test(`batches of ${size}`, async (t) => {
    t.test('inserting a workflow id twice inserts it once', async (t) => {
      const ws = await newWorkflows(size)
      t.equal(ws.length, size)
      t.ok(ws.every((w) => w.epoch === '1'))
      const again = await insertWorkflows(sql, tb, ws.map((w) => ({
        workflowId: w.workflowId, name: 'w', input: '2', inputHash: 'other', requestId: null, executorId: 'e', appVersion: null, parentId: null, timeoutMs: null
      })))
      t.same(again, [], 'existing ids are neither overwritten nor returned')
    })

    t.test('steps land once, and only under the current epoch', async (t) => {
      const ws = await newWorkflows(size)
      const first = await writeCheckpoints(sql, tb, ws.map((w) => step(w, 0)), [])
      t.same([...first.steps].sort(), ws.map((w) => stepKey(w.workflowId, 0)).sort())
      const repeat = await writeCheckpoints(sql, tb, ws.map((w) => step(w, 0, '2')), [])
      t.equal(repeat.steps.size, 0, 'a step already recorded is left as it is')
      const [{ output }] = await sql`SELECT output FROM ${tb.steps} WHERE workflow_id = ${ws[0]!.workflowId} AND step_id = 0`
      t.equal(output, '1', 'first writer wins')
      const stale = await writeCheckpoints(sql, tb, ws.map((w) => step({ ...w, epoch: '0' }, 1)), [])
      t.equal(stale.steps.size, 0, 'a stale epoch writes nothing')
      const [{ count }] = await sql`SELECT count(*)::int AS count FROM ${tb.steps} WHERE step_id = 1 AND workflow_id = ANY(${ws.map((w) => w.workflowId)})`
      t.equal(count, 0)
    })

    t.test('outcomes are recorded once, only under the current epoch, and announced', async (t) => {
      const ws = await newWorkflows(size)
      const stale = await writeCheckpoints(sql, tb, [], ws.map((w) => done({ ...w, epoch: '2' })))
      t.equal(stale.completed.size, 0, 'a stale epoch records no outcome')
      const notified: string[] = []
      const listener = await sql.listen(tb.channel, (id) => { notified.push(id) })
      const written = await writeCheckpoints(sql, tb, [], ws.map(done))
      t.same([...written.completed].sort(), ws.map((w) => w.workflowId).sort())
      const again = await writeCheckpoints(sql, tb, [], ws.map(done))
      t.equal(again.completed.size, 0, 'a finished workflow is final')
      const late = await writeCheckpoints(sql, tb, ws.map((w) => step(w, 5)), [])
      t.equal(late.steps.size, 0, 'no steps after the outcome')
      // Postgres delivers notifications in commit order: once this one arrives,
      // every announcement of the writes above (duplicates too) has arrived.
      const sentinel = `after-${ws[0]!.workflowId}`
      await sql`SELECT pg_notify(${tb.channel}, ${sentinel})`
      await pollUntil(() => notified.includes(sentinel), { what: 'the notification sent after the writes' })
      await listener.unlisten()
      t.same(notified.filter((id) => id !== sentinel).sort(), ws.map((w) => w.workflowId).sort(), 'each completion is announced once')
    })

    t.test('suspensions land only under the current epoch, and only while PENDING', async (t) => {
      const ws = await newWorkflows(size)
      const wakeAt = new Date(Date.now() + 60_000)
      const stale = await suspendWorkflows(sql, tb, ws.map((w) => ({ workflowId: w.workflowId, epoch: '7', wakeAt })))
      t.equal(stale.size, 0, 'a stale epoch writes nothing')
      const written = await suspendWorkflows(sql, tb, ws.map((w) => ({ workflowId: w.workflowId, epoch: w.epoch, wakeAt })))
      t.same([...written].sort(), ws.map((w) => w.workflowId).sort())
      const rows = await sql`SELECT wake_at FROM ${tb.workflows} WHERE workflow_id = ANY(${ws.map((w) => w.workflowId)})`
      t.ok(rows.every((r) => r.wake_at.getTime() === wakeAt.getTime()), 'wake_at recorded to the millisecond')
      await writeCheckpoints(sql, tb, [], ws.map(done))
      const late = await suspendWorkflows(sql, tb, ws.map((w) => ({ workflowId: w.workflowId, epoch: w.epoch, wakeAt })))
      t.equal(late.size, 0, 'a finished workflow cannot be suspended')
    })

    t.test('a start with its first step: both land together, once; a taken id writes neither', async (t) => {
      const ids = Array.from({ length: size }, () => `wf-${++n}`)
      const opening = (id: string, stepId = 0, input = '1') => ({
        start: { workflowId: id, name: 'w', input, inputHash: 'h', requestId: null, executorId: 'e', appVersion: null, parentId: null, timeoutMs: null },
        step: step({ workflowId: id, epoch: '1' }, stepId)
      })
      const opened = await writeCheckpoints(sql, tb, [], [], ids.map((id) => opening(id)))
      t.same([...opened.steps].sort(), ids.map((id) => stepKey(id, 0)).sort())
      const rows = await sql`
        SELECT w.status, w.epoch::text AS epoch, w.created_at = s.created_at AS together
        FROM ${tb.workflows} w JOIN ${tb.steps} s USING (workflow_id) WHERE w.workflow_id = ANY(${ids})`
      t.equal(rows.length, size)
      t.ok(rows.every((r) => r.status === 'PENDING' && r.epoch === '1' && r.together), 'PENDING under epoch 1, in one transaction')
      const again = await writeCheckpoints(sql, tb, [], [], ids.map((id) => opening(id, 1, '2')))
      t.equal(again.steps.size, 0, 'a taken id: neither the start nor the step is written')
      const [{ count }] = await sql`SELECT count(*)::int AS count FROM ${tb.steps} WHERE step_id = 1 AND workflow_id = ANY(${ids})`
      t.equal(count, 0)
    })

    t.test('openings, steps and completions of other workflows share one statement, all or nothing', async (t) => {
      const running = await newWorkflows(size)
      const finishing = await newWorkflows(size)
      const ids = Array.from({ length: size }, () => `wf-${++n}`)
      const openings = ids.map((id) => ({
        start: { workflowId: id, name: 'w', input: '1', inputHash: 'h', requestId: null, executorId: 'e', appVersion: null, parentId: null, timeoutMs: null },
        step: step({ workflowId: id, epoch: '1' }, 0)
      }))
      // A refused step row fails the whole statement: no opening may commit without it.
      const bad = running.map((w) => ({ ...step(w, 0), name: null as unknown as string }))
      await t.rejects(writeCheckpoints(sql, tb, bad, finishing.map(done), openings))
      const [{ none }] = await sql`SELECT count(*)::int AS none FROM ${tb.workflows} WHERE workflow_id = ANY(${ids})`
      t.equal(none, 0, 'nothing of the failed statement committed')
      const written = await writeCheckpoints(sql, tb, running.map((w) => step(w, 0)), finishing.map(done), openings)
      t.equal(written.steps.size, 2 * size, 'the steps and the openings\' steps')
      t.equal(written.completed.size, size)
      const [{ opened }] = await sql`SELECT count(*)::int AS opened FROM ${tb.workflows} WHERE workflow_id = ANY(${ids}) AND status = 'PENDING'`
      t.equal(opened, size)
    })

    t.test('a last step and its completion in one statement both apply', async (t) => {
      const ws = await newWorkflows(size)
      const written = await writeCheckpoints(sql, tb, ws.map((w) => step(w, 0)), ws.map(done))
      t.equal(written.steps.size, size)
      t.equal(written.completed.size, size)
      const rows = await sql`SELECT status FROM ${tb.workflows} WHERE workflow_id = ANY(${ws.map((w) => w.workflowId)})`
      t.ok(rows.every((r) => r.status === 'SUCCESS'))
    })
  })
}
