// The printed report: medians over rounds, ratios, targets, and where the
// statements go. Input is the object run.js also saves as JSON.

const WRITES_PER_WORKFLOW = 5 // start, three steps, outcome: the ceiling's divisor
const KINDS = ['ours', 'dbos', 'ceiling']

export function printReport (report) {
  const m = medians(report)
  const { machine, server, rounds } = report
  console.log(`\n${machine.cpus} cores, ${machine.memoryGiB} GiB, Node ${machine.node}; Postgres ${server.settings.server_version} ` +
    `${server.embedded ? '(embedded)' : '(DATABASE_URL)'}, synchronous_commit=${server.settings.synchronous_commit}, ` +
    `fsync=${server.settings.fsync}, shared_buffers=${server.settings.shared_buffers}; ${rounds.length} rounds, medians; ` +
    `statements from ${server.pgss ? 'pg_stat_statements' : 'the drivers'}\n`)
  if (rounds.length > 0) {
    printTable(['', 'ours', 'DBOS 5.3', 'ceiling (INSERT)', 'ours vs DBOS', 'ours vs ceiling'], tableRows(report, m))
    printRounds(rounds)
    printTargets(m, report)
    printStatements(rounds)
  }
  if (report.primitives !== undefined) printPrimitives(report.primitives)
  if (report.queues !== undefined) printQueues(report.queues)
  if (report.scaleOut !== undefined) printScaleOut(report.scaleOut, report.plan.scaleOut)
}

/** Per contender, the median over rounds of each measurement. */
function medians ({ rounds, server }) {
  const counted = server.pgss ? 'statementsPerOp' : 'driverStatementsPerOp'
  const m = {}
  for (const kind of KINDS) {
    const med = (path) => median(rounds.map((r) => get(r[kind], path)))
    m[kind] = {
      p50: med('latency.p50'),
      p99: med('latency.p99'),
      rate: med('throughput.perSecond'),
      httpRate: med('http.perSecond'),
      httpP50: med('http.p50'),
      httpP99: med('http.p99'),
      stmtSeq: med(`latency.${counted}`),
      stmtConc: med(`throughput.${counted}`),
      stmtHttp: med(`http.${counted}`),
      idle: med(`idle.${counted}`),
      cpu: med('throughput.nodeCpuUsPerOp'),
      walSeq: med('latency.walBytesPerOp'),
      walConc: med('throughput.walBytesPerOp')
    }
  }
  return m
}

