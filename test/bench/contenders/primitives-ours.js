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
      /**
       * send → the workflow's recv → its setEvent → getEvent returns, one at
       * a time: `runs` after `warmup`, each after `gapMs` of idle (the echo
       * waits in recv when the message comes), then `backToBack` more with no
       * gap (the next send as soon as the answer is there), for up to `backToBackMaxMs`.
       */
      async roundTrip ({ warmup, runs, gapMs, backToBack, backToBackMaxMs }) {
        const handle = await engine.startWorkflow(echo, { n: warmup + runs + backToBack })
        const id = handle.workflowId
        let i = 0
        const once = async () => {
          const n = i++
          await engine.send(id, n, { topic: 'ping' })
          const got = await engine.getEvent(id, `pong:${n}`, { timeoutMs: 10_000 })
          if (got !== n) throw new Error(`round trip ${n}: got ${got}`)
        }
        const gap = () => new Promise((resolve) => setTimeout(resolve, gapMs))
        for (let k = 0; k < warmup; k++) { await once(); await gap() }
        const m = mark()
        const samples = []
        for (let k = 0; k < runs; k++) {
          await gap()
          const t0 = performance.now()
          await once()
          samples.push(performance.now() - t0)
        }
        const out = { ...summary(samples), ...since(m, runs) }
        const fast = []
        const t1 = performance.now()
        while (fast.length < backToBack && performance.now() - t1 < backToBackMaxMs) {
          const t0 = performance.now()
          await once()
          fast.push(performance.now() - t0)
        }
        out.backToBack = summary(fast)
        // Let the echo finish: the rest of its messages at once.
        while (i < warmup + runs + backToBack) { const n = i++; await engine.send(id, n, { topic: 'ping' }) }
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
        // Then until the engine is quiet: each suspension is followed by one
        // more look for a message. Quiet: three 500 ms windows in a row with
        // at most 2 statements sent (a heartbeat) and none of the engine's
        // statements running in the database (a slow one sends nothing while it runs).
        let last = mark().queries
        for (let calm = 0; calm < 3 && performance.now() - t0 < timeoutMs;) {
          await new Promise((resolve) => setTimeout(resolve, 500))
          const now = mark().queries
          const [{ bench_probe: running }] = await probe`
            SELECT count(*)::int AS bench_probe FROM pg_stat_activity
            WHERE datname = current_database() AND state <> 'idle' AND pid <> pg_backend_pid()`
          calm = now - last <= 2 && running === 0 ? calm + 1 : 0
          last = now
        }
        const quietMs = performance.now() - t0
        const afterQuiet = heap()
        const idle = mark()
        await new Promise((resolve) => setTimeout(resolve, idleMs))
        const idleStats = since(idle, 1)
        const t1 = performance.now()
        const sends = mark()
        await pool(count, concurrency, (i) => engine.send(`w-${i}`, i, { topic: 'go' }))
        const sentMs = performance.now() - t1
        const sendStatements = since(sends, count)
        await until(() => tally("status = 'SUCCESS'"), count, { everyMs: 20, timeoutMs })
        const deliveredMs = performance.now() - t1
        const all = since(sends, count)
        return { count, before, afterWaiting, afterQuiet, afterDone: heap(), startedMs, waitingMs, quietMs, idleStatementsPerSecond: idleStats.driverStatements / (idleMs / 1000), idleTop: idleStats.top, sentMs, deliveredMs, sendStatementsPerOp: sendStatements.driverStatementsPerOp, deliverStatementsPerOp: all.driverStatementsPerOp, deliverTop: all.top }
      }
    },
    async close () {
      await engine.stop()
      await probe.end({ timeout: 5 })
    }
  }
}
