// A start with a generated id is written together with the workflow's first
// step checkpoint (lib/opening.ts). These tests tell the two apart by
// created_at: both columns default to now(), which is the transaction's start
// time, so a start and a step committed together carry the same timestamp.
import net from 'node:net'
import t from 'tap'
import { defineWorkflow, type Engine } from '../lib/index.js'
import { FirstSteps } from '../lib/writes/opening.js'
import { kLocalRuns } from '../lib/core/symbols.js'
import { adminSql, buildEngine, databaseUrl, pollUntil } from './helpers/db.js'
import { Counter, gate } from './helpers/workflows.js'

const admin = adminSql(t)

/** Whether the workflow's row and its step `stepId` were committed by one transaction. */
async function sameCommit (engine: Engine, workflowId: string, stepId = 0): Promise<boolean> {
  const schema = admin(engine.options.schema)
  const [row] = await admin`
    SELECT w.created_at = s.created_at AS same
    FROM ${schema}.workflows w JOIN ${schema}.steps s USING (workflow_id)
    WHERE w.workflow_id = ${workflowId} AND s.step_id = ${stepId}`
  return row!.same as boolean
}

const counter = new Counter()
const threeSteps = defineWorkflow('opening-three', async (ctx, n: number) => {
  const a = await ctx.step('one', () => { counter.hit(`one:${n}`); return n + 1 })
  const b = await ctx.step('two', () => a * 2)
  return ctx.step('three', () => `done:${b}`)
})

t.test('one at a time, a generated id: the start and the first step commit together', async (t) => {
  const engine = await buildEngine(t, { workflows: [threeSteps] })
  const handle = await engine.startWorkflow(threeSteps, 1)
  t.same((await engine.listSteps(handle.workflowId)).map((s) => s.name).slice(0, 1), ['one'],
    'the first step is recorded by the time start() resolves')
  t.equal(await handle.getResult(), 'done:4')
  t.ok(await sameCommit(engine, handle.workflowId), 'one commit for the start and step one')
  t.notOk(await sameCommit(engine, handle.workflowId, 1), 'later steps commit on their own')
  t.equal(counter.get('one:1'), 1)
})

t.test('a caller-chosen id is written before anything runs', async (t) => {
  const engine = await buildEngine(t, { workflows: [threeSteps] })
  const handle = await engine.startWorkflow(threeSteps, 2, { workflowId: 'chosen-2' })
  t.equal(await handle.getResult(), 'done:6')
  t.notOk(await sameCommit(engine, 'chosen-2'), 'the start committed alone')
  const again = await engine.startWorkflow(threeSteps, 2, { workflowId: 'chosen-2' })
  t.equal(await again.getResult(), 'done:6')
  t.equal(counter.get('one:2'), 1, 'the repeated start ran nothing')
})

t.test('several starts at once share one statement for their starts and first steps', async (t) => {
  // Held in step two, so that no completion has rewritten the workflow rows yet:
  // xmin (the inserting transaction) is then still the start's.
  const hold = gate()
  const held = defineWorkflow('opening-shared', async (ctx, n: number) => {
    const a = await ctx.step('one', () => n + 1)
    return ctx.step('two', async () => { await hold.wait(); return a * 2 })
  })
  const engine = await buildEngine(t, { workflows: [held] })
  const inputs = [10, 11, 12, 13, 14]
  const handles = await Promise.all(inputs.map((n) => engine.startWorkflow(held, n)))
  await pollUntil(() => hold.entered === inputs.length, { what: 'every workflow to reach step two' })
  const ids = handles.map((h) => h.workflowId)
  const schema = admin(engine.options.schema)
  // Each checkpoint statement is one transaction of its own (autocommit): rows
  // with one xmin were written by one statement.
  const rows = await admin<{ xid: string }[]>`
    SELECT xmin::text AS xid FROM ${schema}.workflows WHERE workflow_id = ANY(${ids})
    UNION ALL
    SELECT xmin::text FROM ${schema}.steps WHERE workflow_id = ANY(${ids}) AND step_id = 0`
  t.equal(rows.length, 2 * inputs.length, 'every start and every first step is written')
  t.equal(new Set(rows.map((r) => r.xid)).size, 1, 'all ten rows by one transaction: one statement carried the five starts and their first steps')
  hold.open()
  t.same(await Promise.all(handles.map((h) => h.getResult())), inputs.map((n) => (n + 1) * 2))
})

