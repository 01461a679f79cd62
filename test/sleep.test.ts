// ctx.sleep: short sleeps wait in memory, long ones suspend the workflow
// (PENDING, wake_at set, nothing held in this process) until the wake-up
// scheduler resumes it by replay. The crash test with a real child process
// is in recovery.test.ts.
import type postgres from 'postgres'
import t, { type Test } from 'tap'
import { defineWorkflow, Engine, type EngineOptions, type Logger } from '../lib/index.js'
import { kLocalRuns } from '../lib/core/symbols.js'
import { adminSql, buildEngine, databaseUrl, pollUntil } from './helpers/db.js'
import { Counter, gate, sharedSchema } from './helpers/workflows.js'

const counter = new Counter()
/** When step two of each workflow ran, by this process's clock. */
const ranTwoAt = new Map<string, number>()

/** Step one, a sleep of `ms`, step two. Counts bodies and steps per workflow id. */
const sleeper = defineWorkflow('sleeper', async (ctx, ms: number) => {
  counter.hit(`${ctx.workflowId}:body`)
  const one = await ctx.step('one', () => { counter.hit(`${ctx.workflowId}:one`); return 1 })
  await ctx.sleep(ms)
  const two = await ctx.step('two', () => {
    counter.hit(`${ctx.workflowId}:two`)
    ranTwoAt.set(ctx.workflowId, Date.now())
    return 2
  })
  return one + two
})

interface Row { status: string, wake_at: Date | null, attempts: number, epoch: string, output: string | null }

function rowOf (sql: postgres.Sql, engine: Engine, workflowId: string): Promise<Row | undefined> {
  return sql<Row[]>`
    SELECT status, wake_at, attempts, epoch::text AS epoch, output
    FROM ${sql(engine.options.schema + '.workflows')} WHERE workflow_id = ${workflowId}`.then((rows) => rows[0])
}

/** The wake-up time the workflow's sleep recorded, once its checkpoint is there. */
async function recordedWakeAt (engine: Engine, workflowId: string): Promise<number> {
  return pollUntil(async () => (await engine.listSteps(workflowId).catch(() => [])).find((s) => s.name === 'sleep')?.output as number | undefined,
    { what: `the sleep checkpoint of ${workflowId}` })
}

/** Waits until the workflow is suspended (wake_at set) and returns its row. */
function suspended (sql: postgres.Sql, engine: Engine, workflowId: string): Promise<Row> {
  return pollUntil(async () => {
    const row = await rowOf(sql, engine, workflowId)
    return row?.wake_at != null ? row : undefined
  }, { what: `${workflowId} to be suspended` }) as Promise<Row>
}