function tableRows (report, { ours, dbos, ceiling }) {
  const { memory, sleeping = {}, plan, server } = report
  const ceilingWf = ceiling.rate / WRITES_PER_WORKFLOW
  const count = plan.memory.count
  const burst = (k) => memory[k] === undefined ? '-' : fmt(memory[k].allDoneMs / 1000, 1)
  const heap = (k, at) => memory[k] === undefined ? '-' : fmt((memory[k][at] - memory[k].before) / 2 ** 20, 1)
  const perSecond = (x) => fmt(x / (plan.idleMs / 1000), 1)
  const sleepers = plan.sleeping?.count ?? 10_000
  const asleep = (k) => sleeping[k] === undefined ? '-' : fmt(sleeping[k].asleepMs / 1000, 1)
  const sleepBeforeAfter = (k) => sleeping[k] === undefined ? '-' : `${fmt(sleeping[k].before / 2 ** 20, 1)} / ${fmt(sleeping[k].afterAsleep / 2 ** 20, 1)}`
  const sleepHeap = (k) => sleeping[k] === undefined ? '-' : fmt((sleeping[k].afterAsleep - sleeping[k].before) / 2 ** 20, 1)
  return [
    ['one at a time p50 (ms)', fmt(ours.p50, 2), fmt(dbos.p50, 2), fmt(ceiling.p50, 2), times(dbos.p50 / ours.p50, 'lower'), `${fmt(ours.p50 / ceiling.p50, 1)} inserts`],
    ['one at a time p99 (ms)', fmt(ours.p99, 2), fmt(dbos.p99, 2), fmt(ceiling.p99, 2), times(dbos.p99 / ours.p99, 'lower'), ''],
    ['64 in flight (wf/s)', fmt(ours.rate), fmt(dbos.rate), `${fmt(ceiling.rate)} /5=${fmt(ceilingWf)}`, times(ours.rate / dbos.rate, 'higher'), times(ours.rate / ceilingWf, '')],
    ['HTTP 32 conns (req/s)', fmt(ours.httpRate), fmt(dbos.httpRate), '', times(ours.httpRate / dbos.httpRate, 'higher'), ''],
    ['HTTP p50 / p99 (ms)', `${fmt(ours.httpP50)} / ${fmt(ours.httpP99)}`, `${fmt(dbos.httpP50)} / ${fmt(dbos.httpP99)}`, '', '', ''],
    ['statements/wf, one at a time', fmt(ours.stmtSeq, 2), fmt(dbos.stmtSeq, 2), fmt(ceiling.stmtSeq, 2), '', ''],
    ['statements/wf, 64 in flight', fmt(ours.stmtConc, 2), fmt(dbos.stmtConc, 2), fmt(ceiling.stmtConc, 2), '', ''],
    ['statements/wf, HTTP', fmt(ours.stmtHttp, 2), fmt(dbos.stmtHttp, 2), '', '', ''],
    ...(server.pgss
      ? [['WAL bytes/wf, one at a time', fmt(ours.walSeq), fmt(dbos.walSeq), fmt(ceiling.walSeq), times(dbos.walSeq / ours.walSeq, 'less'), ''],
          ['WAL bytes/wf, 64 in flight', fmt(ours.walConc), fmt(dbos.walConc), fmt(ceiling.walConc), times(dbos.walConc / ours.walConc, 'less'), '']]
      : []),
    ['statements/s when idle', perSecond(ours.idle), perSecond(dbos.idle), '', '', ''],
    ['node CPU/wf at 64 (µs)', fmt(ours.cpu), fmt(dbos.cpu), fmt(ceiling.cpu), times(dbos.cpu / ours.cpu, 'less'), ''],
    [`${count} at once: all done (s)`, burst('ours'), burst('dbos'), '', '', ''],
    [`heap +MB, ${count} started`, heap('ours', 'afterStart'), heap('dbos', 'afterStart'), '', '', ''],
    [`heap +MB, ${count} finished`, heap('ours', 'afterDone'), heap('dbos', 'afterDone'), '', '', ''],
    [`${sleepers} sleeping: all asleep (s)`, asleep('ours'), asleep('dbos'), '', '', ''],
    [`heap +MB, ${sleepers} sleeping`, sleepHeap('ours'), sleepHeap('dbos'), '', '', ''],
    ['heap MB before / all asleep', sleepBeforeAfter('ours'), sleepBeforeAfter('dbos'), '', '', '']
  ]
}

function printRounds (rounds) {
  console.log('\nper round (ours | DBOS | ceiling):')
  for (const [label, path, digits] of [['p50 ms', 'latency.p50', 2], ['64 in flight/s', 'throughput.perSecond', 0], ['HTTP req/s', 'http.perSecond', 0]]) {
    const line = KINDS.map((k) => rounds.map((r) => fmt(get(r[k], path), digits)).join(', '))
    console.log(`  ${label.padEnd(15)} ${line.join(' | ')}`)
  }
}

/** Heap growth per sleeping workflow below which nothing but (at most) an id is held for it. */
const ID_BYTES = 256

function printTargets ({ ours, dbos }, { sleeping = {}, plan }) {
  console.log('\ntargets:')
  const targets = [
    ['>= 10x DBOS throughput at 64 in flight, > 2,000 wf/s', ours.rate / dbos.rate >= 10 && ours.rate > 2000, `${times(ours.rate / dbos.rate, '')}, ${fmt(ours.rate)} wf/s`],
    ['>= 5x lower p50 than DBOS one at a time', dbos.p50 / ours.p50 >= 5, times(dbos.p50 / ours.p50, 'lower')],
    ['>= 5x DBOS req/s over HTTP', ours.httpRate / dbos.httpRate >= 5, times(ours.httpRate / dbos.httpRate, '')],
    ['<= 5 statements per 3-step workflow', Math.max(ours.stmtSeq, ours.stmtConc, ours.stmtHttp) <= 5, `${fmt(ours.stmtSeq, 2)} one at a time, ${fmt(ours.stmtConc, 2)} at 64`]
  ]
  const asleep = sleeping.ours
  if (asleep !== undefined) {
    const count = plan.sleeping?.count ?? 10_000
    const perWorkflow = (asleep.afterAsleep - asleep.before) / count
    targets.push([`${fmt(count)} sleeping workflows hold no memory beyond their ids (< ${ID_BYTES} bytes each)`, perWorkflow < ID_BYTES,
      `heap ${fmt(asleep.before / 2 ** 20, 1)} MB before, ${fmt(asleep.afterAsleep / 2 ** 20, 1)} MB with all asleep: ${fmt(perWorkflow)} bytes each`])
  }
  for (const [what, met, value] of targets) console.log(`  [${met ? 'met' : 'NOT met'}] ${what}: ${value}`)
}

