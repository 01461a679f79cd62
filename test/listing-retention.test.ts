// list / listPage / listSteps (filters, keyset paging) and retention
// (deleteFinished and the background option). Rows are made by the engine
// where that is what is tested, and with SQL where the test needs creation
// times no run can produce (many rows in one millisecond, old completions).
import type postgres from 'postgres'
import t from 'tap'
import { defineWorkflow, type Engine } from '../lib/index.js'
import { adminSql, buildEngine, pollUntil } from './helpers/db.js'
import { gate } from './helpers/workflows.js'

const plain = defineWorkflow('plain', async (ctx, n: number) => ctx.step('double', () => n * 2))
const other = defineWorkflow('other', async () => 'other')
const kid = defineWorkflow('kid', async (_ctx, n: number) => n)
const withKids = defineWorkflow('withKids', async (ctx) => {
  const a = await ctx.runChild(kid, 1)
  const b = await ctx.runChild(kid, 2)
  return a + b
})
const rich = defineWorkflow('rich', async (ctx) => {
  await ctx.step('ok', () => 'fine')
  try { await ctx.step('bad', () => { throw new Error('nope') }) } catch {}
  await ctx.runChild(kid, 7)
  await ctx.setEvent('e', 1)
  await ctx.writeStream('s', 'v')
  await ctx.closeStream('s')
  return ctx.recv('m', { timeoutMs: 0 })
})
const open = gate()
const pending = defineWorkflow('pendingForever', async (ctx) => {
  await ctx.step('held', () => open.wait())
  return 'released'
})
t.teardown(() => open.open())

const all = [plain, other, kid, withKids, rich, pending]

function table (engine: Engine, name: string): string {
  return `${engine.options.schema}.${name}`
}

