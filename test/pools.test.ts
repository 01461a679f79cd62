// The write paths have connections of their own: user transactions that hold
// every connection left to them cannot stall other workflows' starts and
// checkpoints.
import t from 'tap'
import { defineWorkflow } from '../lib/index.js'
import { buildEngine, pollUntil } from './helpers/db.js'
import { gate } from './helpers/workflows.js'

t.test('workflows start and checkpoint while transactions hold every transaction connection', async (t) => {
  const release = gate()
  let open = 0
  const holder = defineWorkflow('holder', async (ctx) => {
    return ctx.transaction('hold', async (sql) => {
      open++
      await release.wait()
      const [{ one }] = await sql`SELECT 1 AS one`
      return one as number
    })
  })
  const quick = defineWorkflow('quick', async (ctx, n: number) => {
    const a = await ctx.step('one', () => n + 1)
    const b = await ctx.step('two', () => a * 2)
    return ctx.step('three', () => b + 1)
  })
  // poolSize 4: one connection each for writes, starts, reads, and transactions.
  const engine = await buildEngine(t, { workflows: [holder, quick], poolSize: 4 })
  const holders = await Promise.all([1, 2, 3].map(() => engine.startWorkflow(holder, undefined)))
  await pollUntil(() => open > 0, { what: 'a transaction to take the general-purpose connection' })
  const handle = await engine.startWorkflow(quick, 1)
  t.equal(await handle.getResult({ timeoutMs: 10_000 }), 5, 'a workflow of steps finishes while the transactions wait')
  t.equal(open, 1, 'the other transactions are still waiting for the one transaction connection')
  release.open()
  t.same(await Promise.all(holders.map((h) => h.getResult())), [1, 1, 1])
})
