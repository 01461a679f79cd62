// Contender "instance": one of several engines on one database, for the
// scale-out phase (scale-out.js). Its executor id, heartbeat and lease come
// from the parent. It runs the 3-step workflow of the other phases for
// throughput, and, for the failover, a steady load of workflows whose steps
// record each run of theirs in bench_effects (workflow, step, executor), so
// that the parent can count what ran twice.
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import postgres from 'postgres'
import { defineWorkflow, Engine } from '../../../dist/lib/index.js'
import { threeSteps } from './ours.js'

export const name = 'instance'

/** Where a step's run is recorded; set by open(). */
let recordRun

/**
 * `steps` steps of `stepMs` of work each. A step records its run once its
 * work is done, just before it returns: a second row for one step means it
 * ran again after finishing once.
 */
export const effects = defineWorkflow('effects', async (ctx, { steps, stepMs }) => {
  // The input also names the executor that started it (origin), for the parent's queries.
  for (let i = 0; i < steps; i++) {
    await ctx.step(`s${i}`, async () => {
      await sleep(stepMs)
      await recordRun(ctx.workflowId, i)
    })
  }
  return steps
})

const poolSize = process.env.BENCH_POOL ? { poolSize: Number(process.env.BENCH_POOL) } : {}

/** options: { executorId, heartbeatMs, leaseMs }. */
export async function open (databaseUrl, options) {
  const events = []
  const logger = eventLogger(events)
  const engine = new Engine({ databaseUrl, workflows: [threeSteps, effects], logger, ...options, ...poolSize })
  // Side effects on a connection of their own. Asynchronous commit: a row is
  // lost only if Postgres itself crashes, and here only a client is killed.
  const effectsSql = postgres(databaseUrl, { max: 4, onnotice: () => {}, connection: { synchronous_commit: 'off' } })
  recordRun = (workflowId, stepId) => effectsSql`
    INSERT INTO bench_effects (workflow_id, step_id, executor, at_ms) VALUES (${workflowId}, ${stepId}, ${engine.executorId}, ${Date.now()})`
  await engine.start()
  const load = steadyLoad(engine)
  return {
    async runOne (i) {
      const handle = await engine.startWorkflow(threeSteps, i)
      return handle.getResult()
    },
    app: undefined,
    commands: {
      executorId: () => engine.executorId,
      /** Starts `rate` effects workflows a second, each awaited, until loadStop. */
      loadStart: ({ rate, steps, stepMs }) => load.start(rate, { steps, stepMs, origin: engine.executorId }),
      loadStop: ({ timeoutMs }) => load.stop(timeoutMs),
      /** The log lines with an `event` field so far, each with the Date.now() it was logged at. */
      events: () => events
    },
    async close () {
      await load.stop(10_000)
      await engine.stop()
      await effectsSql.end({ timeout: 5 })
    }
  }
}

/** Keeps info and above with an event field, timestamped; warnings and errors also go to the console. */
function eventLogger (events) {
  const keep = (obj) => {
    if (obj?.event !== undefined) events.push({ at: Date.now(), ...obj, err: obj.err === undefined ? undefined : String(obj.err) })
  }
  return {
    debug () {},
    info: keep,
    warn: (obj, msg) => { keep(obj); console.warn(msg, obj) },
    error: (obj, msg) => { keep(obj); console.error(msg, obj) }
  }
}

/** An open-loop load: starts at a fixed rate whatever the latency, and waits for every result. */
function steadyLoad (engine) {
  let timer
  const inFlight = new Set()
  const stats = { started: 0, completed: 0, failed: 0, errors: {} }
  const launch = (input) => {
    stats.started++
    const run = engine.startWorkflow(effects, input).then((h) => h.getResult())
      .then(() => { stats.completed++ }, (err) => {
        stats.failed++
        const code = err?.code ?? err?.message ?? String(err)
        stats.errors[code] = (stats.errors[code] ?? 0) + 1
      })
      .finally(() => inFlight.delete(run))
    inFlight.add(run)
  }
  return {
    start (rate, input) {
      const t0 = performance.now()
      let due = 0
      timer = setInterval(() => {
        const target = Math.floor((performance.now() - t0) / 1000 * rate)
        for (; due < target; due++) launch(input)
      }, 5)
      return {}
    },
    async stop (timeoutMs) {
      clearInterval(timer)
      timer = undefined
      const waited = new AbortController()
      const deadline = sleep(timeoutMs, 'timeout', { signal: waited.signal }).catch(() => {})
      const outcome = await Promise.race([Promise.all(inFlight).then(() => 'drained'), deadline])
      waited.abort()
      return { ...stats, unfinished: outcome === 'timeout' ? inFlight.size : 0 }
    }
  }
}
