// Enqueueing (issue 12) in one process: deduplication under concurrent
// enqueues, delayMs, enqueue inside the caller's own transaction, the
// request's idempotency key on a route that enqueues, debounce, and the
// inputs that are refused.
import postgres from 'postgres'
import t from 'tap'
import { defineQueue, defineWorkflow, Engine, type QueueDefinition } from '../plugins/index.js'
import { adminSql, buildApp, databaseUrl, pollUntil, uniqueSchema } from './helpers/db.js'
import { Counter, errorBody, gate, type Gate } from './helpers/workflows.js'

const KEY = 'dbos-idempotency-key'

/** A workflow that counts its runs per input, and waits for `hold` when given one. */
function worker (counter: Counter, hold?: Gate) {
  return defineWorkflow('worker', async (ctx, input: { n: number }) => {
    await ctx.step('work', async () => {
      counter.hit(`run:${ctx.workflowId}`)
      counter.hit(`input:${input.n}`)
      await hold?.wait()
    })
    return input.n
  })
}

interface QueueRow { workflow_id: string, status: string, created_at: Date, visible_at: Date, dequeued_at: Date | null, input: string, deduplication_id: string | null, request_id: string | null }

function rowsOf (sql: postgres.Sql, schema: string) {
  return async (): Promise<QueueRow[]> => sql<QueueRow[]>`
    SELECT workflow_id, status, created_at, visible_at, dequeued_at, input, deduplication_id, request_id
    FROM ${sql(schema)}.workflows ORDER BY queue_seq`
}

t.test('deduplication: of 50 concurrent enqueues from two instances, one is accepted and 49 get 409; once it finished, a new one is', async (t) => {
  const counter = new Counter()
  const hold = gate()
  const wf = worker(counter, hold)
  const q = defineQueue('dedup')
  const schema = uniqueSchema()
  const a = await buildApp(t, { workflows: [wf], queues: [q], schema, resultPollIntervalMs: 100 }, { keepSchema: true })
  const b = await buildApp(t, { workflows: [wf], queues: [q], schema, resultPollIntervalMs: 100 })
  for (const app of [a, b]) {
    app.post('/enqueue', async (req) => ({ workflowId: (await app.workflows.enqueue(q, wf, req.body as { n: number }, { deduplicationId: 'order-7' })).workflowId }))
    await app.ready()
  }
  const answers = await Promise.all(Array.from({ length: 50 }, (_, n) => (n % 2 === 0 ? a : b).inject({ method: 'POST', url: '/enqueue', payload: { n } })))
  const accepted = answers.filter((r) => r.statusCode === 200)
  t.equal(accepted.length, 1, 'one accepted')
  const refused = answers.filter((r) => r.statusCode !== 200)
  t.same([...new Set(refused.map((r) => `${r.statusCode} ${errorBody(r).code}`))], ['409 DBOS_ERR_QUEUE_DEDUPLICATED'], '49 refused with 409 DBOS_ERR_QUEUE_DEDUPLICATED')
  t.equal(refused.length, 49)
  const rows = rowsOf(adminSql(t), schema)
  t.equal((await rows()).length, 1, 'one workflow row')

  // PENDING (running, held) still counts.
  await pollUntil(() => hold.entered === 1, { what: 'the accepted one to run' })
  const again = await a.inject({ method: 'POST', url: '/enqueue', payload: { n: 100 } })
  t.equal(errorBody(again).code, 'DBOS_ERR_QUEUE_DEDUPLICATED', 'refused while the accepted one runs')
  hold.open()
  const first = accepted[0]!.json().workflowId
  await (await a.workflows.retrieve(first)).getResult()
  const next = await b.inject({ method: 'POST', url: '/enqueue', payload: { n: 101 } })
  t.equal(next.statusCode, 200, 'accepted once the first finished')
  t.equal(await (await b.workflows.retrieve(next.json().workflowId)).getResult(), 101)
  t.equal(counter.get(`run:${first}`), 1, 'the accepted one ran once')
})