t.test('a slow first step does not hold start() back: the start is written alone', async (t) => {
  const hold = gate()
  const slow = defineWorkflow('opening-slow', async (ctx) => {
    const a = await ctx.step('slow', async () => { await hold.wait(); return 'a' })
    return ctx.step('after', () => `${a}b`)
  })
  const engine = await buildEngine(t, { workflows: [slow] })
  const handle = await engine.startWorkflow(slow, undefined)
  t.equal(hold.entered, 1, 'the step is still running')
  const status = await engine.getStatus(handle.workflowId)
  t.equal(status.status, 'PENDING', 'and the workflow is recorded')
  t.same(await engine.listSteps(handle.workflowId), [])
  hold.open()
  t.equal(await handle.getResult(), 'ab')
  t.notOk(await sameCommit(engine, handle.workflowId))
})

t.test('parallel first steps: one takes the start along, the others follow it', async (t) => {
  const wf = defineWorkflow('opening-parallel', async (ctx) => {
    const parts = await Promise.all(['a', 'b', 'c'].map((x) => ctx.step(x, () => x.toUpperCase())))
    return parts.join('')
  })
  const engine = await buildEngine(t, { workflows: [wf] })
  const handle = await engine.startWorkflow(wf, undefined)
  t.equal(await handle.getResult(), 'ABC')
  t.same((await engine.listSteps(handle.workflowId)).map((s) => [s.stepId, s.output]), [[0, 'A'], [1, 'B'], [2, 'C']])
  t.ok(await sameCommit(engine, handle.workflowId))
})

t.test('anything but a step first writes the start before it', async (t) => {
  const schemaRows = (engine: Engine) => admin`SELECT count(*)::int AS n FROM ${admin(engine.options.schema)}.workflows`

  t.test('a transaction', async (t) => {
    let seen = -1
    const wf = defineWorkflow('opening-tx', async (ctx) => {
      // The transaction's checkpoint joins the workflow row: it must be committed already.
      seen = await ctx.transaction('count', async (sql) => {
        const [{ n }] = await sql`SELECT count(*)::int AS n FROM ${sql(engine.options.schema)}.workflows`
        return n as number
      })
      return ctx.step('after', () => 'ok')
    })
    const engine = await buildEngine(t, { workflows: [wf] })
    const handle = await engine.startWorkflow(wf, undefined)
    t.equal(await handle.getResult(), 'ok')
    t.equal(seen, 1, 'the transaction saw the committed start')
    t.equal((await engine.listSteps(handle.workflowId)).length, 2)
  })

  t.test('no step at all', async (t) => {
    const wf = defineWorkflow('opening-none', async (_ctx, n: number) => n * 3)
    const engine = await buildEngine(t, { workflows: [wf] })
    const handle = await engine.startWorkflow(wf, 5)
    t.equal(await handle.getResult(), 15)
    const status = await engine.getStatus(handle.workflowId)
    t.equal(status.status, 'SUCCESS')
    t.equal((await schemaRows(engine))[0]!.n, 1)
  })

  t.test('a sleep that suspends the workflow', async (t) => {
    const wf = defineWorkflow('opening-sleep', async (ctx) => {
      await ctx.sleep(60_000)
      return 'woke'
    })
    const engine = await buildEngine(t, { workflows: [wf], sleepInMemoryMaxMs: 10 })
    const handle = await engine.startWorkflow(wf, undefined)
    const wakeAt = await pollUntil(async () => (await engine.getStatus(handle.workflowId)).wakeAt ?? undefined, { what: 'wake_at to be written' })
    const steps = await engine.listSteps(handle.workflowId)
    t.same(steps.map((s) => s.name), ['sleep'])
    t.equal(wakeAt.getTime(), steps[0]!.output, 'wake_at is the wake-up time the sleep checkpoint recorded')
    t.ok(await sameCommit(engine, handle.workflowId), 'the sleep checkpoint carried the start')
    await pollUntil(() => engine[kLocalRuns]().length === 0, { what: 'the run to leave' })
  })
})