function printStatements (rounds) {
  console.log('\nstatements per workflow by text (round 1):')
  for (const kind of ['ours', 'dbos']) {
    for (const phase of ['latency', 'throughput']) {
      const top = rounds[0][kind]?.[phase]?.topStatements
      if (top === undefined) continue
      console.log(`  ${kind}, ${phase === 'latency' ? 'one at a time' : '64 in flight'}:`)
      for (const s of top) console.log(`    ${fmt(s.perOp, 2).padStart(6)}  ${s.query}`)
    }
  }
}

/** Several instances on one database: 1 against 3, and each failover run. */
function printScaleOut ({ instances, failover }, plan) {
  if (instances.length > 0) {
    console.log(`\nseveral instances on one database (default heartbeat and lease; ${plan.throughput.concurrency} in flight in each instance):`)
    printTable(['instances', 'wf/s (sum)', 'wf/s each', 'statements/wf', 'statements/s idle', 'per instance', 'idle WAL B/s'], instances.map((r) => {
      const idle = r.idle.perSecond ?? r.idle.driverPerSecond
      return [r.count, fmt(r.throughput.perSecond), r.throughput.each.map((x) => fmt(x)).join(', '),
        fmt(r.throughput.statementsPerOp ?? r.throughput.driverStatementsPerOp, 2), fmt(idle, 2), fmt(idle / r.count, 2), fmt(r.idle.walBytesPerSecond)]
    }))
    const last = instances[instances.length - 1]
    console.log(`  statements/s when idle by text (${last.count} instances):`)
    for (const s of last.idle.top) console.log(`    ${fmt(s.perSecond, 2).padStart(6)}  ${s.query}`)
  }
  if (failover.length === 0) return
  const { load, warmupMs } = failover[0]
  console.log(`\nfailover: 3 instances, each starting ${load.rate} workflows/s of ${load.steps} steps of ${load.stepMs} ms; ` +
    `kill -9 of one after ${fmt(warmupMs / 1000, 1)} s plus up to one heartbeat. Times in ms after the kill (last beat: the victim's, before it):`)
  const ms = (x) => fmt(x)
  printTable(['heartbeat/lease', 'last beat', 'left', 'adopted (by)', '1st adoption', '1st resumed', 'last resumed', 'last finished',
    'completed run twice', 'in flight run twice', 'lost starts', 'load failures'], failover.map((r) => [
    `${r.heartbeatMs}/${r.leaseMs}`, `-${ms(r.lastBeatBeforeKillMs)}`, r.orphans, `${r.adopted} (${Object.values(r.adoptedBy).join('+')})`,
    ms(r.firstAdoptedMs), ms(r.firstResumedMs), ms(r.lastResumedMs), ms(r.lastFinishedMs),
    r.completedStepsRunTwice + r.otherStepsRunTwice, r.inFlightStepsRunTwice, r.lostStarts,
    r.loads.reduce((n, l) => n + l.failed + l.unfinished, 0) + r.stillPending]))
  for (const r of failover) {
    const adoptions = [...r.adoptionEvents].sort((a, b) => a.ms - b.ms).map((e) => `${e.count} at ${fmt(e.ms)} (${e.executor})`)
    const other = Object.entries(r.otherEvents).filter(([event]) => event !== 'migrations.applied').map(([event, n]) => `${n} ${event}`)
    console.log(`  ${r.heartbeatMs}/${r.leaseMs}: adoptions ${adoptions.join(', ')}${other.length > 0 ? `; other log events: ${other.join(', ')}` : ''}`)
  }
  for (const r of failover) {
    const met = r.completedStepsRunTwice + r.otherStepsRunTwice === 0 && r.stillPending === 0 && r.notSucceeded === 0
    console.log(`  [${met ? 'met' : 'NOT met'}] ${r.heartbeatMs}/${r.leaseMs}: no completed step ran twice, every adopted workflow succeeded` +
      (r.leaseMs === 3000 ? `; [${r.lastFinishedMs <= 5000 ? 'met' : 'NOT met'}] last adopted finished within 5 s of the kill` : ''))
  }
}

