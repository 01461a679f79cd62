// Fairness (issue 12): a queue with a large backlog does not hold back
// another queue's work, nor, in a partitioned queue, one key's backlog
// another key's work. The backlogs are inserted in one statement each (as
// 20,000 enqueues would leave them) and drain slowly (a concurrency limit,
// a step that takes a while), so "before the backlog drains" is a count of
// rows still waiting, not a time.
import t from 'tap'
import { prepareInput } from '../lib/core/inputs.js'
import { defineQueue, defineWorkflow } from '../plugins/index.js'
import { adminSql, buildApp, uniqueSchema } from './helpers/db.js'

const BACKLOG = 20_000
const PARTITION_BACKLOG = 12_000

t.test('a 20,000-workflow backlog: an idle queue\'s work, and an idle partition key\'s, still start', async (t) => {
  const bulk = defineWorkflow('bulk', async (ctx) => {
    await ctx.step('slow', () => new Promise((resolve) => setTimeout(resolve, 20)))
  })
  const urgent = defineWorkflow('urgent', async (_ctx, input: { n: number }) => input.n)
  const backlog = defineQueue('backlog', { concurrency: 5 })
  const idle = defineQueue('idle')
  const tenants = defineQueue('tenants', { partitioned: true, concurrency: 2 })
  const schema = uniqueSchema()
  const app = await buildApp(t, { workflows: [bulk, urgent], queues: [backlog, idle, tenants], schema, resultPollIntervalMs: 100 })
  await app.ready()
  const sql = adminSql(t)
  const w = sql(`${schema}.workflows`)
  const { text, hash } = prepareInput(bulk, undefined)
  // As enqueueWorkflow leaves them: ENQUEUED, owned by nobody, in sequence.
  const fill = (queue: string, n: number, key: string | null) => sql`
    INSERT INTO ${w} (workflow_id, name, status, input, input_hash, executor_id, epoch, queue_name, priority, queue_seq, visible_at, partition_key)
    SELECT ${queue} || '-' || i, 'bulk', 'ENQUEUED', ${text}, ${hash}, '', 1, ${queue}, 0, nextval(${`${schema}.queue_seq`}), clock_timestamp(), ${key}::text
    FROM generate_series(1, ${n}) AS i`
  await fill('backlog', BACKLOG, null)
  await fill('tenants', PARTITION_BACKLOG, 'big')
  // Enqueued through the API: the queue channel wakes the dispatchers.
  await app.workflows.enqueue(backlog, bulk, undefined)
  await app.workflows.enqueue(tenants, bulk, undefined, { partitionKey: 'big' })
  const waiting = async (queue: string) => {
    const [{ n }] = await sql<{ n: number }[]>`SELECT count(*)::int AS n FROM ${w} WHERE queue_name = ${queue} AND status = 'ENQUEUED'`
    return n
  }

  const other = await app.workflows.enqueue(idle, urgent, { n: 1 })
  t.equal(await other.getResult({ timeoutMs: 30_000 }), 1, 'the idle queue\'s workflow ran')
  const left = await waiting('backlog')
  t.ok(left > BACKLOG - 5000, `while ${left} of the backlog still waited`)

  const small = await app.workflows.enqueue(tenants, urgent, { n: 2 }, { partitionKey: 'small' })
  t.equal(await small.getResult({ timeoutMs: 30_000 }), 2, 'the idle key\'s workflow ran')
  const leftBig = await waiting('tenants')
  t.ok(leftBig > PARTITION_BACKLOG - 5000, `while ${leftBig} of key big still waited`)
})
