// Cron schedules in one process (issue 12): pausing and resuming for every
// instance, ticks enqueued on a queue, and the definitions that are refused.
import t from 'tap'
import { defineQueue, defineSchedule, defineWorkflow, Engine, type ScheduledInput } from '../plugins/index.js'
import { adminSql, buildApp, buildEngine, databaseUrl, pollUntil, uniqueSchema } from './helpers/db.js'

const EVERY_SECOND = '* * * * * *'

t.test('pause and resume: shared by every instance; a paused schedule starts nothing, resumed it starts again', async (t) => {
  const ran: { schedule: string, at: number }[] = []
  const ticker = defineWorkflow('ticker', async (ctx, input: ScheduledInput) => {
    await ctx.step('tick', () => { ran.push({ schedule: input.schedule, at: input.scheduledAt.getTime() }) })
  })
  const schedules = [defineSchedule('paused', EVERY_SECOND, ticker), defineSchedule('witness', EVERY_SECOND, ticker)]
  const schema = uniqueSchema()
  const a = await buildApp(t, { workflows: [ticker], schedules, schema }, { keepSchema: true })
  const b = await buildApp(t, { workflows: [ticker], schedules, schema })
  await Promise.all([a.ready(), b.ready()])
  const sql = adminSql(t)
  const now = async () => (await sql<{ ms: number }[]>`SELECT (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS ms`)[0]!.ms
  const of = (name: string) => ran.filter((r) => r.schedule === name).map((r) => r.at)
  await pollUntil(() => of('paused').length > 0 && of('witness').length > 0, { what: 'a tick of each' })

  await a.workflows.schedules.pause('paused')
  const pausedAt = await now()
  const listed = await b.workflows.schedules.list()
  t.match(listed, [{ name: 'paused', cron: EVERY_SECOND, timezone: null, paused: true }, { name: 'witness', paused: false }], 'the other instance sees it paused')
  t.ok(listed[0]!.lastTick instanceof Date)
  // The witness shows the instances' schedulers kept firing meanwhile.
  await pollUntil(() => of('witness').filter((at) => at > pausedAt).length >= 5, { timeoutMs: 15_000, what: 'five ticks of the witness' })
  const resumedAt = await now()
  await b.workflows.schedules.resume('paused')
  t.equal((await a.workflows.schedules.list())[0]!.paused, false)
  await pollUntil(() => of('paused').some((at) => at > resumedAt), { timeoutMs: 10_000, what: 'a tick after the resume' })

  // A tick reads the state when it fires: one fired just before the pause
  // (by a margin for clock offsets), or one late enough to read it after
  // the resume, may have run; none in between.
  const during = of('paused').filter((at) => at > pausedAt + 100 && at < resumedAt - 2000)
  t.same(during, [], 'no tick started while it was paused')
  t.ok(of('witness').filter((at) => at > pausedAt + 100 && at < resumedAt - 2000).length >= 2, 'the witness ticked in that time')
  const counts = new Map<string, number>()
  for (const r of ran) counts.set(`${r.schedule}@${r.at}`, (counts.get(`${r.schedule}@${r.at}`) ?? 0) + 1)
  t.ok([...counts.values()].every((n) => n === 1), 'each tick ran once across the two instances')

  await t.rejects(a.workflows.schedules.pause('nope'), { code: 'DBOS_ERR_SCHEDULE_NOT_FOUND', statusCode: 404 })
  await t.rejects(a.workflows.schedules.resume('nope'), { code: 'DBOS_ERR_SCHEDULE_NOT_FOUND', statusCode: 404 })
})