/** Messages and events, ours against DBOS (primitives.js). */
function printPrimitives (p) {
  const k = (kind, path, digits = 2) => fmt(get(p[kind], path), digits)
  const ratio = (path, word) => times(get(p.dbos, path) / get(p.ours, path), word)
  const w = (kind) => p[kind]?.waiting
  const perWaiter = (kind) => w(kind) === undefined ? NaN : (w(kind).afterWaiting - w(kind).before) / w(kind).count
  const count = w('ours')?.count ?? w('dbos')?.count ?? 10_000
  console.log('\nprimitives (statements counted at the drivers):')
  printTable(['', 'ours', 'DBOS 5.3', 'ours vs DBOS'], [
    ['round trip p50 (ms), 5 ms apart', k('ours', 'roundTrip.p50'), k('dbos', 'roundTrip.p50'), ratio('roundTrip.p50', 'lower')],
    ['round trip p99 (ms)', k('ours', 'roundTrip.p99'), k('dbos', 'roundTrip.p99'), ratio('roundTrip.p99', 'lower')],
    ['back to back: p50 / p90 (ms)', ...['ours', 'dbos'].map((kind) => `${k(kind, 'roundTrip.backToBack.p50')} / ${k(kind, 'roundTrip.backToBack.p90')}`), ''],
    ['back to back: over 100 ms', ...['ours', 'dbos'].map((kind) => `${k(kind, 'roundTrip.backToBack.over100ms', 0)} of ${k(kind, 'roundTrip.backToBack.n', 0)}`), ''],
    ['statements per round trip', k('ours', 'roundTrip.driverStatementsPerOp'), k('dbos', 'roundTrip.driverStatementsPerOp'), ''],
    ['getEvent (set) p50 / p99 (ms)', `${k('ours', 'getEvent.p50', 3)} / ${k('ours', 'getEvent.p99')}`, `${k('dbos', 'getEvent.p50', 3)} / ${k('dbos', 'getEvent.p99')}`, ratio('getEvent.p50', 'lower')],
    ['statements per getEvent', k('ours', 'getEvent.driverStatementsPerOp'), k('dbos', 'getEvent.driverStatementsPerOp'), ''],
    [`${fmt(count)} in recv: all waiting (s)`, fmt(w('ours')?.waitingMs / 1000, 1), fmt(w('dbos')?.waitingMs / 1000, 1), ''],
    ['heap bytes per waiting workflow', fmt(perWaiter('ours')), fmt(perWaiter('dbos')), ''],
    ['ours: quiet after (s), heap bytes each then', w('ours') === undefined ? '-' : `${fmt(w('ours').quietMs / 1000, 1)}, ${fmt((w('ours').afterQuiet - w('ours').before) / w('ours').count)}`, '', ''],
    ['heap MB before / all waiting / all done', ...['ours', 'dbos'].map((kind) => w(kind) === undefined ? '-' : [w(kind).before, w(kind).afterWaiting, w(kind).afterDone].map((b) => fmt(b / 2 ** 20, 1)).join(' / ')), ''],
    ['statements/s while all wait', fmt(w('ours')?.idleStatementsPerSecond, 1), fmt(w('dbos')?.idleStatementsPerSecond, 1), ''],
    ['one message to each: sends done (s)', fmt(w('ours')?.sentMs / 1000, 2), fmt(w('dbos')?.sentMs / 1000, 2), ''],
    ['one message to each: all finished (s)', fmt(w('ours')?.deliveredMs / 1000, 2), fmt(w('dbos')?.deliveredMs / 1000, 2), times(w('dbos')?.deliveredMs / w('ours')?.deliveredMs, 'faster')],
    ['statements per delivery (send to done)', k('ours', 'waiting.deliverStatementsPerOp'), k('dbos', 'waiting.deliverStatementsPerOp'), '']
  ])
  if (w('ours') !== undefined) {
    const per = perWaiter('ours')
    const quiet = (w('ours').afterQuiet - w('ours').before) / w('ours').count
    console.log(`  [${per < ID_BYTES ? 'met' : 'NOT met'}] ${fmt(count)} workflows waiting in recv hold < ${ID_BYTES} bytes of heap each: ${fmt(per)} bytes once all wait, ${fmt(quiet)} once the engine is quiet`)
  }
}

