// Graceful shutdown: app.close() with workflows in flight.
import t from 'tap'
import { defineWorkflow, type Logger } from '../plugins/index.js'
import { adminSql, buildApp, pollUntil, uniqueSchema } from './helpers/db.js'

/** A promise the test opens by hand. */
function gate (): { opened: Promise<void>, open (): void } {
  let open!: () => void
  const opened = new Promise<void>((resolve) => { open = resolve })
  return { opened, open }
}

/** A logger that keeps what it is given, so tests can wait for the engine's own milestones. */
function capturingLogger (): Logger & { records: { level: string, obj: any, msg?: string }[] } {
  const records: { level: string, obj: any, msg?: string }[] = []
  const at = (level: string) => (obj: object, msg?: string) => { records.push({ level, obj, msg }) }
  return { records, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') }
}

// Per-workflow gates and counters, keyed by the workflow's input.
const gates = new Map<string, ReturnType<typeof gate>>()
const entered = new Map<string, number>()
const ran = new Map<string, number>()
const count = (map: Map<string, number>, key: string): void => { map.set(key, (map.get(key) ?? 0) + 1) }

const gated = defineWorkflow('gated', async (ctx, key: string) => {
  const before = await ctx.step('before', async () => {
    count(ran, key)
    return `${key}:before`
  })
  const waited = await ctx.step('wait', async () => {
    count(entered, key)
    await gates.get(key)!.opened
    return `${key}:waited`
  })
  return [before, waited]
})

const quick = defineWorkflow('quick', async (ctx, n: number) => ctx.step('double', async () => n * 2))

function newKey (): string {
  const key = uniqueSchema('k')
  gates.set(key, gate())
  return key
}

t.test('close waits for a workflow that finishes within shutdownTimeoutMs, and refuses new starts meanwhile', async (t) => {
  const logger = capturingLogger()
  const sql = adminSql(t)
  const schema = uniqueSchema('shutdown')
  const app = await buildApp(t, { workflows: [gated, quick], schema, logger, shutdownTimeoutMs: 30_000 })
  const lateGate = gate()
  let lateReached = false
  app.post('/late', async (req) => {
    lateReached = true
    await lateGate.opened
    const handle = await req.workflows.start(quick, 1)
    return { workflowId: handle.workflowId }
  })
  await app.ready()

  const key = newKey()
  const handle = await app.workflows.start(gated, key)
  await pollUntil(() => entered.get(key) === 1, { what: 'the workflow to reach its waiting step' })
  // A request already in its handler when close begins (inject requests do not hold close up).
  const late = app.inject({ method: 'POST', url: '/late' })
  await pollUntil(() => lateReached, { what: 'the late request to reach its handler' })

  let closed = false
  const closing = app.close().then(() => { closed = true })
  await pollUntil(() => logger.records.some((r) => r.level === 'info' && r.obj.event === 'shutdown.waiting' && r.obj.count === 1),
    { what: 'the engine to wait for its running workflow' })

  await t.rejects(app.workflows.start(quick, 2), { code: 'DBOS_ERR_SHUTTING_DOWN', statusCode: 503 },
    'app.workflows.start is refused once close has begun')
  lateGate.open()
  const lateRes = await late
  t.equal(lateRes.statusCode, 503)
  t.equal(lateRes.json().code, 'DBOS_ERR_SHUTTING_DOWN', 'a start from a request handler is refused too')
  t.notOk(closed, 'close is still waiting for the running workflow')

  gates.get(key)!.open()
  await closing
  const rows = await sql<{ workflow_id: string, name: string, status: string }[]>`
    SELECT workflow_id, name, status FROM ${sql(schema + '.workflows')}`
  t.same(rows, [{ workflow_id: handle.workflowId, name: 'gated', status: 'SUCCESS' }],
    'the running workflow finished during close; the refused starts left no rows')
  const [{ output }] = await sql`SELECT output FROM ${sql(schema + '.workflows')}`
  t.ok(output.includes(`${key}:waited`))
})

t.test('a workflow still running at shutdownTimeoutMs stays PENDING and a new app resumes it', async (t) => {
  const logger = capturingLogger()
  const sql = adminSql(t)
  const schema = uniqueSchema('shutdown')
  const executorId = `shutdown-${schema}`
  const first = await buildApp(t, { workflows: [gated], schema, executorId, logger, shutdownTimeoutMs: 200 }, { keepSchema: true })
  await first.ready()
  const key = newKey()
  const { workflowId } = await first.workflows.start(gated, key)
  await pollUntil(() => entered.get(key) === 1, { what: 'the workflow to reach its waiting step' })
  await first.close()
  t.ok(logger.records.some((r) => r.level === 'warn' && r.obj.event === 'shutdown.timeout' && r.obj.workflowIds?.includes(workflowId)),
    'the timeout is logged with the workflow id')
  const [row] = await sql`SELECT status FROM ${sql(schema + '.workflows')} WHERE workflow_id = ${workflowId}`
  t.same(row, { status: 'PENDING' }, 'left PENDING')
  const steps = await sql`SELECT step_id, name FROM ${sql(schema + '.steps')} WHERE workflow_id = ${workflowId}`
  t.same(steps, [{ step_id: 0, name: 'before' }], 'with its completed step recorded')

  const second = await buildApp(t, { workflows: [gated], schema, executorId })
  await second.ready()
  // Opened only now: the first app's run is aborted and must not finish it.
  gates.get(key)!.open()
  const handle = await second.workflows.retrieve(workflowId)
  t.same(await handle.getResult({ timeoutMs: 20_000 }), [`${key}:before`, `${key}:waited`])
  t.equal(ran.get(key), 1, 'the checkpointed step did not run again')
  t.equal(entered.get(key), 2, 'the interrupted step ran again')
  const status = await second.workflows.getStatus(workflowId)
  t.equal(status.status, 'SUCCESS')
  t.same((await second.workflows.listSteps(workflowId)).map((s) => s.name), ['before', 'wait'])
})

t.test('close stops only what the plugin opened', async (t) => {
  const sql = adminSql(t)
  const one = await buildApp(t, { workflows: [quick] })
  const two = await buildApp(t, { workflows: [quick] })
  await Promise.all([one.ready(), two.ready()])
  t.equal(await one.workflows.run(quick, 1), 2)
  await one.close()
  await t.rejects(one.workflows.start(quick, 1), { code: 'DBOS_ERR_SHUTTING_DOWN' })
  t.equal(await two.workflows.run(quick, 21, { timeoutMs: 10_000 }), 42, 'another app on the same database keeps working')
  t.same(await sql`SELECT 1 AS ok`, [{ ok: 1 }], 'the database given by URL is left running')
})
