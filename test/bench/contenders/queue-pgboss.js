// Contender "queue-pgboss": one pg-boss 12 instance working the queue 'bench'
// with 64 workers (localConcurrency 64, one job each), for the queue phase.
// A job is pg-boss's unit of work: the handler is the 1-step workflow's step,
// and pg-boss records its completion. Set for low latency: LISTEN/NOTIFY on
// (useListenNotify, the queue's notify) and the shortest poll it allows (0.5 s).
import { PgBoss } from 'pg-boss'
import { mark, pool, since, wallMs } from '../measure.js'

const samples = []

export const name = 'queue-pgboss'

export async function open (connectionString, { workerConcurrency }) {
  const boss = new PgBoss({ connectionString, useListenNotify: true })
  boss.on('error', (err) => console.error('pg-boss:', err.message))
  await boss.start()
  await boss.createQueue('bench', { notify: true }).catch((err) => {
    // Another instance created it meanwhile.
    if (!/exists/i.test(err.message)) throw err
  })
  await boss.work('bench', { localConcurrency: workerConcurrency, batchSize: 1, pollingIntervalSeconds: 0.5, notifyPollingIntervalSeconds: 0.5 }, async ([job]) => {
    if (job.data.t0 !== undefined) samples.push(wallMs() - job.data.t0)
    return job.data.n + 1
  })
  const send = (data) => boss.send('bench', data)
  return {
    commands: {
      async enqueue ({ count, concurrency, from }) {
        const t0 = wallMs()
        await pool(count, concurrency, (i) => send({ n: from + i }))
        return { enqueueMs: wallMs() - t0 }
      },
      async enqueueOne ({ n }) {
        await send({ n, t0: wallMs() })
        return {}
      },
      mark: () => mark(),
      since: ({ m, ops }) => since(m, ops),
      samples: () => samples.splice(0)
    },
    async close () {
      await boss.stop({ graceful: true, timeout: 5000 })
    }
  }
}
