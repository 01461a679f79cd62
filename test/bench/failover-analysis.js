// What a failover run left in the database, read after the fact: which
// workflows of the killed executor the living adopted, when they resumed and
// finished, and which steps ran twice. Times are ms after the kill on the
// machine's clock (Date.now() in every process); the database's timestamps are
// moved onto it by the measured offset between the two clocks.

/**
 * `dead`: the killed executor's id; `killedAt`: Date.now() just before the
 * SIGKILL; `events`: the survivors' log lines ({ at, event, executor, ... }).
 */
export async function analyseFailover (sql, { dead, killedAt, events }) {
  const offset = await clockOffset(sql)
  const since = (dbMs) => dbMs === null || dbMs === undefined ? undefined : dbMs - offset - killedAt
  const [beat] = await sql`
    SELECT (extract(epoch FROM heartbeat_at) * 1000)::float8 AS at FROM dbos.executors WHERE executor_id = ${dead}`
  const left = await leftBehind(sql, dead)
  const adopted = left.filter((w) => w.executor_id !== dead)
  const adoptedIds = new Set(adopted.map((w) => w.workflow_id))
  const resumed = events.filter((e) => e.event === 'workflow.resumed' && adoptedIds.has(e.workflowId))
  const adoptions = events.filter((e) => e.event === 'adoption.adopted')
  const [{ first_effect: firstEffect }] = await sql`
    SELECT min(at_ms)::float8 AS first_effect FROM bench_effects
    WHERE executor <> ${dead} AND workflow_id = ANY(${[...adoptedIds]}::text[])`
  return {
    clockOffsetMs: offset,
    lastBeatBeforeKillMs: beat === undefined ? undefined : -since(beat.at),
    orphans: left.length,
    adopted: adopted.length,
    adoptedBy: countBy(adopted, (w) => w.executor_id),
    stillPending: left.filter((w) => w.status === 'PENDING').length,
    notSucceeded: left.filter((w) => w.status !== 'SUCCESS').length,
    recordedStepsAtResume: countBy(resumed, (e) => e.recordedSteps),
    adoptedInEvents: adoptions.reduce((n, e) => n + e.count, 0),
    adoptionEvents: adoptions.map((e) => ({ ms: e.at - killedAt, count: e.count, executor: e.executor })),
    firstAdoptedMs: min(adoptions.map((e) => e.at - killedAt)),
    firstResumedMs: min(resumed.map((e) => e.at - killedAt)),
    lastResumedMs: max(resumed.map((e) => e.at - killedAt)),
    firstAdoptedStepMs: firstEffect === null ? undefined : firstEffect - killedAt,
    lastFinishedMs: max(adopted.map((w) => since(w.completed_ms))),
    otherEvents: countBy(events.filter((e) => !['workflow.resumed', 'adoption.adopted', 'recovery.started'].includes(e.event)), (e) => e.event),
    ...await ranTwice(sql, dead, killedAt, offset)
  }
}

/** The dead executor's workflows (their input names it) that it had not finished: now adopted or still PENDING. */
async function leftBehind (sql, dead) {
  return sql`
    SELECT workflow_id, status, executor_id, (extract(epoch FROM completed_at) * 1000)::float8 AS completed_ms
    FROM dbos.workflows
    WHERE (input::jsonb)->>'origin' = ${dead} AND (status = 'PENDING' OR executor_id <> ${dead})`
}

/**
 * Steps with more than one recorded run. A step whose checkpoint was written
 * before the kill (its row's transaction began before it) had completed: a
 * second run of it is a bug. A step whose only checkpoint came after the kill
 * was in flight: its work was done and recorded by the dead process, the
 * checkpoint was not yet durable, so the adopter ran it again (steps are
 * at-least-once). Anything else (say, two runs by the living) is counted apart.
 * Also: side effects of workflows that have no row at all (their first step
 * ran, but the start never committed, so start() never resolved).
 */
async function ranTwice (sql, dead, killedAt, offset) {
  const twice = await sql`
    SELECT e.workflow_id, e.step_id, count(*)::int AS runs, array_agg(e.executor ORDER BY e.id) AS executors,
           array_agg(e.at_ms ORDER BY e.id) AS runs_ms, (extract(epoch FROM s.created_at) * 1000)::float8 AS checkpoint_ms
    FROM bench_effects e LEFT JOIN dbos.steps s ON s.workflow_id = e.workflow_id AND s.step_id = e.step_id
    GROUP BY e.workflow_id, e.step_id, s.created_at
    HAVING count(*) > 1`
  const completed = twice.filter((r) => r.checkpoint_ms !== null && r.checkpoint_ms - offset < killedAt)
  const inFlight = twice.filter((r) => !completed.includes(r) && r.executors[0] === dead && r.executors.slice(1).every((e) => e !== dead))
  const [{ n: lostStarts, steps }] = await sql`
    SELECT count(DISTINCT e.workflow_id)::int AS n, count(*)::int AS steps FROM bench_effects e
    WHERE NOT EXISTS (SELECT 1 FROM dbos.workflows w WHERE w.workflow_id = e.workflow_id)`
  const [{ n: stepRuns }] = await sql`SELECT count(*)::int AS n FROM bench_effects`
  return {
    stepRuns,
    completedStepsRunTwice: completed.length,
    inFlightStepsRunTwice: inFlight.length,
    otherStepsRunTwice: twice.length - completed.length - inFlight.length,
    // Each: its runs (ms after the kill: a run's time is when its work was done) and its checkpoint's.
    ranTwiceSample: twice.slice(0, 20).map((r) => ({
      workflowId: r.workflow_id,
      stepId: r.step_id,
      executors: r.executors,
      runsMs: r.runs_ms.map((at) => Math.round(at - killedAt)),
      checkpointMs: r.checkpoint_ms === null ? null : Math.round(r.checkpoint_ms - offset - killedAt)
    })),
    lostStarts,
    lostStartSteps: steps
  }
}

/** The database's clock minus this process's (ms), from the quickest of a few round trips. */
async function clockOffset (sql) {
  let best
  for (let i = 0; i < 5; i++) {
    const t0 = Date.now()
    const [{ now }] = await sql`SELECT (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS now`
    const t1 = Date.now()
    if (best === undefined || t1 - t0 < best.rtt) best = { rtt: t1 - t0, offset: now - (t0 + t1) / 2 }
  }
  return best.offset
}

function countBy (items, key) {
  const out = {}
  for (const item of items) out[key(item)] = (out[key(item)] ?? 0) + 1
  return out
}

function min (values) {
  return values.length === 0 ? undefined : Math.min(...values)
}

function max (values) {
  const v = values.filter((x) => x !== undefined)
  return v.length === 0 ? undefined : Math.max(...v)
}
