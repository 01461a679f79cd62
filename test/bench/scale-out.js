// The scale-out phase of `npm run bench`: several engines on one database,
// each in a child process of its own (contenders/instance.js). Throughput and
// statements when idle with 1 and with 3 instances, and the failover: 3
// instances under a steady load, kill -9 of one, and how long until the
// living have adopted, resumed and finished its work, and what ran twice.
// See docs/benchmarks.md, "Several instances".
import { setTimeout as sleep } from 'node:timers/promises'
import postgres from 'postgres'
import { spawnContender } from './child.js'
import { analyseFailover } from './failover-analysis.js'
import { statementDelta } from './server.js'

const INSTANCES_DB = 'bench_instances'
const FAILOVER_DB = 'bench_failover'

/**
 * 1 and 3 instances (idle, then `throughput` closed loops in each at once),
 * then each failover variant `runs` times; `failover: undefined` skips it.
 */
export async function benchScaleOut (server, plan, log) {
  const instances = []
  for (const count of plan.instances) {
    log(`scale-out: ${count} instance${count === 1 ? '' : 's'} on one database`)
    instances.push(await benchInstances(server, count, plan))
  }
  const failover = []
  for (const variant of plan.failover?.variants ?? []) {
    for (let run = 1; run <= plan.failover.runs; run++) {
      log(`failover: heartbeat ${variant.heartbeatMs} ms, lease ${variant.leaseMs} ms, run ${run}/${plan.failover.runs}`)
      failover.push(await benchFailover(server, variant, plan.failover))
    }
  }
  return { instances, failover }
}

/** `count` engines with default heartbeat and lease: statements when idle, then closed loops in every one at once. */
async function benchInstances (server, count, plan) {
  await server.recreateDatabase(INSTANCES_DB)
  return withInstances(server.urlFor(INSTANCES_DB), count, {}, async (children) => {
    const idle = await countedAll(server, children, () => sleep(plan.idleMs).then(() => ({})))
    const throughput = await countedAll(server, children, async () => {
      const each = await Promise.all(children.map((c) => c.call('throughput', plan.throughput)))
      return { each, perSecond: sum(each.map((r) => r.perSecond)), completed: sum(each.map((r) => r.completed)) }
    })
    const seconds = plan.idleMs / 1000
    return {
      count,
      idle: {
        perSecond: idle.statements === undefined ? undefined : idle.statements / seconds,
        driverPerSecond: idle.driverStatements / seconds,
        walBytesPerSecond: idle.walBytes === undefined ? undefined : idle.walBytes / seconds,
        top: idle.top.map((r) => ({ perSecond: r.calls / seconds, query: r.query }))
      },
      throughput: {
        perSecond: throughput.perSecond,
        each: throughput.each.map((r) => r.perSecond),
        statementsPerOp: throughput.statements === undefined ? undefined : throughput.statements / throughput.completed,
        driverStatementsPerOp: throughput.driverStatements / throughput.completed,
        nodeCpuUsPerOp: sum(throughput.each.map((r) => r.nodeCpuUsPerOp)) / count
      }
    }
  })
}

/**
 * Three instances, each starting `load.rate` workflows a second; after
 * `warmupMs` plus up to one heartbeat, kill -9 of the first. Waits until every PENDING workflow it
 * left is finished by the others, lets the load run `afterMs` more, and
 * analyses what happened (failover-analysis.js).
 */
async function benchFailover (server, variant, plan) {
  await server.recreateDatabase(FAILOVER_DB)
  const url = server.urlFor(FAILOVER_DB)
  const sql = postgres(url, { max: 2, onnotice: () => {} })
  try {
    await sql`CREATE TABLE bench_effects (
      id bigserial PRIMARY KEY, workflow_id text NOT NULL, step_id int NOT NULL, executor text NOT NULL, at_ms float8 NOT NULL)`
    return await withInstances(url, 3, variant, async (children, ids) => {
      await Promise.all(children.map((c) => c.call('loadStart', plan.load)))
      // At a random point of the victim's heartbeat cycle: its last beat's age at the kill decides most of the wait.
      await sleep(plan.warmupMs + Math.random() * variant.heartbeatMs)
      const [victim, ...survivors] = children
      const killedAt = Date.now()
      await victim.kill()
      const stuck = await untilFinished(sql, ids[0], plan.timeoutMs)
      await sleep(plan.afterMs)
      const loads = await Promise.all(survivors.map((c) => c.call('loadStop', { timeoutMs: plan.timeoutMs })))
      const events = (await Promise.all(survivors.map(async (c, i) =>
        (await c.call('events')).map((e) => ({ ...e, executor: ids[i + 1] }))))).flat()
      const analysis = await analyseFailover(sql, { dead: ids[0], killedAt, events })
      return { ...variant, load: plan.load, warmupMs: plan.warmupMs, stuck, loads, ...analysis }
    })
  } finally {
    await sql.end({ timeout: 5 })
  }
}

/**
 * Polls until no workflow the dead executor started (its input names it) is
 * PENDING: the living adopted and finished them. Resolves with how many still
 * are at `timeoutMs`.
 */
async function untilFinished (sql, dead, timeoutMs) {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const [{ n }] = await sql`
      SELECT count(*)::int AS n FROM dbos.workflows WHERE status = 'PENDING' AND (input::jsonb)->>'origin' = ${dead}`
    if (n === 0 || Date.now() > deadline) return n
    await sleep(20)
  }
}

/** `count` instance children on `url` (executor ids bench-1, bench-2, ...), closed after `fn`. */
async function withInstances (url, count, variant, fn) {
  const ids = Array.from({ length: count }, (_, i) => `bench-${i + 1}`)
  const children = await Promise.all(ids.map((executorId) => spawnContender('instance', url, { executorId, ...variant })))
  try {
    return await fn(children, ids)
  } finally {
    await Promise.all(children.map((c) => c.close()))
  }
}

/** Runs `fn`; the statements all `children` ran meanwhile, server-side (pg_stat_statements) and driver-side. */
async function countedAll (server, children, fn) {
  const snapshot = async () => [await server.statements(INSTANCES_DB), await Promise.all(children.map((c) => c.call('queries')))]
  const [pgBefore, driverBefore] = await snapshot()
  const result = await fn()
  const [pgAfter, driverAfter] = await snapshot()
  const pg = statementDelta(pgBefore, pgAfter)
  return {
    ...result,
    statements: pg?.total,
    walBytes: pg?.walBytes,
    driverStatements: sum(driverAfter.map((d, i) => d.total - driverBefore[i].total)),
    top: (pg?.rows ?? driverTop(driverBefore, driverAfter)).slice(0, 6)
  }
}

function driverTop (before, after) {
  const calls = new Map()
  after.forEach((a, i) => {
    for (const [query, n] of Object.entries(a.byText)) calls.set(query, (calls.get(query) ?? 0) + n - (before[i].byText[query] ?? 0))
  })
  return [...calls].map(([query, n]) => ({ query, calls: n })).filter((r) => r.calls > 0).sort((a, b) => b.calls - a.calls)
}

function sum (values) {
  return values.reduce((a, b) => a + b, 0)
}
