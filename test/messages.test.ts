// ctx.recv / ctx.send / engine.send (docs/Guides/messages.md): delivery,
// order and exactly-once consumption under concurrent senders, idempotency
// keys, timeouts (in memory and suspended), and the errors of bad calls.
// Every check reads the outcome back from Postgres (results, the messages
// table, the workflow's row), not from this process's own bookkeeping.
import type postgres from 'postgres'
import t from 'tap'
import { defineWorkflow, type Engine } from '../lib/index.js'
import { kLocalRuns } from '../lib/core/symbols.js'
import { adminSql, buildEngine, pollUntil } from './helpers/db.js'
import { gate, sharedSchema } from './helpers/workflows.js'

function table (engine: Engine, name: string): string {
  return `${engine.options.schema}.${name}`
}

async function waitingTopic (sql: postgres.Sql, engine: Engine, id: string): Promise<string | null | undefined> {
  const [row] = await sql<{ waiting_topic: string | null }[]>`SELECT waiting_topic FROM ${sql(table(engine, 'workflows'))} WHERE workflow_id = ${id}`
  return row?.waiting_topic
}

async function codeOf (p: Promise<unknown>): Promise<{ code: string, statusCode?: number }> {
  try {
    await p
  } catch (err) {
    return err as { code: string, statusCode?: number }
  }
  throw new Error('expected a rejection')
}

/** Receives `n` messages on `topic` (no timeout) and returns them in the order received. */
const collector = defineWorkflow('collector', async (ctx, { n, topic }: { n: number, topic: string }) => {
  const got: unknown[] = []
  for (let i = 0; i < n; i++) got.push(await ctx.recv(topic))
  return got
})

/** One recv with a timeout; its result. */
const oneRecv = defineWorkflow('oneRecv', async (ctx, timeoutMs: number) => ctx.recv('t', { timeoutMs }))

/** A recv that times out, then another: what each got. */
const twoRecvs = defineWorkflow('twoRecvs', async (ctx, { first, second }: { first: number, second: number }) => {
  const a = await ctx.recv('t', { timeoutMs: first })
  await ctx.step('between', () => 'x')
  const b = await ctx.recv('t', { timeoutMs: second })
  return { a, b }
})

const held = gate()
/** Waits on a gate in a step before receiving: a message sent meanwhile must be kept. */
const lateReceiver = defineWorkflow('lateReceiver', async (ctx) => {
  await ctx.step('hold', () => held.wait())
  return ctx.recv()
})

/** Sends to another workflow from inside a workflow. */
const sender = defineWorkflow('sender', async (ctx, to: string) => {
  await ctx.send(to, { from: ctx.workflowId }, { topic: 't' })
  await ctx.send(to, 'second', { topic: 't' })
  return 'sent'
})

/** Tries bad recv timeouts and returns each one's error code. */
const badRecvs = defineWorkflow('badRecvs', async (ctx) => {
  const codes: string[] = []
  for (const timeoutMs of [-1, Number.NaN, 1e15, '10' as unknown as number]) {
    try { await ctx.recv('t', { timeoutMs }) } catch (err) { codes.push((err as { code: string }).code) }
  }
  try { await ctx.recv('bad\u0000topic') } catch (err) { codes.push((err as { code: string }).code) }
  try { await ctx.send(ctx.workflowId, { self: null as unknown }, { topic: 'x\u0000' }) } catch (err) { codes.push((err as { code: string }).code) }
  return codes
})

const all = [collector, oneRecv, twoRecvs, lateReceiver, sender, badRecvs]

