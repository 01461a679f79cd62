// Contender "ours": the same 3-step workflow on this library's Engine (direct
// runs) and on its Fastify plugin (HTTP runs).
import Fastify from 'fastify'
import postgres from 'postgres'
import dbosPlugin from '../../../dist/plugins/index.js'
import { defineWorkflow, Engine } from '../../../dist/lib/index.js'

const silent = { debug () {}, info () {}, warn: console.warn, error: console.error }

export const threeSteps = defineWorkflow('threeSteps', async (ctx, n) => {
  const a = await ctx.step('one', () => n + 1)
  const b = await ctx.step('two', () => a * 2)
  return ctx.step('three', () => `done:${b}`)
})

/** For the sleeping phase: one step, then a durable sleep that suspends the workflow. */
export const sleeper = defineWorkflow('sleeper', async (ctx, { n, ms }) => {
  await ctx.step('one', () => n + 1)
  await ctx.sleep(ms)
  return n
})

export const name = 'ours'

// BENCH_POOL sets both contenders' pool size; default: each library's own (10 for both).
const poolSize = process.env.BENCH_POOL ? { poolSize: Number(process.env.BENCH_POOL) } : {}

/** Opens the engine; `app()` swaps it for a Fastify app with the plugin on the same database. */
export async function open (databaseUrl) {
  let engine = new Engine({ databaseUrl, workflows: [threeSteps, sleeper], logger: silent, ...poolSize })
  await engine.start()
  let app
  let probe
  return {
    startOne: (i) => engine.startWorkflow(threeSteps, i),
    async runOne (i) {
      const handle = await engine.startWorkflow(threeSteps, i)
      return handle.getResult()
    },
    startSleeper: (i, ms) => engine.startWorkflow(sleeper, { n: i, ms }),
    /** Workflows suspended in their sleep: wake_at set. */
    async asleep () {
      probe ??= postgres(databaseUrl, { max: 1, onnotice: () => {} })
      const [{ n }] = await probe`SELECT count(*)::int AS n FROM dbos.workflows WHERE wake_at IS NOT NULL`
      return n
    },
    async app () {
      // One engine per process: the plugin brings its own, so stop the direct one first.
      await engine?.stop()
      engine = undefined
      app = Fastify({ logger: false })
      await app.register(dbosPlugin, { databaseUrl, workflows: [threeSteps], logger: silent, ...poolSize })
      let n = 0
      app.post('/wf', async (req) => ({ result: await req.workflows.run(threeSteps, ++n) }))
      return app
    },
    async close () {
      await engine?.stop()
      await app?.close()
      await probe?.end({ timeout: 5 })
    }
  }
}
