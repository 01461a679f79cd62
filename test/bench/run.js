// `npm run bench`: this library against DBOS Transact and against plain
// INSERTs, on one Postgres (embedded unless DATABASE_URL is set). Contenders
// run one at a time, each in a fresh child process on a fresh database,
// interleaved over BENCH_ROUNDS rounds (default 2); the report shows medians.
// See docs/benchmarks.md for what is measured and the latest results.
import { mkdir, writeFile } from 'node:fs/promises'
import os from 'node:os'
import autocannon from 'autocannon'
import { spawnContender } from './child.js'
import { printReport } from './report.js'
import { benchPrimitives } from './primitives.js'
import { benchQueues } from './queues.js'
import { benchScaleOut } from './scale-out.js'
import { openServer, statementDelta } from './server.js'

const ROUNDS = Math.max(1, Number(process.env.BENCH_ROUNDS ?? 2))
// BENCH_ONLY=ours,dbos runs a subset; BENCH_MEMORY=0 skips the 10,000-workflow memory
// phase and BENCH_SLEEPING=0 the 10,000-sleeping-workflows phase (BENCH_CPU_PROF: child.js).
// The scale-out phase (ours only, scale-out.js): BENCH_INSTANCES=0 skips 1 against 3
// instances, BENCH_FAILOVER=0 the kill -9, BENCH_FAILOVER_SHORT=0 its short-lease
// variant, BENCH_FAILOVER_RUNS=n repeats each failover n times; BENCH_FAILOVER_RATE
// (workflows/s per instance, default 100) and BENCH_FAILOVER_STEP_MS (default 20) set its load.
// BENCH_CORE=0 skips the rounds (idle, one at a time, 64 in flight, HTTP); BENCH_PRIMITIVES=0 the
// primitives phase (primitives.js), BENCH_RECV_WAITING=0 only its 10,000 waiting in recv;
// BENCH_QUEUES=0 the queue phase (queues.js). pgboss is a contender of the queue phase only.
const KINDS = (process.env.BENCH_ONLY ?? 'ours,dbos,ceiling,pgboss').split(',')
const CORE_KINDS = process.env.BENCH_CORE === '0' ? [] : KINDS.filter((k) => ['ours', 'dbos', 'ceiling'].includes(k))
const LIBRARIES = KINDS.filter((k) => k === 'ours' || k === 'dbos')
const PLAN = {
  latency: { warmup: 1000, runs: 1000 },
  throughput: { concurrency: 64, warmupMs: 1000, durationMs: 3000 },
  http: { connections: 32, warmupSeconds: 1, durationSeconds: 5 },
  memory: { count: 10_000 },
  sleeping: { count: 10_000, sleepMs: 60_000, timeoutMs: 300_000 },
  idleMs: 2000,
  primitives: process.env.BENCH_PRIMITIVES === '0'
    ? undefined
    : {
        roundTrip: { warmup: Number(process.env.BENCH_RT_WARMUP ?? 100), runs: 500, gapMs: 5, backToBack: 100, backToBackMaxMs: 5000 },
        getEvent: { warmup: 200, runs: 1000 },
        waiting: process.env.BENCH_RECV_WAITING === '0'
          ? undefined
          : { count: Number(process.env.BENCH_RECV_COUNT ?? 10_000), concurrency: 64, idleMs: 2000, timeoutMs: 300_000 }
      },
  queues: process.env.BENCH_QUEUES === '0'
    ? undefined
    : {
        workerConcurrency: 64,
        enqueueConcurrency: 64,
        // Workflows per throughput run, by contender (DBOS dispatches once a second by default).
        throughput: { ours: Number(process.env.BENCH_QUEUE_WORKFLOWS ?? 4000), dbos: 384, pgboss: Number(process.env.BENCH_QUEUE_WORKFLOWS ?? 3000) },
        instances: (process.env.BENCH_QUEUE_INSTANCES ?? '1,3').split(',').map(Number),
        latency: { samples: 150, maxMs: 8000, gapMs: 20 },
        timeoutMs: 120_000
      },
  scaleOut: {
    instances: process.env.BENCH_INSTANCES === '0' ? [] : [1, 3],
    idleMs: 10_000,
    throughput: { concurrency: 64, warmupMs: 1000, durationMs: 3000 },
    failover: process.env.BENCH_FAILOVER === '0'
      ? undefined
      : {
          runs: Math.max(1, Number(process.env.BENCH_FAILOVER_RUNS ?? 1)),
          variants: [{ heartbeatMs: 1000, leaseMs: 3000 }, ...(process.env.BENCH_FAILOVER_SHORT === '0' ? [] : [{ heartbeatMs: 250, leaseMs: 1000 }])],
          load: { rate: Number(process.env.BENCH_FAILOVER_RATE ?? 100), steps: 5, stepMs: Number(process.env.BENCH_FAILOVER_STEP_MS ?? 20) },
          warmupMs: 2000,
          afterMs: 500,
          timeoutMs: 60_000
        }
  }
}
const DATABASES = { ours: 'bench_ours', dbos: 'bench_dbos', ceiling: 'bench_ceiling' }
const RESULTS_FILE = '.dbos/bench-last.json'