t.test('a start that cannot be written fails start() and stops the run; nothing is left behind', async (t) => {
  const steps = new Counter()
  const doomed = defineWorkflow('opening-doomed', async (ctx) => {
    await ctx.step('one', () => steps.hit('one'))
    await ctx.step('two', () => steps.hit('two'))
    return 'unreachable'
  })
  const engine = await buildEngine(t, { workflows: [doomed, threeSteps] })
  const schema = admin(engine.options.schema)
  // Refuses the row as the database would refuse a bad write; the connection stays up.
  await admin`
    CREATE FUNCTION ${schema}.refuse() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION 'refused by the test'; END $$`
  await admin`
    CREATE TRIGGER refuse BEFORE INSERT ON ${schema}.workflows
    FOR EACH ROW WHEN (NEW.name = 'opening-doomed') EXECUTE FUNCTION ${schema}.refuse()`
  await t.rejects(engine.startWorkflow(doomed, undefined), /refused by the test/)
  await pollUntil(() => engine[kLocalRuns]().length === 0, { what: 'the run to stop' })
  t.equal(steps.get('two'), 0, 'no step ran after the failed start')
  t.same(await engine.list(), [], 'no workflow recorded')
  const fine = await engine.startWorkflow(threeSteps, 20)
  t.equal(await fine.getResult(), 'done:42', 'the engine carries on')
})

t.test('a shared batch that fails is retried write by write: the opening beside a refused step is written alone', async (t) => {
  // W1 waits in its first step while W2 opens; W2's first step lets W1's
  // finish, so one statement carries W1's step (refused by a trigger), W1's
  // completion and W2's opening. It fails as a whole, and each write is then
  // retried alone (Batcher): W2's start and first step commit together,
  // W1's step is refused again.
  const hold = gate()
  const w1 = defineWorkflow('opening-mixed-w1', async (ctx) => {
    await ctx.step('boom', async () => { await hold.wait(); return 1 })
    return 'w1'
  })
  const w2 = defineWorkflow('opening-mixed-w2', async (ctx) => {
    await ctx.step('first', () => { hold.open(); return 'x' })
    return ctx.step('second', () => 'y')
  })
  const engine = await buildEngine(t, { workflows: [w1, w2] })
  const schema = admin(engine.options.schema)
  // Sequences count what a rollback undoes: how often each row was tried.
  await admin`CREATE SEQUENCE ${schema}.boom_tries`
  await admin`CREATE SEQUENCE ${schema}.w2_inserts`
  await admin`CREATE FUNCTION ${schema}.boom() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN PERFORM nextval(TG_TABLE_SCHEMA || '.boom_tries'); RAISE EXCEPTION 'boom'; END $$`
  await admin`CREATE TRIGGER boom BEFORE INSERT ON ${schema}.steps FOR EACH ROW WHEN (NEW.name = 'boom') EXECUTE FUNCTION ${schema}.boom()`
  await admin`CREATE FUNCTION ${schema}.count_w2() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN PERFORM nextval(TG_TABLE_SCHEMA || '.w2_inserts'); RETURN NEW; END $$`
  await admin`CREATE TRIGGER count_w2 BEFORE INSERT ON ${schema}.workflows FOR EACH ROW WHEN (NEW.name = 'opening-mixed-w2') EXECUTE FUNCTION ${schema}.count_w2()`
  const first = await engine.startWorkflow(w1, undefined)
  await pollUntil(() => hold.entered > 0, { what: 'w1 in its first step' })
  const second = await engine.startWorkflow(w2, undefined)
  t.equal(await second.getResult(), 'y', 'start() of W2 resolved, and W2 finished')
  await pollUntil(() => engine[kLocalRuns]().length === 0, { what: 'both runs to end' })
  const [tries] = await admin<{ boom: number, w2: number }[]>`
    SELECT (SELECT last_value FROM ${schema}.boom_tries)::int AS boom, (SELECT last_value FROM ${schema}.w2_inserts)::int AS w2`
  t.same(tries, { boom: 2, w2: 2 }, 'W1\'s step and W2\'s start were tried in one statement that failed, then each alone')
  t.ok(await sameCommit(engine, second.workflowId), 'W2\'s start and first step committed together')
  t.same((await engine.listSteps(second.workflowId)).map((s) => s.name), ['first', 'second'])
  t.same(await engine.listSteps(first.workflowId), [], 'W1\'s refused step is not recorded')
  t.equal((await engine.getStatus(first.workflowId)).status, 'PENDING', 'W1 stays PENDING: its run must not record an outcome past a refused step')
})

