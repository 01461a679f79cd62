// Contender "primitives-ours": messages and events on this library's Engine,
// for the primitives phase (primitives.js). See docs/benchmarks.md.
import { performance } from 'node:perf_hooks'
import postgres from 'postgres'
import { defineWorkflow, Engine } from '../../../dist/lib/index.js'
import { heap, mark, pool, since, summary, until } from '../measure.js'

const silent = { debug () {}, info () {}, warn: console.warn, error: console.error }

/**
 * Receives `n` messages on 'ping', one after another, and answers each with
 * the event `pong:<message>`. Its recv's timeout (4 s) is below
 * sleepInMemoryMaxMs (5 s), so it waits in memory between messages.
 */
const echo = defineWorkflow('echo', async (ctx, { n }) => {
  for (let i = 0; i < n;) {
    const m = await ctx.recv('ping', { timeoutMs: 4000 })
    if (m === null) continue
    await ctx.setEvent(`pong:${m}`, m)
    i++
  }
  return n
})

/** Sets one event and ends: getEvent reads it. */
const publisher = defineWorkflow('publisher', async (ctx) => {
  await ctx.setEvent('k', { ok: true })
  return 1
})

/** Waits for one message on 'go' for up to an hour: a long recv suspends the workflow. */
const waiter = defineWorkflow('waiter', async (ctx) => ctx.recv('go', { timeoutMs: 3_600_000 }))

export const name = 'primitives-ours'

export async function open (databaseUrl) {
  const engine = new Engine({ databaseUrl, workflows: [echo, publisher, waiter], logger: silent })
  await engine.start()
  // Probes on a connection of their own, not counted (query-count.js skips bench_probe).
  const probe = postgres(databaseUrl, { max: 1, onnotice: () => {} })
  const tally = async (where) => (await probe.unsafe(`SELECT count(*)::int AS bench_probe FROM dbos.workflows WHERE name = 'waiter' AND ${where}`))[0].bench_probe
  return {
    commands: {
      /** send → the workflow's recv → its setEvent → getEvent returns, one at a time. */
      async roundTrip ({ warmup, runs }) {
        const handle = await engine.startWorkflow(echo, { n: warmup + runs })
        const id = handle.workflowId
        const once = async (i) => {
          await engine.send(id, i, { topic: 'ping' })
          const got = await engine.getEvent(id, `pong:${i}`, { timeoutMs: 10_000 })
          if (got !== i) throw new Error(`round trip ${i}: got ${got}`)
        }
        for (let i = 0; i < warmup; i++) await once(i)
        const m = mark()
        const samples = []
        for (let i = warmup; i < warmup + runs; i++) {
          const t0 = performance.now()
          await once(i)
          samples.push(performance.now() - t0)
        }
        const out = { ...summary(samples), ...since(m, runs) }
        await handle.getResult()
        return out
      },
      /** getEvent of an event already set, one at a time. */
      async getEvent ({ warmup, runs }) {
        const handle = await engine.startWorkflow(publisher, null)
        await handle.getResult()
        const id = handle.workflowId
        for (let i = 0; i < warmup; i++) await engine.getEvent(id, 'k')
        const m = mark()
        const samples = []
        for (let i = 0; i < runs; i++) {
          const t0 = performance.now()
          const v = await engine.getEvent(id, 'k', { timeoutMs: 1000 })
          samples.push(performance.now() - t0)
          if (v?.ok !== true) throw new Error('getEvent: no event')
        }
        return { ...summary(samples), ...since(m, runs) }
      },
      /**
       * `count` workflows waiting in recv: heap before and once all wait
       * (suspended: waiting_topic set), statements meanwhile, then one message
       * to each (`concurrency` senders) and the time until all have finished.
       */
      async waiting ({ count, concurrency, idleMs, timeoutMs }) {
        await tally('true')
        const before = heap()
        const t0 = performance.now()
        // Our own ids (w-0, w-1, ...): the bench keeps no handles or ids in memory.
        await pool(count, 500, (i) => engine.startWorkflow(waiter, null, { workflowId: `w-${i}` }).then(() => {}))
        const startedMs = performance.now() - t0
        await until(() => tally('waiting_topic IS NOT NULL'), count, { everyMs: 100, timeoutMs })
        const waitingMs = performance.now() - t0
        const afterWaiting = heap()
        const idle = mark()
        await new Promise((resolve) => setTimeout(resolve, idleMs))
        const idleStatements = since(idle, 1).driverStatements
        const t1 = performance.now()
        const sends = mark()
        await pool(count, concurrency, (i) => engine.send(`w-${i}`, i, { topic: 'go' }))
        const sentMs = performance.now() - t1
        const sendStatements = since(sends, count)
        await until(() => tally("status = 'SUCCESS'"), count, { everyMs: 20, timeoutMs })
        const deliveredMs = performance.now() - t1
        const all = since(sends, count)
        return { count, before, afterWaiting, afterDone: heap(), startedMs, waitingMs, idleStatementsPerSecond: idleStatements / (idleMs / 1000), sentMs, deliveredMs, sendStatementsPerOp: sendStatements.driverStatementsPerOp, deliverStatementsPerOp: all.driverStatementsPerOp }
      }
    },
    async close () {
      await engine.stop()
      await probe.end({ timeout: 5 })
    }
  }
}