/** Queues: ours against DBOS and pg-boss, 1 and 3 instances (queues.js). */
function printQueues (q) {
  const names = { ours: 'ours', dbos: 'DBOS 5.3', pgboss: 'pg-boss 12' }
  const kinds = Object.keys(q)
  console.log('\nqueues: a 1-step workflow (pg-boss: a job), workerConcurrency 64 per instance; statements counted at the drivers:')
  const rows = []
  for (const kind of kinds) {
    for (const r of q[kind]) {
      rows.push([`${names[kind]}, ${r.count} instance${r.count === 1 ? '' : 's'}`, fmt(r.throughput.perSecond), fmt(r.throughput.workflows),
        fmt(r.throughput.driverStatementsPerOp, 2), fmt(r.throughput.nodeCpuUsPerOp), fmt(r.latency.p50, 1), fmt(r.latency.p99, 1), fmt(r.latency.n), r.latency.byInstance.join('+')])
    }
  }
  printTable(['', 'enqueue→done wf/s', 'workflows', 'statements/wf', 'Node CPU µs/wf', 'enqueue→start p50 ms', 'p99 ms', 'samples', 'started on'], rows)
  const best = (kind, count) => q[kind]?.find((r) => r.count === count)
  for (const count of [1, 3]) {
    const ours = best('ours', count)
    if (ours === undefined) continue
    const vs = (kind) => best(kind, count) === undefined ? '-' : times(ours.throughput.perSecond / best(kind, count).throughput.perSecond, '')
    console.log(`  ${count} instance${count === 1 ? '' : 's'}: ours vs DBOS ${vs('dbos')}, vs pg-boss ${vs('pgboss')}`)
  }
  const one = best('ours', 1)
  const three = best('ours', 3)
  if (one !== undefined && best('dbos', 1) !== undefined) {
    console.log(`  [${one.throughput.perSecond / best('dbos', 1).throughput.perSecond >= 10 ? 'met' : 'NOT met'}] >= 10x DBOS's queue throughput (1 instance)`)
  }
  if (one !== undefined && best('pgboss', 1) !== undefined) {
    console.log(`  [${one.throughput.perSecond > best('pgboss', 1).throughput.perSecond ? 'met' : 'NOT met'}] ahead of pg-boss (1 instance)`)
  }
  const lat = three ?? one
  if (lat !== undefined) console.log(`  [${lat.latency.p50 < 5 ? 'met' : 'NOT met'}] p50 enqueue-to-start under 5 ms (${lat.count} instances): ${fmt(lat.latency.p50, 2)} ms`)
}

function printTable (header, rows) {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => String(r[i]).length)))
  const line = (cells) => cells.map((c, i) => i === 0 ? String(c).padEnd(widths[i]) : String(c).padStart(widths[i])).join('  ')
  console.log(line(header))
  console.log(widths.map((w) => '-'.repeat(w)).join('  '))
  for (const r of rows) console.log(line(r))
}

function get (obj, path) {
  return path.split('.').reduce((o, k) => o?.[k], obj)
}

function median (values) {
  const v = values.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b)
  if (v.length === 0) return NaN
  const mid = Math.floor(v.length / 2)
  return v.length % 2 === 1 ? v[mid] : (v[mid - 1] + v[mid]) / 2
}

function fmt (x, digits = 0) {
  if (typeof x !== 'number' || !Number.isFinite(x)) return '-'
  return x.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits })
}

function times (ratio, word) {
  return Number.isFinite(ratio) ? `${fmt(ratio, ratio < 10 ? 2 : 1)}x${word ? ` ${word}` : ''}` : '-'
}
