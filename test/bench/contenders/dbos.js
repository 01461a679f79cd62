// Contender "dbos": the same 3-step workflow on @dbos-inc/dbos-sdk (DBOS
// Transact) with its defaults, in a process of its own (DBOS keeps global state).
import { DBOS } from '@dbos-inc/dbos-sdk'
import Fastify from 'fastify'

export const name = 'dbos'

// BENCH_POOL sets both contenders' pool size; default: each library's own (10 for both).
const poolSize = process.env.BENCH_POOL ? { systemDatabasePoolSize: Number(process.env.BENCH_POOL) } : {}

const threeSteps = DBOS.registerWorkflow(async (n) => {
  const a = await DBOS.runStep(async () => n + 1, { name: 'one' })
  const b = await DBOS.runStep(async () => a * 2, { name: 'two' })
  return DBOS.runStep(async () => `done:${b}`, { name: 'three' })
}, { name: 'threeSteps' })

export async function open (systemDatabaseUrl) {
  DBOS.setConfig({ name: 'bench', systemDatabaseUrl, logLevel: 'error', ...poolSize })
  await DBOS.launch()
  let app
  return {
    startOne: (i) => DBOS.startWorkflow(threeSteps)(i),
    async runOne (i) {
      const handle = await DBOS.startWorkflow(threeSteps)(i)
      return handle.getResult()
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
      await DBOS.shutdown()
    }
  }
}