t.test('delayMs: not taken before its delay, and it does not hold back work enqueued after it', async (t) => {
  const counter = new Counter()
  const wf = worker(counter)
  const q = defineQueue('later', { concurrency: 1 })
  const schema = uniqueSchema()
  const app = await buildApp(t, { workflows: [wf], queues: [q], schema })
  await app.ready()
  const delayed = await app.workflows.enqueue(q, wf, { n: 1 }, { delayMs: 1500 })
  t.equal((await delayed.getStatus()).status, 'ENQUEUED')
  const now = await app.workflows.enqueue(q, wf, { n: 2 })
  t.equal(await now.getResult(), 2, 'the one enqueued after it ran')
  t.equal((await delayed.getStatus()).status, 'ENQUEUED', 'the delayed one still waits')
  t.equal(await delayed.getResult({ timeoutMs: 30_000 }), 1, 'then it ran')
  const [row] = (await rowsOf(adminSql(t), schema)()).filter((r) => r.workflow_id === delayed.workflowId)
  t.ok(row!.dequeued_at!.getTime() - row!.created_at.getTime() >= 1500, `taken ${row!.dequeued_at!.getTime() - row!.created_at.getTime()} ms after it was enqueued (database clock)`)
})

t.test('enqueue inside the caller\'s transaction: a rollback leaves nothing, a commit runs it, a 409 does not abort the transaction', async (t) => {
  const counter = new Counter()
  const wf = worker(counter)
  const q = defineQueue('tx')
  const schema = uniqueSchema()
  const app = await buildApp(t, { workflows: [wf], queues: [q], schema })
  await app.ready()
  // The app's own connection, another postgres.js instance than the engine's.
  const own = postgres(databaseUrl, { max: 2, onnotice: () => {} })
  t.teardown(() => own.end({ timeout: 5 }))
  const admin = adminSql(t)
  const rows = rowsOf(admin, schema)
  await own`CREATE TABLE ${own(schema)}.orders (id int PRIMARY KEY, workflow_id text)`

  const rolledBack = await own.begin(async (tx) => {
    const handle = await app.workflows.enqueue(q, wf, { n: 1 }, { sql: tx })
    await tx`INSERT INTO ${tx(schema)}.orders VALUES (1, ${handle.workflowId})`
    throw Object.assign(new Error('rollback'), { workflowId: handle.workflowId })
  }).catch((err) => err.workflowId)
  t.ok(typeof rolledBack === 'string')
  t.same(await rows(), [], 'rolled back: no workflow')
  await t.rejects(app.workflows.getStatus(rolledBack), { code: 'DBOS_ERR_WORKFLOW_NOT_FOUND' })

  let seenInside: QueueRow[] = []
  const committed = await own.begin(async (tx) => {
    const handle = await app.workflows.enqueue(q, wf, { n: 2 }, { sql: tx, deduplicationId: 'once' })
    await tx`INSERT INTO ${tx(schema)}.orders VALUES (2, ${handle.workflowId})`
    // Nothing outside the transaction sees it yet, so nothing can run it.
    seenInside = await rows()
    // A refusal inside the transaction leaves it usable.
    await t.rejects(app.workflows.enqueue(q, wf, { n: 3 }, { sql: tx, deduplicationId: 'once' }), { code: 'DBOS_ERR_QUEUE_DEDUPLICATED' })
    await tx`INSERT INTO ${tx(schema)}.orders VALUES (3, ${handle.workflowId})`
    return handle.workflowId
  })
  t.same(seenInside, [], 'not visible before the commit')
  t.equal(await (await app.workflows.retrieve(committed)).getResult(), 2, 'committed: it runs')
  t.same((await own`SELECT id FROM ${own(schema)}.orders ORDER BY id`).map((r) => r.id), [2, 3], 'the transaction\'s own writes committed with it')
  t.equal(counter.get(`run:${committed}`), 1)
  t.equal(counter.get('input:3'), 0)
})

