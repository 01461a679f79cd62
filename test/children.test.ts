// ctx.startChild / ctx.runChild (docs/Guides/children.md): deterministic
// child ids, one child however often the parent replays, parent links, and
// the child's result checkpointed in the parent.
import type postgres from 'postgres'
import t from 'tap'
import { defineWorkflow, type Engine } from '../lib/index.js'
import { adminSql, buildEngine, pollUntil } from './helpers/db.js'
import { Counter } from './helpers/workflows.js'

const counter = new Counter()

const kid = defineWorkflow('kid', async (ctx, n: number) => {
  counter.hit(`body:${ctx.workflowId}`)
  return ctx.step('square', () => n * n)
})
const failingKid = defineWorkflow('failingKid', async () => { throw new Error('kid failed') })

const family = defineWorkflow('family', async (ctx) => {
  const a = await ctx.runChild(kid, 3)
  const b = await ctx.startChild(kid, 4, { workflowId: `${ctx.workflowId}-named` })
  const c = await ctx.startChild(kid, 5)
  let failed: string | undefined
  try { await ctx.runChild(failingKid, undefined) } catch (err) { failed = (err as Error).message }
  return { a, b: await b.getResult(), c: await c.getResult(), failed, ids: [b.workflowId, c.workflowId] }
})

/** Starts a child, suspends in a long sleep, then waits for the child: a wake-up replays the start. */
const sleepyParent = defineWorkflow('sleepyParent', async (ctx) => {
  const handle = await ctx.startChild(kid, 6)
  const first = await handle.getResult()
  await ctx.sleep(1500)
  counter.hit(`woke:${ctx.workflowId}`)
  return { first, childId: handle.workflowId }
})

const all = [kid, failingKid, family, sleepyParent]

function table (engine: Engine, name: string): string {
  return `${engine.options.schema}.${name}`
}

async function childrenOf (sql: postgres.Sql, engine: Engine, parentId: string): Promise<string[]> {
  const rows = await sql<{ workflow_id: string }[]>`SELECT workflow_id FROM ${sql(table(engine, 'workflows'))} WHERE parent_id = ${parentId} ORDER BY workflow_id`
  return rows.map((r) => r.workflow_id)
}

t.test('runChild and startChild: results, errors, deterministic ids, parent links', async (t) => {
  const engine = await buildEngine(t, { workflows: all })
  const sql = adminSql(t)
  const h = await engine.startWorkflow(family, undefined, { workflowId: 'fam' })
  const out = await h.getResult({ timeoutMs: 30_000 }) as { a: number, b: number, c: number, failed: string, ids: string[] }
  t.same(out, { a: 9, b: 16, c: 25, failed: 'kid failed', ids: ['fam-named', 'fam-3'] })
  const listed = (await engine.list({ parentId: 'fam' })).map((w) => w.workflowId).sort()
  t.same(listed, await childrenOf(sql, engine, 'fam'), 'list({ parentId }) is what the table links')
  t.same(listed, ['fam-0', 'fam-3', 'fam-4', 'fam-named'], 'ids from the parent id and the call position, or as given')
  for (const id of listed) t.equal((await engine.getStatus(id)).parentId, 'fam')
  t.equal((await engine.getStatus('fam-4')).status, 'ERROR', 'the failing child (its start at position 4)')
  const starts = (await engine.listSteps('fam')).filter((s) => s.name === 'startChild' || s.childWorkflowId !== undefined)
  t.same(starts.map((s) => s.childWorkflowId).sort(), listed, 'listSteps names each child')
})

t.test('a replay does not start a second child, and the child\'s result is checkpointed', async (t) => {
  const engine = await buildEngine(t, { workflows: all, sleepInMemoryMaxMs: 0 })
  const sql = adminSql(t)
  const h = await engine.startWorkflow(sleepyParent, undefined)
  const childId = `${h.workflowId}-0`
  await pollUntil(async () => (await engine.getStatus(h.workflowId)).wakeAt !== null, { what: 'the parent to suspend' })
  t.equal(counter.get(`body:${childId}`), 1)
  // The child is gone by the time the parent wakes: a replay that waited
  // for it again would fail with 404; a recorded result needs no child.
  await sql`DELETE FROM ${sql(table(engine, 'steps'))} WHERE workflow_id = ${childId}`
  await sql`DELETE FROM ${sql(table(engine, 'workflows'))} WHERE workflow_id = ${childId}`
  t.same(await h.getResult({ timeoutMs: 30_000 }), { first: 36, childId })
  t.equal(counter.get(`woke:${h.workflowId}`), 1, 'the parent replayed after its sleep')
  t.same(await childrenOf(sql, engine, h.workflowId), [], 'no second child was started by the replay')
  t.equal(counter.get(`body:${childId}`), 1, 'the child ran once')
  const steps = await engine.listSteps(h.workflowId)
  t.same(steps.map((s) => s.name), ['startChild', 'getResult', 'sleep'])
  t.equal(steps[1]!.output, 36, 'the child\'s result is the parent\'s step')
})
