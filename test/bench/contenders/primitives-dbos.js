// Contender "primitives-dbos": the primitives phase's messages and events on
// DBOS Transact (DBOS.recv / DBOS.send / DBOS.setEvent / DBOS.getEvent), with
// its defaults. See primitives-ours.js for the same workflows on ours.
import { performance } from 'node:perf_hooks'
import { DBOS } from '@dbos-inc/dbos-sdk'
import postgres from 'postgres'
import { heap, mark, pool, since, summary, until } from '../measure.js'

const echo = DBOS.registerWorkflow(async (n) => {
  for (let i = 0; i < n;) {
    const m = await DBOS.recv('ping', 4)
    if (m === null) continue
    await DBOS.setEvent(`pong:${m}`, m)
    i++
  }
  return n
}, { name: 'echo' })

const publisher = DBOS.registerWorkflow(async () => {
  await DBOS.setEvent('k', { ok: true })
  return 1
}, { name: 'publisher' })

const waiter = DBOS.registerWorkflow(async () => DBOS.recv('go', 3600), { name: 'waiter' })

export const name = 'primitives-dbos'

export async function open (systemDatabaseUrl) {
  DBOS.setConfig({ name: 'bench', systemDatabaseUrl, logLevel: 'error' })
  await DBOS.launch()
  // postgres.js is not counted in this child (only DBOS's pg is).
  const probe = postgres(systemDatabaseUrl, { max: 1, onnotice: () => {} })
  const waitingCount = async () => (await probe`
    SELECT count(*)::int AS n FROM dbos.operation_outputs o JOIN dbos.workflow_status w ON w.workflow_uuid = o.workflow_uuid
    WHERE w.name = 'waiter' AND o.function_name = 'DBOS.sleep'`)[0].n
  const doneCount = async () => (await probe`SELECT count(*)::int AS n FROM dbos.workflow_status WHERE name = 'waiter' AND status = 'SUCCESS'`)[0].n
  return {
    commands: {
      /**
       * send → the workflow's recv → its setEvent → getEvent returns, one at
       * a time: `runs` after `warmup`, each after `gapMs` of idle (the echo
       * waits in recv when the message comes), then `backToBack` more with no
       * gap (the next send as soon as the answer is there), for up to `backToBackMaxMs`.
       */
      async roundTrip ({ warmup, runs, gapMs, backToBack, backToBackMaxMs }) {
        const handle = await DBOS.startWorkflow(echo)(warmup + runs + backToBack)
        const id = handle.workflowID
        let i = 0
        const once = async () => {
          const n = i++
          await DBOS.send(id, n, 'ping')
          const got = await DBOS.getEvent(id, `pong:${n}`, 10)
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
        while (i < warmup + runs + backToBack) { const n = i++; await DBOS.send(id, n, 'ping') }
        await handle.getResult()
        return out
      },
      async getEvent ({ warmup, runs }) {
        const handle = await DBOS.startWorkflow(publisher)()
        await handle.getResult()
        const id = handle.workflowID
        for (let i = 0; i < warmup; i++) await DBOS.getEvent(id, 'k', 1)
        const m = mark()
        const samples = []
        for (let i = 0; i < runs; i++) {
          const t0 = performance.now()
          const v = await DBOS.getEvent(id, 'k', 1)
          samples.push(performance.now() - t0)
          if (v?.ok !== true) throw new Error('getEvent: no event')
        }
        return { ...summary(samples), ...since(m, runs) }
      },
      /** As primitives-ours.js; waiting means its recv's timeout is recorded (DBOS then waits in memory). */
      async waiting ({ count, concurrency, idleMs, timeoutMs }) {
        await waitingCount()
        const before = heap()
        const t0 = performance.now()
        await pool(count, 500, (i) => DBOS.startWorkflow(waiter, { workflowID: `w-${i}` })().then(() => {}))
        const startedMs = performance.now() - t0
        await until(waitingCount, count, { everyMs: 100, timeoutMs })
        const waitingMs = performance.now() - t0
        const afterWaiting = heap()
        const idle = mark()
        await new Promise((resolve) => setTimeout(resolve, idleMs))
        const idleStats = since(idle, 1)
        const t1 = performance.now()
        const sends = mark()
        await pool(count, concurrency, (i) => DBOS.send(`w-${i}`, i, 'go'))
        const sentMs = performance.now() - t1
        const sendStatements = since(sends, count)
        await until(doneCount, count, { everyMs: 20, timeoutMs })
        const deliveredMs = performance.now() - t1
        const all = since(sends, count)
        return { count, before, afterWaiting, afterDone: heap(), startedMs, waitingMs, idleStatementsPerSecond: idleStats.driverStatements / (idleMs / 1000), idleTop: idleStats.top, sentMs, deliveredMs, sendStatementsPerOp: sendStatements.driverStatementsPerOp, deliverStatementsPerOp: all.driverStatementsPerOp, deliverTop: all.top }
      }
    },
    async close () {
      await probe.end({ timeout: 5 })
      await DBOS.shutdown()
    }
  }
}