t.test('a route that enqueues under an idempotency key: a retried request enqueues nothing new, also while the first is in flight', async (t) => {
  const counter = new Counter()
  const hold = gate()
  const wf = worker(counter, hold)
  const q = defineQueue('orders')
  const schema = uniqueSchema()
  const app = await buildApp(t, { workflows: [wf], queues: [q], schema })
  app.post('/order', async (req) => {
    const first = await req.workflows.enqueue(q, wf, req.body as { n: number })
    const second = await req.workflows.enqueue(q, wf, { n: (req.body as { n: number }).n + 1000 })
    return { ids: [first.workflowId, second.workflowId] }
  })
  const send = () => app.inject({ method: 'POST', url: '/order', headers: { [KEY]: 'k-1', 'dbos-request-id': 'req-1' }, payload: { n: 1 } })
  const firstAnswer = await send()
  t.equal(firstAnswer.statusCode, 200)
  t.same(firstAnswer.json().ids, ['k-1', 'k-1::2'], 'ids derived from the key, as for start')
  const retries = await Promise.all([send(), send(), send(), send(), send()])
  t.same(retries.map((r) => r.statusCode), [200, 200, 200, 200, 200], 'concurrent retries answered')
  t.ok(retries.every((r) => JSON.stringify(r.json().ids) === JSON.stringify(['k-1', 'k-1::2'])), 'with the same ids')
  const rows = await rowsOf(adminSql(t), schema)()
  t.same(rows.map((r) => r.workflow_id), ['k-1', 'k-1::2'], 'nothing new enqueued')
  t.ok(rows.every((r) => r.request_id === 'req-1'), 'the request id is stored')
  // Sent five times at once, none answered yet.
  const together = await Promise.all(Array.from({ length: 5 }, () => app.inject({ method: 'POST', url: '/order', headers: { [KEY]: 'k-2' }, payload: { n: 7 } })))
  t.same(together.map((r) => r.statusCode), [200, 200, 200, 200, 200], 'five at once, all answered')
  t.ok(together.every((r) => JSON.stringify(r.json().ids) === JSON.stringify(['k-2', 'k-2::2'])), 'with the same ids')
  const changed = await app.inject({ method: 'POST', url: '/order', headers: { [KEY]: 'k-1' }, payload: { n: 2 } })
  t.equal(changed.statusCode, 422, 'the key with another body: 422')
  t.same((await rowsOf(adminSql(t), schema)()).map((r) => r.workflow_id), ['k-1', 'k-1::2', 'k-2', 'k-2::2'], 'two per key')
  hold.open()
  for (const id of ['k-1', 'k-1::2', 'k-2', 'k-2::2']) await (await app.workflows.retrieve(id)).getResult()
  const afterwards = await send()
  t.same(afterwards.json().ids, ['k-1', 'k-1::2'], 'a retry after they finished: the same workflows')
  t.equal(counter.get('run:k-1'), 1, 'each ran once')
  t.equal(counter.get('run:k-1::2'), 1)
  t.equal(counter.get('run:k-2'), 1)
})

t.test('under one key, the same input started, and enqueued on two queues, makes three workflows; the same call twice makes one', async (t) => {
  const wf = defineWorkflow('sameInput', async (_ctx, n: number) => n)
  const a = defineQueue('qa')
  const b = defineQueue('qb')
  const app = await buildApp(t, { workflows: [wf], queues: [a, b], schema: uniqueSchema() })
  app.post('/fan', async (req) => {
    const handles = [
      await req.workflows.start(wf, 1), await req.workflows.enqueue(a, wf, 1), await req.workflows.enqueue(b, wf, 1),
      await req.workflows.enqueue('qa', wf, 1), await req.workflows.start(wf, 1)
    ]
    return handles.map((h) => h.workflowId)
  })
  const res = await app.inject({ method: 'POST', url: '/fan', headers: { [KEY]: 'fan-1' }, payload: {} })
  t.same(res.json(), ['fan-1', 'fan-1::2', 'fan-1::3', 'fan-1::2', 'fan-1'])
  t.match(await app.workflows.getStatus('fan-1::3'), { queueName: 'qb' }, 'the enqueue on the second queue is its own workflow, on that queue')
})

