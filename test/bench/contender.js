// One contender in a child process of its own (forked by run.js with IPC), so
// contenders never share an event loop or global state. Usage:
//   node --expose-gc test/bench/contender.js <ours|dbos|ceiling|instance> <databaseUrl> [optionsJson]
// The parent sends commands ({ cmd, ... }) and gets one reply per command; a
// contender may add commands of its own (`commands` on what open() returns).
import { createRequire, register } from 'node:module'
import { performance } from 'node:perf_hooks'
import { countPgQueries, queryCounts } from './query-count.js'

const [kind, databaseUrl, options = '{}'] = process.argv.slice(2)
// Kinds: ours, dbos, ceiling, instance, and the primitives and queue phases'
// primitives-ours, primitives-dbos, queue-ours, queue-dbos, queue-pgboss.
const opened = JSON.parse(options)
// Environment a contender reads when its library loads (DBOS's executor id: DBOS__VMID).
Object.assign(process.env, opened.env ?? {})
if (kind === 'dbos' || kind.endsWith('-dbos')) {
  // DBOS issues overlapping client.query() calls, which pg 8 reports once as deprecated: noise here.
  process.noDeprecation = true
  // The same pg module instance DBOS loads.
  const require = createRequire(createRequire(import.meta.url).resolve('@dbos-inc/dbos-sdk'))
  countPgQueries(require('pg'))
} else if (kind.endsWith('-pgboss')) {
  // pg-boss (ESM) on node-postgres: the pg module instance it imports.
  countPgQueries(createRequire(import.meta.resolve('pg-boss'))('pg'))
} else {
  register('./postgres-hooks.js', import.meta.url)
}
const contender = await (await import(`./contenders/${kind}.js`)).open(databaseUrl, opened)

const commands = {
  /** One workflow at a time: per-run latency after a warm-up. */
  async latency ({ warmup, runs }) {
    for (let i = 0; i < warmup; i++) await contender.runOne(i)
    const before = measureStart()
    const samples = []
    for (let i = 0; i < runs; i++) {
      const t0 = performance.now()
      await contender.runOne(i)
      samples.push(performance.now() - t0)
    }
    samples.sort((a, b) => a - b)
    return { p50: quantile(samples, 0.5), p99: quantile(samples, 0.99), mean: samples.reduce((a, b) => a + b, 0) / runs, ...measureEnd(before, runs) }
  },

  /** `concurrency` closed loops: completions per second over `durationMs`, after `warmupMs`. */
  async throughput ({ concurrency, warmupMs, durationMs }) {
    const start = performance.now()
    const windowStart = start + warmupMs
    const windowEnd = windowStart + durationMs
    let inWindow = 0
    let sinceMark = 0
    let total = 0
    let next = 0
    let before
    const worker = async () => {
      for (;;) {
        const now = performance.now()
        if (now >= windowEnd) return
        if (before === undefined && now >= windowStart) before = measureStart()
        const marked = before !== undefined
        await contender.runOne(next++)
        total++
        if (marked) sinceMark++
        const done = performance.now()
        if (done >= windowStart && done < windowEnd) inWindow++
      }
    }
    await Promise.all(Array.from({ length: concurrency }, worker))
    return { perSecond: inWindow / (durationMs / 1000), completed: total, ...measureEnd(before ?? measureStart(), sinceMark) }
  },

  /** Heap before and after starting `count` workflows at once, and after they all finished. */
  async memory ({ count }) {
    const heap = () => { globalThis.gc(); return process.memoryUsage().heapUsed }
    const before = heap()
    const t0 = performance.now()
    const started = await Promise.all(Array.from({ length: count }, (_, i) => contender.startOne(i)))
    const startedMs = performance.now() - t0
    const afterStart = heap()
    await Promise.all(started.map((h) => h.getResult()))
    const allDoneMs = performance.now() - t0
    const afterDone = heap()
    return { before, afterStart, afterDone, startedMs, allDoneMs, rss: process.memoryUsage().rss }
  },

  /**
   * Heap before starting `count` workflows at once that each run one step and
   * then sleep `sleepMs`, and once every one of them is asleep (its sleep
   * recorded in the database). The handles are dropped: only what the
   * library keeps for a sleeping workflow counts.
   */
  async sleeping ({ count, sleepMs, timeoutMs }) {
    const heap = () => { globalThis.gc(); return process.memoryUsage().heapUsed }
    await contender.asleep() // opens its connection before the first measurement
    const before = heap()
    const t0 = performance.now()
    await Promise.all(Array.from({ length: count }, (_, i) => contender.startSleeper(i, sleepMs).then(() => {})))
    const startedMs = performance.now() - t0
    while (await contender.asleep() < count) {
      if (performance.now() - t0 > timeoutMs) throw new Error(`not all ${count} workflows asleep after ${timeoutMs} ms`)
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
    const asleepMs = performance.now() - t0
    const afterAsleep = heap()
    return { before, afterAsleep, startedMs, asleepMs, rss: process.memoryUsage().rss }
  },

  async httpStart () {
    const app = await contender.app()
    await app.listen({ host: '127.0.0.1', port: 0 })
    return { port: app.server.address().port }
  },

  queries () {
    return queryCounts()
  },

  async close () {
    await contender.close()
    return {}
  }
}

process.on('message', async (msg) => {
  let reply
  try {
    const command = commands[msg.cmd] ?? contender.commands?.[msg.cmd]
    reply = { ok: true, result: await command(msg) }
  } catch (err) {
    reply = { ok: false, error: err?.stack ?? String(err) }
  }
  // After close, exit even if a library left a timer or socket behind.
  process.send(reply, () => { if (msg.cmd === 'close') process.exit(0) })
})
process.send({ ok: true, result: { ready: true, pid: process.pid } })

function quantile (sorted, q) {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]
}

function measureStart () {
  return { cpu: process.cpuUsage(), queries: queryCounts().total }
}

/** Node CPU and driver-counted statements per completed workflow since `before`. */
function measureEnd (before, completed) {
  const cpu = process.cpuUsage(before.cpu)
  return {
    nodeCpuUsPerOp: (cpu.user + cpu.system) / Math.max(1, completed),
    driverStatementsPerOp: (queryCounts().total - before.queries) / Math.max(1, completed)
  }
}