t.test('send then recv: the message arrives, and is marked consumed in the table', async (t) => {
  const engine = await buildEngine(t, { workflows: all })
  const sql = adminSql(t)
  const h = await engine.startWorkflow(collector, { n: 2, topic: 'a' })
  await engine.send(h.workflowId, { hello: 1 }, { topic: 'a' })
  await engine.send(h.workflowId, 'other topic', { topic: 'b' })
  await engine.send(h.workflowId, [2], { topic: 'a' })
  t.same(await h.getResult({ timeoutMs: 20_000 }), [{ hello: 1 }, [2]], 'the two messages on its topic, in send order')
  const rows = await sql<{ topic: string, consumed_step: number | null }[]>`
    SELECT topic, consumed_step FROM ${sql(table(engine, 'messages'))} WHERE workflow_id = ${h.workflowId} ORDER BY seq`
  t.same(rows.map((r) => [r.topic, r.consumed_step !== null]), [['a', true], ['b', false], ['a', true]],
    'the messages on the topic are consumed, the other one is left')
})

t.test('a message sent before the workflow waits is kept', async (t) => {
  const engine = await buildEngine(t, { workflows: all })
  const h = await engine.startWorkflow(lateReceiver, undefined)
  await pollUntil(() => held.entered > 0, { what: 'the step to be entered' })
  await engine.send(h.workflowId, 'early')
  held.open()
  t.equal(await h.getResult({ timeoutMs: 20_000 }), 'early')
})

t.test('20 concurrent senders x 10 messages: each consumed exactly once, in send order per sender', async (t) => {
  const engine = await buildEngine(t, { workflows: all })
  const sql = adminSql(t)
  const n = 20 * 10
  const h = await engine.startWorkflow(collector, { n, topic: 'many' })
  await Promise.all(Array.from({ length: 20 }, async (_, s) => {
    for (let i = 0; i < 10; i++) await engine.send(h.workflowId, { s, i }, { topic: 'many' })
  }))
  const got = await h.getResult({ timeoutMs: 40_000 }) as { s: number, i: number }[]
  t.equal(got.length, n)
  t.equal(new Set(got.map((m) => `${m.s}:${m.i}`)).size, n, 'no message received twice')
  for (let s = 0; s < 20; s++) {
    t.same(got.filter((m) => m.s === s).map((m) => m.i), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], `sender ${s}'s messages in its order`)
  }
  const order = await sql<{ message: string }[]>`SELECT message FROM ${sql(table(engine, 'messages'))} WHERE workflow_id = ${h.workflowId} ORDER BY seq`
  t.same(got, order.map((r) => JSON.parse(r.message)), 'received in the order the sends committed (seq)')
  const [steps] = await sql<{ n: number }[]>`
    SELECT count(DISTINCT consumed_step)::int AS n FROM ${sql(table(engine, 'messages'))} WHERE workflow_id = ${h.workflowId}`
  t.equal(steps!.n, n, 'every message consumed by its own recv step')
})