t.test('debounce: a burst collapses into one workflow that runs once, with the last input', async (t) => {
  const counter = new Counter()
  const wf = worker(counter)
  const other = defineWorkflow('other', async (_ctx, input: { n: number }) => input.n)
  const q = defineQueue('debounced')
  const schema = uniqueSchema()
  const app = await buildApp(t, { workflows: [wf, other], queues: [q], schema })
  await app.ready()
  // Each enqueue of the burst comes well within a period of the one before.
  const debounce = { key: 'user-1', periodMs: 1000 }
  const ids: string[] = []
  for (let n = 1; n <= 10; n++) ids.push((await app.workflows.enqueue(q, wf, { n }, { debounce })).workflowId)
  t.equal(new Set(ids).size, 1, 'every enqueue of the burst got the same workflow')
  // Another key is its own workflow.
  const apart = await app.workflows.enqueue(q, wf, { n: 50 }, { debounce: { key: 'user-2', periodMs: 1000 } })
  t.not(apart.workflowId, ids[0])
  const handle = await app.workflows.retrieve<number>(ids[0]!)
  t.equal(await handle.getResult({ timeoutMs: 30_000 }), 10, 'it ran with the last input')
  t.equal(counter.get(`run:${ids[0]}`), 1, 'once')
  t.equal(counter.get('input:1') + counter.get('input:5'), 0, 'earlier inputs never ran')
  t.equal(await apart.getResult({ timeoutMs: 30_000 }), 50)

  // A concurrent burst: one workflow too.
  const concurrent = await Promise.all(Array.from({ length: 20 }, (_, i) => app.workflows.enqueue(q, wf, { n: 200 + i }, { debounce })))
  t.equal(new Set(concurrent.map((h) => h.workflowId)).size, 1, 'a concurrent burst: one workflow')
  t.not(concurrent[0]!.workflowId, ids[0], 'a new one, since the first already ran')
  const result = await concurrent[0]!.getResult({ timeoutMs: 30_000 })
  t.ok(result >= 200 && result < 220)
  t.equal(counter.get(`run:${concurrent[0]!.workflowId}`), 1)

  // The key is taken by a waiting workflow of another definition: refused, not looped on.
  const waiting = await app.workflows.enqueue(q, wf, { n: 300 }, { debounce: { key: 'shared', periodMs: 60_000 } })
  await t.rejects(app.workflows.enqueue(q, other, { n: 301 }, { debounce: { key: 'shared', periodMs: 60_000 } }), { code: 'DBOS_ERR_INVALID_ARGUMENT', statusCode: 400 })
  t.equal((await waiting.getStatus()).status, 'ENQUEUED')
})

t.test('a cancelled workflow frees its slot; a queued workflow\'s timeout counts from when it is taken', async (t) => {
  const counter = new Counter()
  const hold = gate()
  const wf = worker(counter, hold)
  const quick = defineWorkflow('quick', async (ctx, input: { ms: number }) => {
    await ctx.step('wait', () => new Promise((resolve) => setTimeout(resolve, input.ms)))
    return input.ms
  })
  const q = defineQueue('single', { concurrency: 1 })
  const schema = uniqueSchema()
  const app = await buildApp(t, { workflows: [wf, quick], queues: [q], schema, resultPollIntervalMs: 100 })
  await app.ready()
  const stuck = await app.workflows.enqueue(q, wf, { n: 1 })
  await pollUntil(() => hold.entered === 1, { what: 'the first to hold the slot' })
  // Waits in the queue far longer than its timeout; runs within it once taken.
  const patient = await app.workflows.enqueue(q, quick, { ms: 50 }, { timeoutMs: 1000 })
  const tooSlow = await app.workflows.enqueue(q, quick, { ms: 2000 }, { timeoutMs: 300 })
  const sql = adminSql(t)
  await pollUntil(async () => (await sql<{ waited: boolean }[]>`
    SELECT clock_timestamp() - created_at > interval '1500 milliseconds' AS waited FROM ${sql(schema)}.workflows WHERE workflow_id = ${patient.workflowId}`)[0]!.waited,
  { what: 'the queued ones to wait longer than their timeouts' })
  t.equal((await patient.getStatus()).status, 'ENQUEUED', 'still waiting behind the first')
  await app.workflows.cancel(stuck.workflowId)
  t.equal(await patient.getResult({ timeoutMs: 20_000 }), 50, 'the cancelled one\'s slot went to the next, whose timeout had not started while it waited')
  await t.rejects(tooSlow.getResult({ timeoutMs: 20_000 }), { code: 'DBOS_ERR_WORKFLOW_TIMEOUT' }, 'one that runs past its timeout is cancelled')
  t.equal((await tooSlow.getStatus()).status, 'CANCELLED')
  hold.open()
})

