// ctx.transaction beside pipelined reads. postgres.js 3.4 sends a BEGIN that
// fills a connection's pipeline (its 100th query in flight) without reserving
// the connection (porsager/postgres#823, #1189): the transaction fails with
// UNSAFE_TRANSACTION, which used to become the step's stored outcome, and the
// connection is left inside an open transaction. The engine keeps
// transactions on a pool of their own (store/connect.ts), where no query is
// ever pipelined.
import t from 'tap'
import { defineWorkflow, type Engine } from '../lib/index.js'
import { adminSql, buildEngine } from './helpers/db.js'

t.test('a transaction that begins behind a full pipeline of reads commits, once', async (t) => {
  const admin = adminSql(t)
  let engine!: Engine
  // Reads are queued on the engine's connections in this turn of the event
  // loop; one setImmediate later they are written out and none is answered
  // yet (answers arrive in a later poll phase), so the BEGIN lands behind
  // exactly `reads` pipelined queries. Which count fills a pipeline depends on
  // the pool's size, so the workflows below try a range of them.
  const writer = defineWorkflow('writer', async (ctx, reads: number) => {
    const pending = Array.from({ length: reads }, () => engine.getStatus(ctx.workflowId).catch(() => {}))
    await new Promise((resolve) => setImmediate(resolve))
    const written = await ctx.transaction('write', async (sql) => {
      const [row] = await sql<{ n: number }[]>`
        INSERT INTO ${sql(engine.options.schema + '.ledger')} (workflow_id) VALUES (${ctx.workflowId}) RETURNING 1 AS n`
      return row!.n
    })
    await Promise.all(pending)
    return written
  })
  engine = await buildEngine(t, { poolSize: 4, workflows: [writer] })
  const ledger = admin(engine.options.schema + '.ledger')
  await admin`CREATE TABLE ${ledger} (workflow_id text PRIMARY KEY)`
  const failures: unknown[] = []
  for (let reads = 95; reads <= 305; reads++) {
    // An explicit id: the start is written before the run, so nothing else
    // is in flight on the engine's connections when the reads go out.
    const handle = await engine.startWorkflow(writer, reads, { workflowId: `w-${reads}` })
    await handle.getResult({ timeoutMs: 30_000 }).catch((err: { code?: string }) => failures.push({ reads, code: err.code }))
  }
  t.same(failures, [], 'no transaction failed')
  const [{ rows }] = await admin<{ rows: number }[]>`SELECT count(*)::int AS rows FROM ${ledger}`
  t.equal(rows, 211, 'every transaction committed exactly once')
  // Other test files' engines share the server: only connections whose last
  // statement touched this test's schema count.
  const open = await admin`
    SELECT 1 FROM pg_stat_activity
    WHERE application_name = 'fastify-dbos' AND state = 'idle in transaction' AND strpos(query, ${engine.options.schema}) > 0`
  t.equal(open.length, 0, 'no connection is left inside a transaction')
})