t.test('the first step can look up its own workflow', async (t) => {
  let seen = 'unset'
  const wf = defineWorkflow('opening-self', async (ctx) => {
    await ctx.step('look', async () => {
      seen = (await engine.getStatus(ctx.workflowId)).status
      return (await engine.listSteps(ctx.workflowId)).length
    })
    return 'ok'
  })
  const engine = await buildEngine(t, { workflows: [wf] })
  const handle = await engine.startWorkflow(wf, undefined)
  t.equal(await handle.getResult(), 'ok')
  t.equal(seen, 'PENDING', 'the look-up wrote the start first')
  t.same((await engine.listSteps(handle.workflowId)).map((s) => s.output), [0])
})

t.test('once the database is found unreachable, starts run nothing until it answers again', async (t) => {
  const proxy = await tcpProxy(new URL(databaseUrl))
  const runs = new Counter()
  const wf = defineWorkflow('opening-outage', async (ctx) => {
    await ctx.step('charge', () => runs.hit('charge'))
    return 'ok'
  })
  const engine = await buildEngine(t, { workflows: [wf], databaseUrl: proxy.url, shutdownTimeoutMs: 100 })
  t.equal(await (await engine.startWorkflow(wf, undefined)).getResult(), 'ok')
  await proxy.cut()
  for (let i = 0; i < 3; i++) {
    await t.rejects(engine.startWorkflow(wf, undefined), { code: 'DBOS_ERR_DATABASE_UNAVAILABLE' })
  }
  t.equal(runs.get('charge'), 2, 'only the start that found the outage ran its first step')
  await proxy.restore()
  const after = await engine.startWorkflow(wf, undefined)
  t.equal(await after.getResult(), 'ok')
  const next = await engine.startWorkflow(wf, undefined)
  t.equal(await next.getResult(), 'ok')
  t.ok(await sameCommit(engine, next.workflowId), 'starts carried by first steps again')
})

t.test('a start whose answer was lost (503, yet committed) runs once the database answers again, not at the next restart', async (t) => {
  const proxy = await tcpProxy(new URL(databaseUrl))
  const runs = new Counter()
  const wf = defineWorkflow('opening-lost-answer', async (ctx) => {
    await ctx.step('slow-commit', () => runs.hit('first'))
    return ctx.step('second', () => runs.hit('second'))
  })
  const ping = defineWorkflow('opening-ping', async (ctx) => ctx.step('pong', () => 'pong'))
  const engine = await buildEngine(t, { workflows: [wf, ping], databaseUrl: proxy.url })
  const schema = admin(engine.options.schema)
  // The first checkpoint's statement takes 0.5 s; the connection is cut meanwhile, so its answer is lost.
  await admin`CREATE FUNCTION ${schema}.slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(0.5); RETURN NULL; END $$`
  await admin`CREATE TRIGGER slow AFTER INSERT ON ${schema}.steps FOR EACH ROW WHEN (NEW.name = 'slow-commit') EXECUTE FUNCTION ${schema}.slow()`
  const started = engine.startWorkflow(wf, undefined).then(() => undefined, (err: Error) => err)
  await pollUntil(async () => (await admin`
    SELECT 1 FROM pg_stat_activity WHERE wait_event = 'PgSleep' AND query LIKE ${'%' + engine.options.schema + '%'}`).length > 0,
  { what: 'the first checkpoint\'s statement to be in its trigger\'s pg_sleep' })
  await proxy.cut()
  t.match(await started, { code: 'DBOS_ERR_DATABASE_UNAVAILABLE' }, 'start() could not tell')
  const [row] = await pollUntil(async () => {
    const rows = await admin`SELECT workflow_id, status FROM ${schema}.workflows WHERE name = 'opening-lost-answer'`
    return rows.length === 1 ? rows : undefined
  }, { what: 'the lost start to commit' })
  t.equal(row!.status, 'PENDING', 'the workflow exists, and nothing runs it')
  await proxy.restore()
  t.equal(await (await engine.startWorkflow(ping, undefined)).getResult(), 'pong', 'a write reaches the database again')
  const done = await engine.retrieve(row!.workflow_id as string)
  t.equal(await done.getResult({ timeoutMs: 20_000 }), 1, 'recovered and finished')
  t.equal(runs.get('first'), 1, 'its first step was replayed, not run again')
  t.equal((await engine.getStatus(row!.workflow_id as string)).attempts, 2)
})