t.test('ticks that came while paused are not backfilled after the resume', async (t) => {
  const ran: number[] = []
  const ticker = defineWorkflow('ticker', async (ctx, input: ScheduledInput) => {
    await ctx.step('tick', () => { ran.push(input.scheduledAt.getTime()) })
  })
  const schedules = [defineSchedule('filler', EVERY_SECOND, ticker, { missed: 'backfill' })]
  const schema = uniqueSchema()
  const first = await buildEngine(t, { workflows: [ticker], schedules, schema })
  await pollUntil(() => ran.length > 0, { what: 'a tick' })
  await first.schedules.pause('filler')
  const pausedAt = Date.now()
  await new Promise((resolve) => setTimeout(resolve, 3000))
  await first.stop()
  // An instance without the schedule resumes it; then one with it starts and backfills.
  const other = await buildEngine(t, { workflows: [ticker], schema })
  await other.schedules.resume('filler')
  const resumedAt = Date.now()
  await other.stop()
  const last = await buildEngine(t, { workflows: [ticker], schedules, schema })
  await pollUntil(() => ran.some((at) => at > resumedAt + 1000), { timeoutMs: 15_000, what: 'a tick after the resume' })
  t.ok(last.executorId.length > 0)
  t.same(ran.filter((at) => at > pausedAt + 1100 && at < resumedAt - 1100), [], 'no tick of the pause ran, then or in the backfill')
})

t.test('a schedule with a queue enqueues each tick on it', async (t) => {
  const ticker = defineWorkflow('ticker', async (_ctx, input: ScheduledInput) => input.scheduledAt.toISOString())
  const q = defineQueue('ticks', { concurrency: 1 })
  const schema = uniqueSchema()
  const app = await buildApp(t, { workflows: [ticker], queues: [q], schedules: [defineSchedule('queued', EVERY_SECOND, ticker, { queue: q })], schema })
  await app.ready()
  const done = await pollUntil(async () => (await app.workflows.list({ queueName: 'ticks', status: 'SUCCESS' }))[0], { what: 'a tick run through the queue' })
  t.match(done.workflowId, /^queued@\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z$/)
  t.equal(await (await app.workflows.retrieve(done.workflowId)).getResult(), done.workflowId.split('@')[1], 'its input is the tick')
  t.equal(done.queueName, 'ticks')
})

t.test('refused: bad cron strings, names, time zones, missed policies; a schedule whose workflow or queue the engine lacks', async (t) => {
  const ticker = defineWorkflow('ticker', async () => {})
  const bad: [string, string, Record<string, unknown>][] = [
    ['s', 'not a cron', {}], ['s', '* * *', {}], ['s', '61 * * * *', {}], ['s', '* * * * * * * *', {}], ['s', '', {}],
    ['', EVERY_SECOND, {}], ['a@b', EVERY_SECOND, {}], ['x'.repeat(201), EVERY_SECOND, {}],
    ['s', EVERY_SECOND, { timezone: 'Mars/Olympus' }], ['s', EVERY_SECOND, { missed: 'sometimes' }]
  ]
  for (const [name, cron, options] of bad) {
    t.throws(() => defineSchedule(name, cron, ticker, options as any), { code: 'DBOS_ERR_INVALID_OPTION' }, `defineSchedule(${JSON.stringify(name).slice(0, 12)}, ${JSON.stringify(cron)}, ${JSON.stringify(options)})`)
  }
  t.doesNotThrow(() => defineSchedule('paris', '0 3 * * *', ticker, { timezone: 'Europe/Paris', missed: 'backfill' }))
  const q = defineQueue('q')
  const engine = (o: Record<string, unknown>) => () => new Engine({ databaseUrl, schema: uniqueSchema(), ...o })
  t.throws(engine({ workflows: [], schedules: [defineSchedule('s', EVERY_SECOND, ticker)] }), { code: 'DBOS_ERR_INVALID_OPTION' }, 'its workflow is not registered')
  t.throws(engine({ workflows: [ticker], schedules: [defineSchedule('s', EVERY_SECOND, ticker, { queue: q })] }), { code: 'DBOS_ERR_INVALID_OPTION' }, 'its queue is not registered')
  t.throws(engine({ workflows: [ticker], schedules: [defineSchedule('s', EVERY_SECOND, ticker), defineSchedule('s', '0 * * * *', ticker)] }), { code: 'DBOS_ERR_INVALID_OPTION' }, 'two schedules with one name')
})
