// Contender "queue-ours": one instance of this library's Engine taking work
// from the queue 'bench' (workerConcurrency 64) for the queue phase
// (queues.js). The workflow has one step; its body notes when it began, for
// enqueue-to-start latency (the input carries the enqueue time).
import { defineQueue, defineWorkflow, Engine } from '../../../dist/lib/index.js'
import { mark, pool, since, wallMs } from '../measure.js'

const silent = { debug () {}, info () {}, warn: console.warn, error: console.error }
const samples = []

const oneStep = defineWorkflow('oneStep', async (ctx, input) => {
  if (input.t0 !== undefined) samples.push(wallMs() - input.t0)
  return ctx.step('one', () => input.n + 1)
})

export const name = 'queue-ours'

/** options: { executorId, workerConcurrency }. */
export async function open (databaseUrl, { executorId, workerConcurrency }) {
  const queue = defineQueue('bench', { workerConcurrency })
  const engine = new Engine({ databaseUrl, workflows: [oneStep], queues: [queue], logger: silent, executorId })
  await engine.start()
  return {
    commands: {
      /** Enqueues `count` workflows with `concurrency` callers; resolves once all enqueues returned. */
      async enqueue ({ count, concurrency, from }) {
        const t0 = wallMs()
        await pool(count, concurrency, (i) => engine.enqueue(queue, oneStep, { n: from + i }))
        return { enqueueMs: wallMs() - t0 }
      },
      /** One enqueue carrying its time, for the latency run. */
      async enqueueOne ({ n }) {
        await engine.enqueue(queue, oneStep, { n, t0: wallMs() })
        return {}
      },
      mark: () => mark(),
      since: ({ m, ops }) => since(m, ops),
      /** Enqueue-to-start samples (ms) of the workflows that began in this process. */
      samples: () => samples.splice(0)
    },
    async close () {
      await engine.stop()
    }
  }
}