/** A TCP proxy to Postgres that the test can cut (connections refused) and restore. */
async function tcpProxy (target: URL): Promise<{ url: string, cut (): Promise<void>, restore (): Promise<void> }> {
  const sockets = new Set<net.Socket>()
  let server: net.Server | undefined
  let port = 0
  const listen = () => new Promise<void>((resolve) => {
    server = net.createServer((client) => {
      const upstream = net.connect(Number(target.port || 5432), target.hostname)
      const end = () => { client.destroy(); upstream.destroy(); sockets.delete(client); sockets.delete(upstream) }
      for (const s of [client, upstream]) { sockets.add(s); s.on('error', end); s.on('close', end) }
      client.pipe(upstream)
      upstream.pipe(client)
    })
    server.listen(port, '127.0.0.1', () => { port = (server!.address() as net.AddressInfo).port; resolve() })
  })
  await listen()
  const url = new URL(target)
  url.hostname = '127.0.0.1'
  url.port = String(port)
  const cut = () => new Promise<void>((resolve) => {
    for (const s of sockets) s.destroy()
    server!.close(() => resolve())
  })
  t.teardown(async () => { if (server?.listening === true) await cut() })
  return { url: url.toString(), cut, restore: listen }
}

t.test('after a first step outlasted the wait, starts of that definition are written alone for a while', async (t) => {
  const hold = gate()
  const wf = defineWorkflow('opening-learns', async (ctx, slow: boolean) => {
    await ctx.step('first', async () => { if (slow) await hold.wait(); return slow })
    return 'ok'
  })
  const engine = await buildEngine(t, { workflows: [wf] })
  const quick = await engine.startWorkflow(wf, false)
  await quick.getResult()
  t.ok(await sameCommit(engine, quick.workflowId), 'a quick first step carries the start')
  const slow = await engine.startWorkflow(wf, true)
  hold.open()
  await slow.getResult()
  const after: boolean[] = []
  for (let i = 0; i < 17; i++) {
    const h = await engine.startWorkflow(wf, false)
    await h.getResult()
    after.push(await sameCommit(engine, h.workflowId))
  }
  t.same(after, [...Array(16).fill(false), true], 'the next 16 starts are written alone, then one waits again')
})

t.test('FirstSteps: per definition, 16 starts alone after a slow first step', async (t) => {
  const steps = new FirstSteps()
  t.ok(steps.worthWaiting('a'))
  steps.slow('a')
  const seen = Array.from({ length: 17 }, () => steps.worthWaiting('a'))
  t.same(seen, [...Array(16).fill(false), true])
  t.ok(steps.worthWaiting('b'), 'other definitions are not affected')
})

t.test('the body can look up its own workflow before its first await', async (t) => {
  let seen: unknown
  const wf = defineWorkflow('opening-sync-lookup', async (ctx) => {
    seen = await engine.getStatus(ctx.workflowId).then((s) => s.status, (err: Error) => err.message)
    return ctx.step('one', () => 1)
  })
  const engine = await buildEngine(t, { workflows: [wf] })
  const h = await engine.startWorkflow(wf, undefined)
  t.equal(await h.getResult(), 1)
  t.equal(seen, 'PENDING')
})