function capturingLogger (): Logger & { records: { level: string, obj: any, msg?: string }[] } {
  const records: { level: string, obj: any, msg?: string }[] = []
  const at = (level: string) => (obj: object, msg?: string) => { records.push({ level, obj, msg }) }
  return { records, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') }
}

/** Two engines in turn on one schema under one executor id: a restart in one process. */
function restartable (t: Test, options: EngineOptions = {}): { schema: string, start (more?: EngineOptions): Promise<Engine> } {
  const processes = sharedSchema(t, 'sleep')
  const executorId = `sleep-${processes.schema}`
  return {
    schema: processes.schema,
    start: (more = {}) => processes.start({ workflows: [sleeper], executorId, sleepInMemoryMaxMs: 0, ...options, ...more })
  }
}

t.test('a short sleep waits in memory: the run stays here and wake_at is never set', async (t) => {
  const engine = await buildEngine(t, { workflows: [sleeper] })
  const sql = adminSql(t)
  const handle = await engine.startWorkflow(sleeper, 400, { workflowId: 'short' })
  const wakeAt = await recordedWakeAt(engine, 'short')
  t.same(engine[kLocalRuns](), ['short'], 'the run is held in this process while it sleeps')
  t.equal((await rowOf(sql, engine, 'short'))?.wake_at, null, 'not suspended')
  t.equal(await handle.getResult(), 3)
  t.ok(ranTwoAt.get('short')! >= wakeAt, 'the step after the sleep ran at or after the wake-up time')
  t.equal(counter.get('short:body'), 1, 'one run, no replay')
  t.same((await engine.listSteps('short')).map((s) => [s.stepId, s.name]), [[0, 'one'], [1, 'sleep'], [2, 'two']],
    'the sleep takes a step position')
  t.match(await rowOf(sql, engine, 'short'), { status: 'SUCCESS', wake_at: null, attempts: 1, epoch: '1' })
})

t.test('a long sleep suspends: no run held, then a replay at the wake-up time finishes it', async (t) => {
  const engine = await buildEngine(t, { workflows: [sleeper], sleepInMemoryMaxMs: 0 })
  const sql = adminSql(t)
  const handle = await engine.startWorkflow(sleeper, 1000, { workflowId: 'long' })
  // Awaited across the suspension: it must not see the internal signal.
  const result = handle.getResult()
  const asleep = await suspended(sql, engine, 'long')
  const wakeAt = await recordedWakeAt(engine, 'long')
  t.equal(asleep.wake_at!.getTime(), wakeAt, 'wake_at is the recorded wake-up time')
  await pollUntil(() => engine[kLocalRuns]().length === 0, { what: 'the run to leave' })
  const status = await engine.getStatus('long')
  t.equal(status.status, 'PENDING', 'PENDING while it sleeps')
  t.equal(status.wakeAt?.getTime(), wakeAt, 'getStatus shows when it wakes up')
  t.equal(counter.get('long:two'), 0, 'nothing after the sleep ran yet')

  t.equal(await result, 3, 'getResult awaited across the suspension gets the result')
  t.ok(ranTwoAt.get('long')! >= wakeAt, 'woken no earlier than the wake-up time')
  t.equal(counter.get('long:body'), 2, 'the body ran again from the top on wake-up')
  t.equal(counter.get('long:one'), 1, 'the step before the sleep replayed, it did not run again')
  t.equal(counter.get('long:two'), 1)
  t.match(await rowOf(sql, engine, 'long'), { status: 'SUCCESS', wake_at: null, attempts: 1, epoch: '2' },
    'one claim (the wake-up), and it counted no attempt')
  t.equal((await engine.getStatus('long')).wakeAt, null, 'no wake-up time once awake')
  t.same(engine[kLocalRuns](), [])
})

t.test('workflow code that catches the suspension cannot carry on', async (t) => {
  const caught: string[] = []
  const catcher = defineWorkflow('catcher', async (ctx) => {
    await ctx.step('one', () => 1)
    try {
      await ctx.sleep(1000)
    } catch (err) {
      caught.push((err as { code: string }).code)
      for (const call of [() => ctx.step('afterCatch', () => counter.hit('afterCatch')), () => ctx.sleep(1), () => ctx.transaction('tx', async () => 1)]) {
        try { await call() } catch (again) { caught.push((again as { code: string }).code) }
      }
      return 'escaped'
    }
    await ctx.step('two', () => 2)
    return 'done'
  })
  const engine = await buildEngine(t, { workflows: [catcher], sleepInMemoryMaxMs: 0 })
  const sql = adminSql(t)
  const handle = await engine.startWorkflow(catcher, undefined, { workflowId: 'catcher' })
  await pollUntil(() => caught.length === 4, { what: 'the workflow code to catch the signal and try again' })
  t.same(caught, Array(4).fill('DBOS_ERR_WORKFLOW_SUSPENDED'), 'every ctx call after the suspension throws it again')
  await pollUntil(() => engine[kLocalRuns]().length === 0, { what: 'the run to end' })
  const row = await rowOf(sql, engine, 'catcher')
  t.match(row, { status: 'PENDING', output: null }, '"escaped" was not recorded')
  t.not(row?.wake_at, null, 'still suspended')
  t.equal(counter.get('afterCatch'), 0, 'the step called after catching did not run')
  t.same((await engine.listSteps('catcher')).map((s) => s.name), ['one', 'sleep'])

  t.equal(await handle.getResult(), 'done', 'the woken run finished it')
  t.same((await engine.listSteps('catcher')).map((s) => s.name), ['one', 'sleep', 'two'])
})

t.test('a run woken while its suspended predecessor is still unwinding keeps its place', async (t) => {
  const unwind = gate()
  const hold = gate()
  const lingering = defineWorkflow('lingering', async (ctx) => {
    const n = counter.hit('lingering:body')
    await ctx.step('one', () => 1)
    try {
      await ctx.sleep(600)
    } catch (err) {
      if (n === 1) await unwind.wait()
      counter.hit('lingering:unwound')
      throw err
    }
    await ctx.step('two', () => hold.wait())
    return 'done'
  })
  const engine = await buildEngine(t, { workflows: [lingering], sleepInMemoryMaxMs: 0 })
  await engine.startWorkflow(lingering, undefined, { workflowId: 'lingering' })
  await pollUntil(() => unwind.entered === 1, { what: 'the first run to catch the signal and linger' })
  await pollUntil(() => hold.entered === 1, { what: 'the woken run to reach step two' })
  t.same(engine[kLocalRuns](), ['lingering'])
  unwind.open()
  await pollUntil(() => counter.get('lingering:unwound') === 1, { what: 'the first run to end' })
  await new Promise((resolve) => setImmediate(resolve))
  t.same(engine[kLocalRuns](), ['lingering'], 'the old run ending did not remove the new one')
  const result = engine.getResult('lingering')
  hold.open()
  t.equal(await result, 'done')
})

t.test('a graceful stop does not hand back a suspended run that is still unwinding', async (t) => {
  const unwind = gate()
  const clinging = defineWorkflow('clinging', async (ctx) => {
    await ctx.step('one', () => 1)
    try {
      await ctx.sleep(60_000)
    } catch (err) {
      await unwind.wait()
      throw err
    }
  })
  const sql = adminSql(t)
  const shared = restartable(t, { workflows: [clinging] })
  const a = await shared.start({ shutdownTimeoutMs: 10 })
  await a.startWorkflow(clinging, undefined, { workflowId: 'clinging' })
  await pollUntil(() => unwind.entered === 1, { what: 'the run to catch the signal and linger' })
  await a.stop()
  unwind.open()
  t.match(await rowOf(sql, a, 'clinging'), { status: 'PENDING', attempts: 1, epoch: '1' },
    'its attempt was not handed back: a wake-up, not a recovery, resumes it')
  t.not((await rowOf(sql, a, 'clinging'))?.wake_at, null, 'still suspended')
})

t.test('a suspend whose epoch was bumped underneath writes nothing', async (t) => {
  const engine = await buildEngine(t, { workflows: [sleeper], sleepInMemoryMaxMs: 0 })
  const sql = adminSql(t)
  const schema = engine.options.schema
  // Another owner claims the workflow right as its sleep checkpoint commits,
  // so the checkpoint lands but the wake_at write that follows is stale.
  await sql.unsafe(`
    CREATE FUNCTION ${schema}.steal() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN UPDATE ${schema}.workflows SET epoch = epoch + 1 WHERE workflow_id = NEW.workflow_id; RETURN NEW; END $$;
    CREATE TRIGGER steal AFTER INSERT ON ${schema}.steps FOR EACH ROW WHEN (NEW.name = 'sleep') EXECUTE FUNCTION ${schema}.steal();`)
  await engine.startWorkflow(sleeper, 60_000, { workflowId: 'fenced' })
  await recordedWakeAt(engine, 'fenced')
  await pollUntil(() => engine[kLocalRuns]().length === 0, { what: 'the fenced run to end' })
  t.match(await rowOf(sql, engine, 'fenced'), { status: 'PENDING', wake_at: null, epoch: '2', output: null },
    'no wake_at under the new epoch, no outcome')
  t.equal(counter.get('fenced:two'), 0, 'the body did not go on')
})

t.test('a refused wake_at write is like a crash before it: the restart replays and suspends again', async (t) => {
  const sql = adminSql(t)
  const shared = restartable(t)
  const a = await shared.start()
  await sql.unsafe(`ALTER TABLE ${shared.schema}.workflows ADD CONSTRAINT no_wake CHECK (wake_at IS NULL)`)
  const handle = await a.startWorkflow(sleeper, 4000, { workflowId: 'between' })
  await t.rejects(handle.getResult(), { code: '23514' }, 'the local waiter sees the refusal')
  const wakeAt = await recordedWakeAt(a, 'between')
  t.match(await rowOf(sql, a, 'between'), { status: 'PENDING', wake_at: null, attempts: 1, output: null },
    'the sleep is recorded, wake_at is not, and no outcome')
  await a.stop()
  await sql.unsafe(`ALTER TABLE ${shared.schema}.workflows DROP CONSTRAINT no_wake`)

  const b = await shared.start()
  const again = await suspended(sql, b, 'between')
  t.equal(again.wake_at!.getTime(), wakeAt, 'recovery replayed the sleep: same wake-up time, not a new sleep')
  t.equal(again.attempts, 2, 'the recovery counted, as after any crash')
  t.equal(await b.getResult('between'), 3)
  t.ok(ranTwoAt.get('between')! >= wakeAt)
  t.equal(counter.get('between:one'), 1, 'step one ran once')
  t.equal(counter.get('between:body'), 3, 'first run, recovery, wake-up')
})

t.test('stop() cuts an in-memory sleep short; the next start replays the recorded wake-up time', async (t) => {
  const sql = adminSql(t)
  const shared = restartable(t)
  const a = await shared.start({ sleepInMemoryMaxMs: 600_000, shutdownTimeoutMs: 10 })
  const handle = await a.startWorkflow(sleeper, 300_000, { workflowId: 'cut' })
  const wakeAt = await recordedWakeAt(a, 'cut')
  t.same(a[kLocalRuns](), ['cut'], 'sleeping in memory')
  const waiter = t.rejects(handle.getResult(), { code: 'DBOS_ERR_ENGINE_STOPPED' }, 'a waiter here sees the run stop, as for any run a stop cuts short')
  await a.stop()
  await waiter
  t.match(await rowOf(sql, a, 'cut'), { status: 'PENDING', wake_at: null, attempts: 0 }, 'handed back like any run a stop cuts short')

  const b = await shared.start()
  const asleep = await suspended(sql, b, 'cut')
  t.equal(asleep.wake_at!.getTime(), wakeAt, 'the replay kept the recorded wake-up time')
  t.equal(asleep.attempts, 1)
  t.equal(counter.get('cut:one'), 1)
})

t.test('stop() with suspended workflows returns at once; a new engine wakes them', async (t) => {
  const sql = adminSql(t)
  const logger = capturingLogger()
  const shared = restartable(t)
  const a = await shared.start({ shutdownTimeoutMs: 60_000, logger })
  const ids = ['s1', 's2', 's3']
  for (const id of ids) await a.startWorkflow(sleeper, 2000, { workflowId: id })
  for (const id of ids) await suspended(sql, a, id)
  await pollUntil(() => a[kLocalRuns]().length === 0, { what: 'the runs to leave' })
  // With a run still held, stop would wait up to shutdownTimeoutMs (60 s, past this test's timeout).
  await a.stop()
  t.notOk(logger.records.some((r) => r.obj.event === 'shutdown.waiting'), 'stop had no run to wait for')

  const b = await shared.start()
  for (const id of ids) t.equal(await b.getResult(id), 3)
  for (const id of ids) t.match(await rowOf(sql, b, id), { status: 'SUCCESS', attempts: 1, epoch: '2' })
})

t.test('wake-ups that fell due while no engine ran happen right after the next start', async (t) => {
  const sql = adminSql(t)
  const shared = restartable(t)
  const a = await shared.start()
  await a.startWorkflow(sleeper, 300, { workflowId: 'overdue' })
  const { wake_at: wakeAt } = await suspended(sql, a, 'overdue')
  await a.stop()
  await pollUntil(() => Date.now() > wakeAt!.getTime() + 100, { what: 'the wake-up time to pass' })
  t.not((await rowOf(sql, a, 'overdue'))?.wake_at, null, 'still suspended: nobody was there to wake it')

  const b = await shared.start()
  t.equal(await b.getResult('overdue'), 3)
  t.match(await rowOf(sql, b, 'overdue'), { status: 'SUCCESS', attempts: 1, wake_at: null })
  t.equal(counter.get('overdue:one'), 1)
})

t.test('a sleeper whose definition this process lacks stays suspended for one that has it', async (t) => {
  const sql = adminSql(t)
  const shared = restartable(t)
  const a = await shared.start()
  await a.startWorkflow(sleeper, 300, { workflowId: 'foreign' })
  const { wake_at: wakeAt, epoch } = await suspended(sql, a, 'foreign')
  await a.stop()
  const other = defineWorkflow('other', async (ctx, ms: number) => { await ctx.sleep(ms); return 'other' })
  const b = await shared.start({ workflows: [other] })
  // A sleeper b has the code for, due after 'foreign': once b has woken it,
  // b's scheduler has claimed what was due by then, and that was not 'foreign'.
  const own = await b.startWorkflow(other, Math.max(0, wakeAt!.getTime() - Date.now()) + 100, { workflowId: 'own' })
  const ownWakeAt = (await suspended(sql, b, 'own')).wake_at!
  t.ok(ownWakeAt > wakeAt!, 'b\'s own sleeper is due after the foreign one')
  t.equal(await own.getResult(), 'other', 'b woke its own sleeper')
  t.match(await rowOf(sql, b, 'foreign'), { status: 'PENDING', epoch, attempts: 1 }, 'not claimed')
  t.equal((await rowOf(sql, b, 'foreign'))?.wake_at?.getTime(), wakeAt!.getTime(), 'still suspended')
  await b.stop()
  const c = await shared.start()
  t.equal(await c.getResult('foreign'), 3, 'woken by a process that has the definition')
  t.match(await rowOf(sql, c, 'foreign'), { status: 'SUCCESS', attempts: 1 })
})

t.test('many sleepers wake in batches, each exactly once', async (t) => {
  const engine = await buildEngine(t, { workflows: [sleeper], sleepInMemoryMaxMs: 0 })
  const sql = adminSql(t)
  const n = 230
  const handles = []
  for (let i = 0; i < n; i++) handles.push(await engine.startWorkflow(sleeper, 1500 + (i % 7) * 50, { workflowId: `many-${i}` }))
  t.same(await Promise.all(handles.map((h) => h.getResult())), Array(n).fill(3))
  const [summary] = await sql<{ done: number, epochs: number, attempts: number }[]>`
    SELECT count(*) FILTER (WHERE status = 'SUCCESS')::int AS done, max(epoch)::int AS epochs, max(attempts)::int AS attempts
    FROM ${sql(engine.options.schema + '.workflows')}`
  t.same(summary, { done: n, epochs: 2, attempts: 1 }, 'every one finished, claimed once, with no attempt counted')
})

t.test('retrying the start of a suspended workflow does not claim it', async (t) => {
  const engine = await buildEngine(t, { workflows: [sleeper], sleepInMemoryMaxMs: 0 })
  const sql = adminSql(t)
  await engine.startWorkflow(sleeper, 1500, { workflowId: 'retried' })
  await suspended(sql, engine, 'retried')
  for (let i = 0; i < 3; i++) await engine.startWorkflow(sleeper, 1500, { workflowId: 'retried' })
  t.equal(await engine.getResult('retried'), 3)
  t.match(await rowOf(sql, engine, 'retried'), { status: 'SUCCESS', attempts: 1, epoch: '2' },
    'only the wake-up claimed it')
  t.equal(counter.get('retried:body'), 2)
})

t.test('ctx.sleep refuses durations that are not numbers from 0 to 1e14', async (t) => {
  const badSleeps = defineWorkflow('badSleeps', async (ctx) => {
    const codes: string[] = []
    for (const ms of [-1, NaN, Infinity, 1e14 + 1, '10', undefined]) {
      try { await ctx.sleep(ms as number) } catch (err) { codes.push((err as { code: string }).code) }
    }
    await ctx.sleep(0)
    await ctx.step('after', () => 1)
    return codes
  })
  const uncaught = defineWorkflow('uncaughtBadSleep', async (ctx) => { await ctx.sleep(-5) })
  const engine = await buildEngine(t, { workflows: [badSleeps, uncaught] })
  const codes = await (await engine.startWorkflow(badSleeps, undefined, { workflowId: 'bad' })).getResult()
  t.same(codes, Array(6).fill('DBOS_ERR_INVALID_SLEEP_DURATION'))
  t.same((await engine.listSteps('bad')).map((s) => [s.stepId, s.name]), [[0, 'sleep'], [1, 'after']],
    'refused sleeps take no step position; sleep(0) does')
  await t.rejects((await engine.startWorkflow(uncaught, undefined)).getResult(), { code: 'DBOS_ERR_INVALID_SLEEP_DURATION', statusCode: 500 })
})

t.test('sleepInMemoryMaxMs must be an integer from 0 to 2^31 - 1', async (t) => {
  t.equal(new Engine({ databaseUrl }).options.sleepInMemoryMaxMs, 5000, 'default')
  t.equal(new Engine({ databaseUrl, sleepInMemoryMaxMs: 0 }).options.sleepInMemoryMaxMs, 0)
  for (const bad of [-1, 1.5, NaN, '100', 2 ** 31]) {
    t.throws(() => new Engine({ databaseUrl, sleepInMemoryMaxMs: bad as number }), { code: 'DBOS_ERR_INVALID_OPTION' }, String(bad))
  }
})

t.test('the longest sleep ctx.sleep accepts suspends like any other', async (t) => {
  // postgres.js sends a Date as toISOString(), which writes years after 9999
  // as "+010000-..."; Postgres refuses that, so a wake-up time past 9999 could
  // never be recorded and the workflow failed at every recovery.
  const forever = defineWorkflow('forever', async (ctx, ms: number) => {
    await ctx.step('one', () => 1)
    await ctx.sleep(ms)
    return 'woke'
  })
  const engine = await buildEngine(t, { workflows: [forever] })
  const sql = adminSql(t)
  const longest = await engine.startWorkflow(forever, 1e14, { workflowId: 'longest' })
  const row = await suspended(sql, engine, 'longest')
  t.equal(row.wake_at!.getTime(), await recordedWakeAt(engine, 'longest'), 'wake_at recorded and read back intact')
  t.equal((await engine.getStatus('longest')).wakeAt?.getTime(), row.wake_at!.getTime())
  await pollUntil(() => engine[kLocalRuns]().length === 0, { what: 'the run to leave' })
  await t.rejects(longest.getResult({ timeoutMs: 200 }), { code: 'DBOS_ERR_RESULT_TIMEOUT' }, 'asleep, not failed')
  const tooLong = await engine.startWorkflow(forever, 1e15, { workflowId: 'too-long' })
  await t.rejects(tooLong.getResult(), { code: 'DBOS_ERR_INVALID_SLEEP_DURATION' }, 'refused up front, not after its checkpoint')
})

t.test('a start retried while its workflow is being woken does not claim it a second time', async (t) => {
  // Step two waits for the test: the woken run cannot finish (and so make a
  // wrong claim match nothing) before the test has looked.
  const afterWake = gate()
  const waking = defineWorkflow('waking', async (ctx, ms: number) => {
    counter.hit(`${ctx.workflowId}:body`)
    const one = await ctx.step('one', () => 1)
    await ctx.sleep(ms)
    return one + await ctx.step('two', async () => { await afterWake.wait(); return 2 })
  })
  // poolSize 4: the engine's reads and claims share one connection, which runs
  // its statements in the order they were issued (see the read below).
  const engine = await buildEngine(t, { workflows: [waking], sleepInMemoryMaxMs: 0, poolSize: 4 })
  const sql = adminSql(t)
  const steps = engine.options.schema + '.steps'
  await engine.startWorkflow(waking, 800, { workflowId: 'waking' })
  await suspended(sql, engine, 'waking')
  // Holds the woken run between its claim and its launch: the scheduler's
  // claim commits, but reading the recorded steps waits for this lock.
  let unlock!: () => void
  const locked = new Promise<void>((resolve) => { unlock = resolve })
  let holding!: () => void
  const held = new Promise<void>((resolve) => { holding = resolve })
  const lock = sql.begin(async (tx) => {
    await tx.unsafe(`LOCK TABLE ${steps} IN ACCESS EXCLUSIVE MODE`)
    holding()
    await locked
  })
  await held
  await pollUntil(async () => (await rowOf(sql, engine, 'waking'))?.epoch === '2', { what: 'the scheduler to claim it' })
  t.same(engine[kLocalRuns](), [], 'claimed, not launched yet')
  await engine.startWorkflow(waking, 800, { workflowId: 'waking' })
  // Issued after any claim the retried start made, on the same connection, so
  // it sees that claim's attempt. It waits behind the woken run's blocked read
  // of its steps, and answers once the lock is released.
  const seen = engine.getStatus('waking')
  unlock()
  await lock
  t.match(await seen, { status: 'PENDING', attempts: 1 }, 'the retried start claimed nothing')
  afterWake.open()
  t.equal(await engine.getResult('waking'), 3)
  t.match(await rowOf(sql, engine, 'waking'), { status: 'SUCCESS', attempts: 1, epoch: '2' }, 'only the wake-up claimed it')
  t.equal(counter.get('waking:body'), 2, 'the first run and the woken one')
})

t.test('a graceful stop does not hand back a run whose suspension lands while it stops', async (t) => {
  const hold = gate()
  const late = defineWorkflow('late', async (ctx) => {
    await ctx.step('one', () => hold.wait())
    await ctx.sleep(60_000)
  })
  const sql = adminSql(t)
  const shared = restartable(t, { workflows: [late] })
  const a = await shared.start({ shutdownTimeoutMs: 10 })
  const workflows = shared.schema + '.workflows'
  await a.startWorkflow(late, undefined, { workflowId: 'late' })
  await pollUntil(() => hold.entered === 1, { what: 'step one to start' })
  const waiting = (text: string) => pollUntil(async () => (await sql<{ n: number }[]>`
    SELECT count(*)::int AS n FROM pg_stat_activity
    WHERE wait_event_type = 'Lock' AND query LIKE ${'%' + text + '%'} AND query NOT LIKE '%pg_stat_activity%'`)[0]!.n > 0,
  { what: `a statement with ${text} to wait for the row lock` })
  // Holds the row lock, so the wake_at write is still in flight when stop()
  // takes its list of runs to hand back.
  let unlock!: () => void
  const locked = new Promise<void>((resolve) => { unlock = resolve })
  let holding!: () => void
  const held = new Promise<void>((resolve) => { holding = resolve })
  const lock = sql.begin(async (tx) => {
    await tx.unsafe(`SELECT 1 FROM ${workflows} WHERE workflow_id = 'late' FOR UPDATE`)
    holding()
    await locked
  })
  await held
  hold.open()
  await waiting('wake_at =')
  const stopping = a.stop()
  await waiting('greatest(')
  unlock()
  await lock
  await stopping
  const row = await rowOf(sql, a, 'late')
  t.not(row?.wake_at, null, 'suspended')
  t.match(row, { status: 'PENDING', attempts: 1, epoch: '1' }, 'its attempt was not handed back: a wake-up, not a recovery, resumes it')
})

t.test('a step still running when a sleep beside it suspends is not recorded, and runs again after the wake-up', async (t) => {
  const slow = gate()
  const beside = defineWorkflow('beside', async (ctx) => {
    counter.hit('beside:body')
    const [value] = await Promise.all([
      ctx.step('slow', async () => { const n = counter.hit('beside:slow'); if (n === 1) await slow.wait(); return n }),
      ctx.sleep(700)
    ])
    return value
  })
  const engine = await buildEngine(t, { workflows: [beside], sleepInMemoryMaxMs: 0 })
  const sql = adminSql(t)
  const handle = await engine.startWorkflow(beside, undefined, { workflowId: 'beside' })
  await suspended(sql, engine, 'beside')
  await pollUntil(() => engine[kLocalRuns]().length === 0, { what: 'the suspended run to end' })
  slow.open()
  t.equal(await handle.getResult(), 2, 'the woken run ran the step again and used its own result')
  t.same((await engine.listSteps('beside')).map((s) => [s.stepId, s.name, s.output]), [[0, 'slow', 2], [1, 'sleep', (await recordedWakeAt(engine, 'beside'))]],
    'the first run\'s late result was not recorded')
  t.equal(counter.get('beside:body'), 2)
})

t.test('a step that finishes while its sleep records the suspension writes nothing the woken run would trip over', async (t) => {
  const aGate = gate()
  const preGate = gate()
  const racer = defineWorkflow('racer', async (ctx) => {
    // Step a runs beside the sleep; its result differs from one run to the next.
    const [value] = await Promise.all([
      ctx.step('a', async () => { const n = counter.hit('racer:a'); if (n === 1) await aGate.wait(); return n }),
      (async () => {
        await ctx.step('pre', () => preGate.wait())
        await ctx.sleep(300)
      })()
    ])
    await ctx.step('b', () => value)
    return value
  })
  const engine = await buildEngine(t, { workflows: [racer], sleepInMemoryMaxMs: 0 })
  const sql = adminSql(t)
  const locks = adminSql(t)
  const schema = engine.options.schema
  const waitingStatements = async (text: string): Promise<number> => (await sql<{ n: number }[]>`
    SELECT count(*)::int AS n FROM pg_stat_activity
    WHERE wait_event_type = 'Lock' AND query LIKE ${'%' + text + '%'} AND query NOT LIKE '%pg_stat_activity%'`)[0]!.n
  /** An admin transaction holding what `take` locks until the returned function ends it. */
  const holding = async (take: (tx: postgres.TransactionSql) => Promise<unknown>, commit: boolean): Promise<() => Promise<void>> => {
    let end!: () => void
    const ended = new Promise<void>((resolve) => { end = resolve })
    let taken!: () => void
    const isTaken = new Promise<void>((resolve) => { taken = resolve })
    const tx = locks.begin(async (tx) => {
      await take(tx)
      taken()
      await ended
      if (!commit) throw new Error('rollback')
    }).catch(() => {})
    await isTaken
    return async () => { end(); await tx }
  }
  const handle = await engine.startWorkflow(racer, undefined, { workflowId: 'racer' })
  await pollUntil(() => aGate.entered === 1 && preGate.entered === 1, { what: 'both steps to run' })
  // The wake_at write waits for this row lock...
  const releaseRow = await holding((tx) => tx.unsafe(`SELECT 1 FROM ${schema}.workflows WHERE workflow_id = 'racer' FOR UPDATE`), true)
  // ...and a write of step a waits for this uncommitted row with its key.
  const releaseKey = await holding((tx) => tx.unsafe(`INSERT INTO ${schema}.steps (workflow_id, step_id, name, output) VALUES ('racer', 0, 'a', '0')`), false)
  preGate.open()
  await pollUntil(async () => await waitingStatements('wake_at =') > 0, { what: 'the wake_at write to wait' })
  aGate.open() // step a finishes while the suspension is being recorded
  await new Promise((resolve) => setTimeout(resolve, 200))
  await releaseRow()
  await pollUntil(() => counter.get('racer:a') === 2, { what: 'the woken run to run step a' })
  await releaseKey()
  t.equal(await handle.getResult({ timeoutMs: 5000 }), 2, 'the woken run finished with its own result')
  t.match(await rowOf(sql, engine, 'racer'), { status: 'SUCCESS', epoch: '2' })
})

t.test('a transaction beside a long sleep, with one general-purpose connection: no deadlock, and it commits nothing', async (t) => {
  let runs = 0
  const besideSleep = defineWorkflow('txBesideSleep', async (ctx) => {
    const [one] = await Promise.all([
      ctx.transaction('count', async (sql) => {
        runs++
        // Still open when the sleep records its suspension: the suspend write
        // must not need the connection this transaction holds.
        await new Promise((resolve) => setTimeout(resolve, 200))
        const [row] = await sql`SELECT 1 AS one`
        return row!.one as number
      }),
      ctx.sleep(500)
    ])
    return one
  })
  // poolSize 4 leaves one connection for transactions.
  const engine = await buildEngine(t, { workflows: [besideSleep], poolSize: 4, sleepInMemoryMaxMs: 0 })
  const handle = await engine.startWorkflow(besideSleep, undefined)
  t.equal(await handle.getResult({ timeoutMs: 15_000 }), 1)
  t.equal(runs, 2, 'the transaction that finished after the suspension rolled back and ran again after the wake-up')
  t.same((await engine.listSteps(handle.workflowId)).map((s) => s.name), ['count', 'sleep'])
})