t.test('a send with an idempotency key delivers once however often it is repeated', async (t) => {
  const engine = await buildEngine(t, { workflows: all })
  const sql = adminSql(t)
  const h = await engine.startWorkflow(twoRecvs, { first: 20_000, second: 1500 })
  await Promise.all([1, 2, 3].map(() => engine.send(h.workflowId, 'once', { topic: 't', idempotencyKey: 'k1' })))
  await engine.send(h.workflowId, 'once', { topic: 't', idempotencyKey: 'k1' })
  t.same(await h.getResult({ timeoutMs: 20_000 }), { a: 'once', b: null }, 'the second recv found no copy')
  const [row] = await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM ${sql(table(engine, 'messages'))} WHERE workflow_id = ${h.workflowId}`
  t.equal(row!.n, 1, 'one row stored')
  // Delivered before: not an error after the workflow finished either.
  await engine.send(h.workflowId, 'once', { topic: 't', idempotencyKey: 'k1' })
  t.match(await codeOf(engine.send(h.workflowId, 'once', { topic: 't', idempotencyKey: 'k2' })), { code: 'DBOS_ERR_WORKFLOW_FINISHED', statusCode: 409 })
})

t.test('recv returns null after its timeout (waiting in memory)', async (t) => {
  const engine = await buildEngine(t, { workflows: all })
  const h = await engine.startWorkflow(oneRecv, 300)
  t.equal(await h.getResult({ timeoutMs: 20_000 }), null)
  const steps = await engine.listSteps(h.workflowId)
  t.same(steps.map((s) => s.name), ['recv.deadline', 'recv'], 'the deadline and the result are recorded')
  t.equal(steps[1]!.output, null)
})

t.test('a suspended recv with a timeout returns null at its deadline, without any message', async (t) => {
  const engine = await buildEngine(t, { workflows: all, sleepInMemoryMaxMs: 0 })
  const sql = adminSql(t)
  const h = await engine.startWorkflow(oneRecv, 1500)
  await pollUntil(async () => await waitingTopic(sql, engine, h.workflowId) === 't', { what: 'the recv to suspend' })
  t.equal(await h.getResult({ timeoutMs: 30_000 }), null, 'woken at the deadline by the wake-up scheduler')
  t.equal((await engine.getStatus(h.workflowId)).status, 'SUCCESS')
})

t.test('a long recv suspends (no local run) and a message wakes it', async (t) => {
  const engine = await buildEngine(t, { workflows: all, sleepInMemoryMaxMs: 0 })
  const sql = adminSql(t)
  const h = await engine.startWorkflow(collector, { n: 1, topic: 'w' })
  await pollUntil(async () => await waitingTopic(sql, engine, h.workflowId) === 'w', { what: 'the recv to suspend' })
  await pollUntil(() => engine[kLocalRuns]().length === 0, { what: 'the run to leave' })
  const status = await engine.getStatus(h.workflowId)
  t.equal(status.status, 'PENDING')
  await engine.send(h.workflowId, 'wake', { topic: 'w' })
  t.same(await h.getResult({ timeoutMs: 20_000 }), ['wake'])
  t.equal(await waitingTopic(sql, engine, h.workflowId), null, 'no longer waiting')
})

t.test('a message sent after a recv\'s deadline is left for the next recv', async (t) => {
  const engine = await buildEngine(t, { workflows: all })
  const h = await engine.startWorkflow(twoRecvs, { first: 200, second: 20_000 })
  await pollUntil(async () => (await engine.listSteps(h.workflowId)).some((s) => s.name === 'between'), { what: 'the first recv to time out' })
  await engine.send(h.workflowId, 'late', { topic: 't' })
  t.same(await h.getResult({ timeoutMs: 20_000 }), { a: null, b: 'late' })
})

t.test('a message sent after a suspended recv\'s deadline, before it woke, is the next recv\'s', async (t) => {
  // Woken by the message itself (or the deadline): either way the first recv
  // is past its deadline and must not take a message sent after it.
  const restarted = await buildEngine(t, { workflows: all, sleepInMemoryMaxMs: 0 })
  const sql = adminSql(t)
  const h = await restarted.startWorkflow(twoRecvs, { first: 1000, second: 20_000 })
  await pollUntil(async () => await waitingTopic(sql, restarted, h.workflowId) === 't', { what: 'the first recv to suspend' })
  const deadline = (await restarted.listSteps(h.workflowId))[0]!.output as number
  // Hold the workflow's row so that neither the deadline nor the message can wake it before the message is in.
  await sql.begin(async (tx) => {
    await tx`SELECT 1 FROM ${tx(table(restarted, 'workflows'))} WHERE workflow_id = ${h.workflowId} FOR UPDATE`
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, deadline - Date.now()) + 300))
    // As a send that commits now: created_at is its statement's time, past the deadline.
    await tx`INSERT INTO ${tx(table(restarted, 'messages'))} (workflow_id, topic, message, created_at) VALUES (${h.workflowId}, 't', '"late"', clock_timestamp())`
  })
  await restarted.send(h.workflowId, 'nudge', { topic: 'other' }).catch(() => {})
  t.same(await h.getResult({ timeoutMs: 30_000 }), { a: null, b: 'late' })
})

t.test('ctx.send delivers to another workflow, exactly once', async (t) => {
  const engine = await buildEngine(t, { workflows: all })
  const sql = adminSql(t)
  const target = await engine.startWorkflow(collector, { n: 2, topic: 't' })
  const from = await engine.startWorkflow(sender, target.workflowId)
  t.equal(await from.getResult({ timeoutMs: 20_000 }), 'sent')
  t.same(await target.getResult({ timeoutMs: 20_000 }), [{ from: from.workflowId }, 'second'])
  const keys = await sql<{ idempotency_key: string }[]>`SELECT idempotency_key FROM ${sql(table(engine, 'messages'))} WHERE workflow_id = ${target.workflowId} ORDER BY seq`
  t.same(keys.map((k) => k.idempotency_key), [`${from.workflowId}:send:0`, `${from.workflowId}:send:1`], 'keyed by sender and position')
})

t.test('bad sends and recvs are refused with their codes', async (t) => {
  const engine = await buildEngine(t, { workflows: all })
  const sql = adminSql(t)
  t.match(await codeOf(engine.send('no-such-workflow', 'x')), { code: 'DBOS_ERR_WORKFLOW_NOT_FOUND', statusCode: 404 })
  const done = await engine.startWorkflow(oneRecv, 0)
  t.equal(await done.getResult({ timeoutMs: 20_000 }), null)
  t.match(await codeOf(engine.send(done.workflowId, 'x')), { code: 'DBOS_ERR_WORKFLOW_FINISHED', statusCode: 409 })

  const waiting = await engine.startWorkflow(collector, { n: 1, topic: '' })
  const circular: Record<string, unknown> = {}
  circular.self = circular
  t.match(await codeOf(engine.send(waiting.workflowId, circular)), { code: 'DBOS_ERR_UNSERIALIZABLE_VALUE', statusCode: 400 })
  t.match(await codeOf(engine.send(waiting.workflowId, 'x', { topic: 'a\u0000b' })), { statusCode: 400 })
  t.match(await codeOf(engine.send(waiting.workflowId, 'x', { idempotencyKey: 'a\u0000b' })), { statusCode: 400 })
  const [row] = await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM ${sql(table(engine, 'messages'))}`
  t.equal(row!.n, 0, 'nothing refused was stored')
  await engine.send(waiting.workflowId, 'fine')
  t.same(await waiting.getResult({ timeoutMs: 20_000 }), ['fine'])

  const bad = await engine.startWorkflow(badRecvs, undefined)
  t.same(await bad.getResult({ timeoutMs: 20_000 }), Array(6).fill('DBOS_ERR_INVALID_CALL'),
    'negative, NaN, huge and non-number timeouts, an unstorable topic: refused in the workflow')
  t.same(await engine.listSteps(bad.workflowId), [], 'refused calls take no position')
})