async function countRows (sql: postgres.Sql, engine: Engine, name: string, ids: string[]): Promise<number> {
  const [row] = await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM ${sql(table(engine, name))} WHERE workflow_id = ANY(${ids}::text[])`
  return row!.n
}

t.test('list filters: status, name, time range, request id, parent, app version', async (t) => {
  const engine = await buildEngine(t, { workflows: all, appVersion: 'v1' })
  const sql = adminSql(t)
  const a = await engine.startWorkflow(plain, 1, { requestId: 'req-a' })
  await a.getResult()
  const between = new Date()
  await new Promise((resolve) => setTimeout(resolve, 20))
  const b = await engine.startWorkflow(other, undefined)
  await b.getResult()
  const p = await engine.startWorkflow(withKids, undefined)
  t.equal(await p.getResult({ timeoutMs: 20_000 }), 3)
  const held = await engine.startWorkflow(pending, undefined)
  await pollUntil(() => open.entered > 0, { what: 'the pending one to run' })
  // One of another app version, as an older deployment left it.
  await sql`UPDATE ${sql(table(engine, 'workflows'))} SET app_version = 'v0' WHERE workflow_id = ${b.workflowId}`

  const ids = async (f: Parameters<Engine['list']>[0]): Promise<string[]> => (await engine.list(f)).map((w) => w.workflowId).sort()
  t.same(await ids({ status: 'PENDING' }), [held.workflowId])
  t.same(await ids({ name: 'plain' }), [a.workflowId])
  t.same(await ids({ requestId: 'req-a' }), [a.workflowId])
  t.same(await ids({ parentId: p.workflowId }), (await engine.list({ name: 'kid' })).map((w) => w.workflowId).sort())
  t.equal((await ids({ parentId: p.workflowId })).length, 2)
  t.same(await ids({ appVersion: 'v0' }), [b.workflowId])
  t.notOk((await ids({ appVersion: 'v1' })).includes(b.workflowId))
  t.same(await ids({ createdBefore: between }), [a.workflowId])
  t.notOk((await ids({ createdAfter: between })).includes(a.workflowId))
  t.same(await ids({ createdAfter: between, name: 'other' }), [b.workflowId])
  t.same(await ids({ status: 'SUCCESS', name: 'kid', parentId: 'nobody' }), [])
  const asc = (await engine.list({ order: 'asc' })).map((w) => w.createdAt.getTime())
  t.same(asc, [...asc].sort((x, y) => x - y), 'ascending order')
  for (const bad of [{ status: 'DONE' }, { limit: 0 }, { workflowName: 'x' }, { createdAfter: new Date('nope') }]) {
    await t.rejects(engine.list(bad as never), { code: 'DBOS_ERR_INVALID_LIST_FILTER', statusCode: 400 })
  }
})

t.test('listPage: keyset paging with no duplicates or gaps, also within one millisecond', async (t) => {
  const engine = await buildEngine(t, { workflows: all })
  const sql = adminSql(t)
  // 57 rows: groups sharing one millisecond (different microseconds), and
  // groups sharing one exact timestamp (ordered by id).
  const rows: { id: string, at: string }[] = []
  for (let i = 0; i < 57; i++) {
    const ms = 100 + Math.floor(i / 6)
    const micro = i % 3 === 0 ? '000' : String(100 + (i % 6)).padStart(3, '0')
    rows.push({ id: `w${String(i).padStart(3, '0')}`, at: `2026-01-01 00:00:00.${String(ms).padStart(3, '0')}${micro}+00` })
  }
  await sql`
    INSERT INTO ${sql(table(engine, 'workflows'))} (workflow_id, name, status, input, input_hash, executor_id, epoch, attempts, created_at, updated_at)
    SELECT id, 'plain', 'SUCCESS', '1', 'h', 'x', 1, 1, at::timestamptz, at::timestamptz
    FROM unnest(${rows.map((r) => r.id)}::text[], ${rows.map((r) => r.at)}::text[]) AS v(id, at)`
  const expected = await sql<{ workflow_id: string }[]>`
    SELECT workflow_id FROM ${sql(table(engine, 'workflows'))} ORDER BY created_at DESC, workflow_id DESC`
  for (const order of ['desc', 'asc'] as const) {
    const seen: string[] = []
    let cursor: string | undefined
    let pages = 0
    do {
      const page = await engine.listPage({ limit: 5, order, ...(cursor === undefined ? {} : { cursor }) })
      seen.push(...page.workflows.map((w) => w.workflowId))
      cursor = page.nextCursor ?? undefined
      pages++
    } while (cursor !== undefined && pages < 100)
    const want = expected.map((r) => r.workflow_id)
    t.same(seen, order === 'desc' ? want : [...want].reverse(), `every row once, in order (${order}, ${pages} pages)`)
  }
  await t.rejects(engine.listPage({ cursor: 'garbage' }), { code: 'DBOS_ERR_INVALID_LIST_FILTER' })
})

t.test('listSteps: start and end times, output, error and child ids', async (t) => {
  const engine = await buildEngine(t, { workflows: all })
  const h = await engine.startWorkflow(rich, undefined)
  t.equal(await h.getResult({ timeoutMs: 20_000 }), null)
  const steps = await engine.listSteps(h.workflowId)
  const ok = steps.find((s) => s.name === 'ok')!
  t.equal(ok.output, 'fine')
  t.ok(ok.startedAt instanceof Date && ok.completedAt instanceof Date && ok.startedAt.getTime() <= ok.completedAt.getTime() + 5, 'began before it was recorded')
  t.match(steps.find((s) => s.name === 'bad'), { error: { message: 'nope' } })
  const child = steps.find((s) => s.childWorkflowId !== undefined)
  t.ok(child, 'the child start step names the child')
  t.equal((await engine.getStatus(child!.childWorkflowId!)).parentId, h.workflowId)
  t.same(steps.map((s) => s.stepId), steps.map((_s, i) => i), 'positions in order, no gaps')
  await t.rejects(engine.listSteps('no-such'), { code: 'DBOS_ERR_WORKFLOW_NOT_FOUND' })
})

t.test('deleteFinished: finished workflows and what belongs to them, in batches; never a PENDING one', async (t) => {
  const engine = await buildEngine(t, { workflows: all })
  const sql = adminSql(t)
  const done: string[] = []
  for (let i = 0; i < 5; i++) {
    const h = await engine.startWorkflow(rich, undefined)
    await h.getResult({ timeoutMs: 20_000 })
    done.push(h.workflowId)
  }
  await engine.send(done[0]!, 'x', { topic: 'm', idempotencyKey: 'k' }).catch(() => {})
  await sql`INSERT INTO ${sql(table(engine, 'messages'))} (workflow_id, topic, message) VALUES (${done[0]!}, 'm', '"left"')`
  const kids = (await engine.list({ name: 'kid' })).map((w) => w.workflowId)
  const held = await engine.startWorkflow(pending, undefined)
  await pollUntil(() => open.entered > 0, { what: 'the pending one to run' })
  const recent = await engine.startWorkflow(plain, 2)
  await recent.getResult()
  // Old: finished an hour ago. The PENDING one is old too, and must stay.
  await sql`UPDATE ${sql(table(engine, 'workflows'))} SET completed_at = now() - interval '1 hour', created_at = now() - interval '2 hours'
    WHERE workflow_id = ANY(${[...done, ...kids]}::text[])`
  await sql`UPDATE ${sql(table(engine, 'workflows'))} SET created_at = now() - interval '2 hours' WHERE workflow_id = ${held.workflowId}`
  for (const name of ['steps', 'events', 'streams', 'messages']) t.ok(await countRows(sql, engine, name, done) > 0, `${name} before`)

  t.equal(await engine.deleteFinished({ olderThanMs: 30 * 60_000, batchSize: 2 }), done.length + kids.length, 'every old finished one, in batches of 2')
  for (const name of ['workflows', 'steps', 'events', 'streams', 'messages']) t.equal(await countRows(sql, engine, name, [...done, ...kids]), 0, `their ${name} are gone`)
  t.equal((await engine.getStatus(held.workflowId)).status, 'PENDING', 'the PENDING one is left')
  t.ok((await engine.listSteps(held.workflowId)) !== undefined)
  t.equal((await engine.getStatus(recent.workflowId)).status, 'SUCCESS', 'a recent one is left')
  t.equal(await engine.deleteFinished({ olderThanMs: 30 * 60_000 }), 0, 'nothing more')
  await t.rejects(engine.deleteFinished({ olderThanMs: -1 }), { statusCode: 400 })
  open.open()
  t.equal(await held.getResult({ timeoutMs: 20_000 }), 'released', 'the PENDING one finishes normally')
})

t.test('the retention option deletes in the background', async (t) => {
  const engine = await buildEngine(t, { workflows: all, retention: { finishedOlderThanMs: 1000, intervalMs: 200 } })
  const sql = adminSql(t)
  const h = await engine.startWorkflow(plain, 3)
  t.equal(await h.getResult(), 6)
  const [row] = await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM ${sql(table(engine, 'steps'))} WHERE workflow_id = ${h.workflowId}`
  t.equal(row!.n, 1)
  await pollUntil(async () => await countRows(sql, engine, 'workflows', [h.workflowId]) === 0, { what: 'the retention pass', timeoutMs: 20_000 })
  t.equal(await countRows(sql, engine, 'steps', [h.workflowId]), 0, 'its steps too')
})