const server = await openServer().catch((err) => {
  // Say what failed (say, the embedded Postgres could not start) and what to do, without a stack.
  console.error(`npm run bench: ${err.message}${err.code ? ` [${err.code}]` : ''}`)
  process.exit(1)
})
const log = (msg) => console.error(`# ${msg}`)
log(`Postgres ${server.settings.server_version} (${server.embedded ? `embedded, ${server.dataDir}` : 'DATABASE_URL'}); ` +
  `statements counted ${server.pgss ? 'with pg_stat_statements' : 'at the driver'}`)

const rounds = []
const memory = {}
const sleeping = {}
let primitives
let queues
let scaleOut
try {
  for (let round = 1; round <= (CORE_KINDS.length > 0 ? ROUNDS : 0); round++) {
    const results = {}
    for (const kind of CORE_KINDS) {
      log(`round ${round}/${ROUNDS}: ${kind}`)
      results[kind] = await benchContender(kind)
    }
    rounds.push(results)
  }
  for (const kind of process.env.BENCH_MEMORY === '0' ? [] : LIBRARIES) {
    log(`memory: ${kind}, ${PLAN.memory.count} workflows`)
    memory[kind] = await withContender(kind, (c) => c.call('memory', PLAN.memory))
  }
  for (const kind of process.env.BENCH_SLEEPING === '0' ? [] : LIBRARIES) {
    log(`sleeping: ${kind}, ${PLAN.sleeping.count} workflows`)
    sleeping[kind] = await withContender(kind, (c) => c.call('sleeping', PLAN.sleeping))
  }
  if (PLAN.primitives !== undefined && LIBRARIES.length > 0) primitives = await benchPrimitives(server, PLAN.primitives, LIBRARIES, log)
  const queueKinds = KINDS.filter((k) => ['ours', 'dbos', 'pgboss'].includes(k))
  if (PLAN.queues !== undefined && queueKinds.length > 0) queues = await benchQueues(server, PLAN.queues, queueKinds, log)
  if (KINDS.includes('ours')) scaleOut = await benchScaleOut(server, PLAN.scaleOut, log)
} finally {
  await server.close()
}

const machine = { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, memoryGiB: Math.round(os.totalmem() / 2 ** 30), node: process.version }
const report = { date: new Date().toISOString(), machine, server: { embedded: server.embedded, pgss: server.pgss, settings: server.settings }, plan: PLAN, rounds, memory, sleeping, primitives, queues, scaleOut }
await mkdir('.dbos', { recursive: true })
await writeFile(RESULTS_FILE, JSON.stringify(report, null, 2))
printReport(report)
log(`raw results in ${RESULTS_FILE}`)

/** One contender's measurements in one round. */
async function benchContender (kind) {
  return withContender(kind, async (c, db) => {
    const out = {}
    out.idle = await counted(db, c, () => new Promise((resolve) => setTimeout(() => resolve({}), PLAN.idleMs)), () => 1)
    out.latency = await counted(db, c, () => c.call('latency', PLAN.latency), () => PLAN.latency.warmup + PLAN.latency.runs)
    out.throughput = await counted(db, c, () => c.call('throughput', PLAN.throughput), (r) => r.completed)
    if (kind !== 'ceiling') {
      const { port } = await c.call('httpStart')
      await loadHttp(port, PLAN.http.warmupSeconds)
      out.http = await counted(db, c, () => loadHttp(port, PLAN.http.durationSeconds), (r) => r.ok)
    }
    return out
  })
}

/** Runs `fn` and adds statements per operation: server-side (pg_stat_statements) and driver-side. */
async function counted (db, c, fn, operations) {
  const [pgBefore, driverBefore] = [await server.statements(db), await c.call('queries')]
  const result = await fn()
  const [pgAfter, driverAfter] = [await server.statements(db), await c.call('queries')]
  const ops = Math.max(1, operations(result))
  const pg = statementDelta(pgBefore, pgAfter)
  return {
    ...result,
    statementsPerOp: pg === undefined ? undefined : pg.total / ops,
    walBytesPerOp: pg === undefined ? undefined : pg.walBytes / ops,
    driverStatementsPerOp: (driverAfter.total - driverBefore.total) / ops,
    topStatements: (pg?.rows ?? driverDelta(driverBefore, driverAfter)).slice(0, 8)
      .map((r) => ({ perOp: r.calls / ops, query: r.query }))
  }
}

function driverDelta (before, after) {
  return Object.entries(after.byText)
    .map(([query, n]) => ({ query, calls: n - (before.byText[query] ?? 0) }))
    .filter((r) => r.calls > 0)
    .sort((a, b) => b.calls - a.calls)
}

/** autocannon against POST /wf, each request with a unique dbos-idempotency-key. */
async function loadHttp (port, seconds) {
  let n = 0
  const run = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`
  const result = await autocannon({
    url: `http://127.0.0.1:${port}/wf`,
    method: 'POST',
    connections: PLAN.http.connections,
    duration: seconds,
    requests: [{ setupRequest: (req) => ({ ...req, headers: { ...req.headers, 'dbos-idempotency-key': `${run}-${++n}` } }) }]
  })
  const ok = result['2xx']
  return { ok, perSecond: ok / seconds, p50: result.latency.p50, p99: result.latency.p99, errors: result.errors + result.timeouts, non2xx: result.non2xx }
}

/** A fresh database and a child process for `kind`, closed after `fn`. */
async function withContender (kind, fn) {
  const db = DATABASES[kind]
  await server.recreateDatabase(db)
  const c = await spawnContender(kind, server.urlFor(db))
  try {
    return await fn(c, db)
  } finally {
    await c.close()
  }
}