t.test('refused: bad limits, unknown queues, unregistered workflows, bad enqueue options', async (t) => {
  const bad: [string, unknown][] = [
    ['', {}], ['x'.repeat(257), {}], ['nul\u0000', {}],
    ['q', { concurrency: 0 }], ['q', { concurrency: -1 }], ['q', { concurrency: 1.5 }], ['q', { concurrency: '2' }],
    ['q', { workerConcurrency: 0 }], ['q', { workerConcurrency: Infinity }],
    ['q', { rateLimit: { limit: 0, periodMs: 1000 } }], ['q', { rateLimit: { limit: 1, periodMs: 0 } }], ['q', { rateLimit: { limit: 1 } }],
    ['q', { partitioned: 'yes' }]
  ]
  for (const [name, options] of bad) {
    t.throws(() => defineQueue(name, options as any), { code: 'DBOS_ERR_INVALID_OPTION' }, `defineQueue(${JSON.stringify(name).slice(0, 20)}, ${JSON.stringify(options)})`)
  }
  const counter = new Counter()
  const wf = worker(counter)
  const stranger = defineWorkflow('stranger', async () => 1)
  const q = defineQueue('known')
  const app = await buildApp(t, { workflows: [wf], queues: [q] })
  await app.ready()
  const lookalike: QueueDefinition = defineQueue('known', { concurrency: 1 })
  for (const queue of ['unknown', defineQueue('unknown'), lookalike, '', undefined as any]) {
    await t.rejects(app.workflows.enqueue(queue, wf, { n: 1 }), { code: 'DBOS_ERR_UNKNOWN_QUEUE', statusCode: 500 }, `queue ${JSON.stringify(queue)}`)
  }
  await t.rejects(app.workflows.enqueue(q, stranger, undefined), { code: 'DBOS_ERR_UNKNOWN_WORKFLOW' })
  const options: Record<string, unknown>[] = [
    { priority: 1.5 }, { priority: 2 ** 31 }, { delayMs: -1 }, { delayMs: NaN }, { delayMs: '10' },
    { deduplicationId: 5 }, { partitionKey: {} }, { partitionKey: 'nul\u0000' },
    { debounce: { key: 'k', periodMs: 0 } }, { debounce: { key: 5, periodMs: 10 } }, { debounce: { key: 'k', periodMs: 10 }, workflowId: 'w' },
    { debounce: { key: 'k', periodMs: 10 }, deduplicationId: 'd' }, { sql: {} }
  ]
  for (const o of options) await t.rejects(app.workflows.enqueue(q, wf, { n: 1 }, o as any), { code: 'DBOS_ERR_INVALID_ARGUMENT', statusCode: 400 }, JSON.stringify(o))
  // A timeout gets the code a start gives it.
  for (const timeoutMs of [-5, 0, NaN, '10', 1e15]) {
    await t.rejects(app.workflows.enqueue(q, wf, { n: 1 }, { timeoutMs } as any), { code: 'DBOS_ERR_INVALID_TIMEOUT', statusCode: 400 }, `timeoutMs ${String(timeoutMs)}`)
  }
  await t.rejects(app.workflows.enqueue(q, wf, { n: 1 }, { requestId: 'a\u0000b' }), { code: 'DBOS_ERR_INVALID_REQUEST_ID' })
  await t.rejects(app.workflows.enqueue(q, wf, { n: 1 }, { workflowId: '' }), { code: 'DBOS_ERR_INVALID_WORKFLOW_ID' })
  t.equal(counter.get('input:1'), 0)
  t.same(await app.workflows.list({ queueName: 'known' }), [], 'nothing was enqueued')

  // The options are checked when the engine is made (the plugin's registration).
  t.throws(() => new Engine({ databaseUrl, workflows: [wf], queues: [q, defineQueue('known')] }), { code: 'DBOS_ERR_INVALID_OPTION' }, 'two queues with one name')
})
