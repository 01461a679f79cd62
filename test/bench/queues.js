// The queue phase of `npm run bench` (issue 12): this library's queues
// against DBOS Transact's and pg-boss 12's, one contender at a time, each
// instance a child process of its own (contenders/queue-*.js) on a fresh
// database. For 1 and 3 instances: enqueue-to-start latency when idle (one
// workflow at a time, enqueued on the first instance, started on any), then
// enqueue → done throughput (each instance enqueues its share of a burst
// while all of them work the queue, workerConcurrency 64 in each).
// Statements are counted at the drivers.
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import postgres from 'postgres'
import { spawnContender } from './child.js'
import { summary, until } from './measure.js'

/** Finished work, read by the parent (not counted as the contender's statements). */
const DONE = {
  ours: 'SELECT count(*)::int AS n FROM dbos.workflows WHERE status = \'SUCCESS\'',
  dbos: 'SELECT count(*)::int AS n FROM dbos.workflow_status WHERE queue_name = \'bench\' AND status = \'SUCCESS\'',
  pgboss: 'SELECT count(*)::int AS n FROM pgboss.job WHERE name = \'bench\' AND state = \'completed\''
}

export async function benchQueues (server, plan, kinds, log) {
  const out = {}
  for (const kind of kinds) {
    out[kind] = []
    for (const count of plan.instances) {
      log(`queues: ${kind}, ${count} instance${count === 1 ? '' : 's'}`)
      out[kind].push(await benchQueue(server, plan, kind, count))
    }
  }
  return out
}

async function benchQueue (server, plan, kind, count) {
  const db = `bench_queue_${kind}`
  await server.recreateDatabase(db)
  const url = server.urlFor(db)
  const children = []
  const sql = postgres(url, { max: 1, onnotice: () => {} })
  try {
    // One after another: the first creates the schema (and the queue) alone.
    for (let i = 1; i <= count; i++) {
      const executorId = `q-${i}`
      children.push(await spawnContender(`queue-${kind}`, url, { executorId, workerConcurrency: plan.workerConcurrency, env: { DBOS__VMID: executorId } }))
    }
    const done = async () => (await sql.unsafe(DONE[kind]))[0].n
    const latency = await latencyRun(children, done, plan.latency)
    const throughput = await throughputRun(children, done, plan, plan.throughput[kind])
    return { count, latency, throughput }
  } finally {
    await Promise.all(children.map((c) => c.close()))
    await sql.end({ timeout: 5 })
  }
}

/** One workflow at a time, enqueued on the first instance; each waits until done, then `gapMs` of idle. */
async function latencyRun (children, done, { samples, maxMs, gapMs }) {
  await Promise.all(children.map((c) => c.call('samples')))
  const t0 = performance.now()
  for (let i = 0; i < samples && performance.now() - t0 < maxMs; i++) {
    const before = await done()
    await children[0].call('enqueueOne', { n: i })
    await until(done, before + 1, { everyMs: 2, timeoutMs: 30_000 })
    await sleep(gapMs)
  }
  const each = await Promise.all(children.map((c) => c.call('samples')))
  return { ...summary(each.flat()), byInstance: each.map((s) => s.length) }
}

/** Every instance enqueues its share of `total` (64 callers each) while all work the queue; until all are done. */
async function throughputRun (children, done, plan, total) {
  const share = Math.ceil(total / children.length)
  const n = share * children.length
  const marks = await Promise.all(children.map((c) => c.call('mark')))
  const before = await done()
  const t0 = performance.now()
  const enqueued = Promise.all(children.map((c, i) => c.call('enqueue', { count: share, concurrency: plan.enqueueConcurrency, from: i * share })))
  await until(done, before + n, { everyMs: 20, timeoutMs: plan.timeoutMs })
  const elapsedMs = performance.now() - t0
  const enqueueMs = Math.max(...(await enqueued).map((r) => r.enqueueMs))
  const stats = await Promise.all(children.map((c, i) => c.call('since', { m: marks[i], ops: n })))
  return {
    workflows: n,
    elapsedMs,
    perSecond: n / (elapsedMs / 1000),
    enqueueMs,
    driverStatementsPerOp: stats.reduce((a, s) => a + s.driverStatements, 0) / n,
    nodeCpuUsPerOp: stats.reduce((a, s) => a + s.nodeCpuUsPerOp, 0),
    top: mergeTop(stats.map((s) => s.top), n)
  }
}

/** The children's most frequent statements, summed by text, per workflow. */
function mergeTop (tops, n) {
  const calls = new Map()
  for (const top of tops) for (const r of top) calls.set(r.query, (calls.get(r.query) ?? 0) + r.calls)
  return [...calls].map(([query, c]) => ({ perOp: c / n, query })).sort((a, b) => b.perOp - a.perOp).slice(0, 8)
}
