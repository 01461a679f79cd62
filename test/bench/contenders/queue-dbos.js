// Contender "queue-dbos": one DBOS Transact process taking work from its
// queue 'bench' (workerConcurrency 64, DBOS's default polling: once a second),
// for the queue phase. As queue-ours.js, with DBOS.runStep. Its executor id
// comes from DBOS__VMID (set by contender.js from the options' env).
import { DBOS } from '@dbos-inc/dbos-sdk'
import { mark, pool, since, wallMs } from '../measure.js'

const samples = []

const oneStep = DBOS.registerWorkflow(async (input) => {
  if (input.t0 !== undefined) samples.push(wallMs() - input.t0)
  return DBOS.runStep(async () => input.n + 1, { name: 'one' })
}, { name: 'oneStep' })

export const name = 'queue-dbos'

export async function open (systemDatabaseUrl, { workerConcurrency }) {
  DBOS.setConfig({ name: 'bench', systemDatabaseUrl, logLevel: 'error' })
  await DBOS.launch()
  await DBOS.registerQueue('bench', { workerConcurrency })
  const enqueue = (input) => DBOS.startWorkflow(oneStep, { queueName: 'bench' })(input)
  return {
    commands: {
      async enqueue ({ count, concurrency, from }) {
        const t0 = wallMs()
        await pool(count, concurrency, (i) => enqueue({ n: from + i }))
        return { enqueueMs: wallMs() - t0 }
      },
      async enqueueOne ({ n }) {
        await enqueue({ n, t0: wallMs() })
        return {}
      },
      mark: () => mark(),
      since: ({ m, ops }) => since(m, ops),
      samples: () => samples.splice(0)
    },
    async close () {
      await DBOS.shutdown()
    }
  }
}
