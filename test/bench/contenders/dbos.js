// Contender "dbos": the same 3-step workflow on @dbos-inc/dbos-sdk (DBOS
// Transact) with its defaults, in a process of its own (DBOS keeps global state).
import { DBOS } from '@dbos-inc/dbos-sdk'
import Fastify from 'fastify'
import postgres from 'postgres'

export const name = 'dbos'

// BENCH_POOL sets both contenders' pool size; default: each library's own (10 for both).
const poolSize = process.env.BENCH_POOL ? { systemDatabasePoolSize: Number(process.env.BENCH_POOL) } : {}

const threeSteps = DBOS.registerWorkflow(async (n) => {
  const a = await DBOS.runStep(async () => n + 1, { name: 'one' })
  const b = await DBOS.runStep(async () => a * 2, { name: 'two' })
  return DBOS.runStep(async () => `done:${b}`, { name: 'three' })
}, { name: 'threeSteps' })

/** For the sleeping phase: one step, then DBOS's durable sleep (it waits in memory). */
const sleeper = DBOS.registerWorkflow(async (n, ms) => {
  await DBOS.runStep(async () => n + 1, { name: 'one' })
  await DBOS.sleep(ms)
  return n
}, { name: 'sleeper' })

export async function open (systemDatabaseUrl) {
  DBOS.setConfig({ name: 'bench', systemDatabaseUrl, logLevel: 'error', ...poolSize })
  await DBOS.launch()
  let app
  let probe
  return {
    startOne: (i) => DBOS.startWorkflow(threeSteps)(i),
    async runOne (i) {
      const handle = await DBOS.startWorkflow(threeSteps)(i)
      return handle.getResult()
    },
    startSleeper: (i, ms) => DBOS.startWorkflow(sleeper)(i, ms),
    /** Workflows whose sleep is recorded (DBOS writes its end time before it starts waiting). */
    async asleep () {
      probe ??= postgres(systemDatabaseUrl, { max: 1, onnotice: () => {} })
      const [{ n }] = await probe`SELECT count(*)::int AS n FROM dbos.operation_outputs WHERE function_name = 'DBOS.sleep'`
      return n
    },
    async app () {
      app = Fastify({ logger: false })
      let n = 0
      // What the plugin does for us: the idempotency key header becomes the workflow id.
      app.post('/wf', async (req) => {
        const handle = await DBOS.startWorkflow(threeSteps, { workflowID: req.headers['dbos-idempotency-key'] })(++n)
        return { result: await handle.getResult() }
      })
      return app
    },
    async close () {
      await app?.close()
      await probe?.end({ timeout: 5 })
      await DBOS.shutdown()
    }
  }
}