t.test('two instances: the waiter suspends on one, senders on both; each message consumed once, in order per sender', async (t) => {
  const processes = sharedSchema(t, 'msg2')
  const [owner, other] = await Promise.all([
    processes.start({ workflows: all, executorId: 'owner', sleepInMemoryMaxMs: 0 }),
    processes.start({ workflows: all, executorId: 'other', sleepInMemoryMaxMs: 0 })
  ])
  const sql = adminSql(t)
  const h = await owner.startWorkflow(collector, { n: 100, topic: 'x' })
  await Promise.all(Array.from({ length: 10 }, async (_, s) => {
    const via = s % 2 === 0 ? owner : other
    for (let i = 0; i < 10; i++) await via.send(h.workflowId, { s, i }, { topic: 'x' })
  }))
  const got = await other.getResult(h.workflowId, { timeoutMs: 45_000 }) as { s: number, i: number }[]
  t.equal(new Set(got.map((m) => `${m.s}:${m.i}`)).size, 100, 'all 100, none twice')
  for (let s = 0; s < 10; s++) t.same(got.filter((m) => m.s === s).map((m) => m.i), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], `sender ${s} in order`)
  const [row] = await sql<{ executor_id: string }[]>`SELECT executor_id FROM ${sql(processes.schema + '.workflows')} WHERE workflow_id = ${h.workflowId}`
  t.equal(row!.executor_id, 'owner', 'woken where it is owned, whoever sent')
})
