// The database restarts under a running app: workflows in flight wait and
// finish, starts answer 503 meanwhile, and nothing is left PENDING. Runs its
// own embedded Postgres (never the shared test database, even with
// DATABASE_URL set), stopped and started again on the same data directory.
import Fastify, { type FastifyInstance } from 'fastify'
import t, { type Test } from 'tap'
import dbosPlugin, { defineWorkflow, type FastifyDbosOptions, type Logger } from '../plugins/index.js'
import { pollUntil, silentLogger, uniqueSchema } from './helpers/db.js'
import postgres from 'postgres'
import { Counter, gate } from './helpers/workflows.js'
import { startCluster } from './helpers/cluster.js'

const cluster = await startCluster(t)

// Workflows wait in their second step until the test opens their gate.
const gates = new Map<string, { opened: Promise<void>, open (): void }>()
const entered = new Set<string>()
function addGate (key: string): void {
  let open!: () => void
  const opened = new Promise<void>((resolve) => { open = resolve })
  gates.set(key, { opened, open })
}

const gated = defineWorkflow('gated', async (ctx, key: string) => {
  const one = await ctx.step('one', async () => `${key}-1`)
  const two = await ctx.step('wait', async () => {
    entered.add(key)
    await gates.get(key)!.opened
    return `${key}-2`
  })
  const three = await ctx.step('three', async () => `${key}-3`)
  return [one, two, three]
})

async function appOnCluster (t: Test, options: FastifyDbosOptions): Promise<FastifyInstance> {
  const app = Fastify({ logger: false })
  await app.register(dbosPlugin, { databaseUrl: cluster.url, logger: silentLogger, workflows: [gated], ...options })
  app.get('/health', async () => ({ ok: true }))
  app.post('/start', async (req) => {
    const handle = await req.workflows.start(gated, req.body as string)
    return { workflowId: handle.workflowId }
  })
  app.get('/status/:id', async (req) => app.workflows.getStatus((req.params as { id: string }).id))
  t.teardown(() => app.close())
  await app.ready()
  return app
}

t.test('workflows in flight survive a Postgres restart; starts answer 503 while it is down', async (t) => {
  const schema = uniqueSchema('restart')
  const app = await appOnCluster(t, { schema })
  const keys = Array.from({ length: 6 }, () => uniqueSchema('k'))
  keys.forEach(addGate)
  const ids: string[] = []
  for (const key of keys) {
    const res = await app.inject({ method: 'POST', url: '/start', payload: JSON.stringify(key), headers: { 'content-type': 'application/json' } })
    t.equal(res.statusCode, 200)
    ids.push(res.json().workflowId)
  }
  await pollUntil(() => keys.every((k) => entered.has(k)), { what: 'every workflow to reach its waiting step' })

  await cluster.stop()
  const refused = await app.inject({ method: 'POST', url: '/start', payload: JSON.stringify('refused'), headers: { 'content-type': 'application/json' } })
  t.equal(refused.statusCode, 503)
  t.equal(refused.json().code, 'DBOS_ERR_DATABASE_UNAVAILABLE', 'a start is refused while the database is down')
  const status = await app.inject({ method: 'GET', url: `/status/${ids[0]}` })
  t.equal(status.statusCode, 503)
  t.equal(status.json().code, 'DBOS_ERR_DATABASE_UNAVAILABLE', 'reads are refused while the database is down')
  t.equal((await app.inject({ method: 'GET', url: '/health' })).statusCode, 200, 'other routes keep serving')
  // Half the workflows finish their step during the outage: their checkpoints wait for the database.
  for (const key of keys.slice(0, 3)) gates.get(key)!.open()

  await cluster.start()
  for (const key of keys.slice(3)) gates.get(key)!.open()
  for (const [i, id] of ids.entries()) {
    const handle = await app.workflows.retrieve(id)
    t.same(await handle.getResult({ timeoutMs: 30_000 }), [`${keys[i]}-1`, `${keys[i]}-2`, `${keys[i]}-3`])
  }
  const statuses = await app.workflows.list({ limit: 1000 })
  t.same(statuses.map((s) => s.status).sort(), ids.map(() => 'SUCCESS'), 'all SUCCESS, nothing stuck PENDING, the refused start left no row')
  for (const id of ids) t.equal((await app.workflows.listSteps(id)).length, 3)
  addGate('after')
  gates.get('after')!.open()
  const again = await app.inject({ method: 'POST', url: '/start', payload: JSON.stringify('after'), headers: { 'content-type': 'application/json' } })
  t.equal(again.statusCode, 200, 'starts work again without restarting the app')
  t.ok(await (await app.workflows.retrieve(again.json().workflowId)).getResult({ timeoutMs: 30_000 }))
})

t.test('Postgres restarted while recovery is running: every workflow still finishes', async (t) => {
  const schema = uniqueSchema('restart')
  const executorId = `restart-${schema}`
  const keys = Array.from({ length: 20 }, () => uniqueSchema('k'))
  keys.forEach(addGate)
  // A first app leaves the workflows PENDING, each waiting in its second step.
  const first = await appOnCluster(t, { schema, executorId, shutdownTimeoutMs: 0 })
  const ids = await Promise.all(keys.map(async (key) => (await first.workflows.start(gated, key)).workflowId))
  await pollUntil(() => keys.every((k) => entered.has(k)), { what: 'every workflow to reach its waiting step' })
  await first.close()

  // Take the database away the moment recovery resumes its first workflow:
  // the rest of that recovery pass runs into the outage.
  let stopped: Promise<void> | undefined
  const records: { level: string, obj: any }[] = []
  const logger: Logger = {
    debug () {},
    info (obj) {
      records.push({ level: 'info', obj })
      if (stopped === undefined && (obj as { event?: string }).event === 'workflow.resumed') {
        stopped = cluster.stop()
        cluster.waitUntilDownSync()
      }
    },
    warn (obj) { records.push({ level: 'warn', obj }) },
    error (obj) { records.push({ level: 'error', obj }) }
  }
  const second = await appOnCluster(t, { schema, executorId, logger })
  await pollUntil(() => stopped !== undefined, { what: 'recovery to begin' })
  await stopped
  await pollUntil(() => records.some((r) => r.level === 'warn' && r.obj.event === 'recovery.retry'),
    { what: 'the recovery pass to fail and retry' })
  t.equal((await second.inject({ method: 'GET', url: '/health' })).statusCode, 200, 'the app serves during the outage')

  await cluster.start()
  keys.forEach((key) => gates.get(key)!.open())
  for (const [i, id] of ids.entries()) {
    const handle = await second.workflows.retrieve(id)
    t.same(await handle.getResult({ timeoutMs: 30_000 }), [`${keys[i]}-1`, `${keys[i]}-2`, `${keys[i]}-3`])
  }
  t.same(await second.workflows.list({ status: 'PENDING' }), [], 'nothing stuck PENDING')
  t.same(new Set((await second.workflows.list({ limit: 1000 })).map((s) => s.status)), new Set(['SUCCESS']))
})

t.test('app.close() while Postgres is down returns, and the next app finishes the work', async (t) => {
  const schema = uniqueSchema('restart')
  const executorId = `restart-${schema}`
  const key = uniqueSchema('k')
  addGate(key)
  const first = await appOnCluster(t, { schema, executorId, shutdownTimeoutMs: 300 })
  const { workflowId } = await first.workflows.start(gated, key)
  await pollUntil(() => entered.has(key), { what: 'the workflow to reach its waiting step' })
  await cluster.stop()
  // Its step finishes during the outage; the checkpoint write waits for the database.
  gates.get(key)!.open()
  await first.close()

  await cluster.start()
  const second = await appOnCluster(t, { schema, executorId })
  const handle = await second.workflows.retrieve(workflowId)
  t.same(await handle.getResult({ timeoutMs: 30_000 }), [`${key}-1`, `${key}-2`, `${key}-3`])
  t.same(await second.workflows.list({ status: 'PENDING' }), [])
})

// Transactions in flight when the server goes away: postgres.js would crash
// the process by writing to the dead socket (porsager/postgres#1154), or run
// the rest of a transaction on a reconnected socket. Each transaction must
// still commit exactly once. The second transfer of each workflow waits,
// inside its open transaction and after its INSERT, until the test lets it
// go: those are in flight when the server stops.
const transferBodies = new Counter()
const heldTransfers = new Set<string>()
const transfersHeld = gate()
const transfers = defineWorkflow('transfers', async (ctx, input: { schema: string, n: number }) => {
  let total = 0
  for (let i = 0; i < 3; i++) {
    total += await ctx.transaction(`transfer-${i}`, async (sql) => {
      const key = `${input.n}:${i}`
      transferBodies.hit(key)
      await sql`SELECT pg_sleep(0.02)`
      const [row] = await sql`INSERT INTO ${sql(input.schema)}.ledger (workflow, step) VALUES (${input.n}, ${i}) RETURNING step`
      if (i === 1) {
        heldTransfers.add(key)
        await transfersHeld.wait()
      }
      return row!.step as number
    })
  }
  return total
})

t.test('transactions in flight during a restart commit exactly once and the process survives', async (t) => {
  const schema = uniqueSchema('txrestart')
  const app = await appOnCluster(t, { schema, workflows: [gated, transfers] })
  const admin = postgres(cluster.url, { max: 1, onnotice: () => {} })
  t.teardown(() => admin.end({ timeout: 5 }))
  await admin`CREATE TABLE ${admin(schema)}.ledger (workflow int, step int, PRIMARY KEY (workflow, step))`
  const handles = await Promise.all(Array.from({ length: 30 }, (_, n) => app.workflows.start(transfers, { schema, n })))
  await pollUntil(() => heldTransfers.size >= 4, { what: 'transactions to hold their INSERT uncommitted' })
  const cut = [...heldTransfers]
  const [{ uncommitted }] = await admin`SELECT count(*)::int AS uncommitted FROM ${admin(schema)}.ledger WHERE step = 1` as unknown as [{ uncommitted: number }]
  t.equal(uncommitted, 0, 'the held transactions have inserted, and not committed')
  await admin.end({ timeout: 1 })
  await cluster.stop()
  await cluster.start()
  transfersHeld.open()
  for (const h of handles) t.equal(await h.getResult({ timeoutMs: 60_000 }), 3, 'each workflow ran its three transactions')
  const check = postgres(cluster.url, { max: 1, onnotice: () => {} })
  t.teardown(() => check.end({ timeout: 5 }))
  const [{ rows, workflows }] = await check`SELECT count(*)::int AS rows, count(DISTINCT workflow)::int AS workflows FROM ${check(schema)}.ledger` as unknown as [{ rows: number, workflows: number }]
  t.equal(rows, 90, 'every transaction committed exactly once')
  t.equal(workflows, 30)
  t.same(cut.filter((key) => transferBodies.get(key) < 2), [],
    'every transaction held open at the stop was cut (rolled back) and ran again')
})

t.test('a process waiting on another process\'s workflow is still woken by NOTIFY after a restart', async (t) => {
  const schema = uniqueSchema('listen')
  const runner = await appOnCluster(t, { schema, executorId: 'runner' })
  // Polling every 10 minutes: only a notification can wake this waiter in time.
  const waiter = await appOnCluster(t, { schema, executorId: 'waiter', resultPollIntervalMs: 600_000 })
  const key = uniqueSchema('k')
  addGate(key)
  const { workflowId } = await runner.workflows.start(gated, key)
  const result = (await waiter.workflows.retrieve(workflowId)).getResult({ timeoutMs: 60_000 })
  const admin = postgres(cluster.url, { max: 1, onnotice: () => {} })
  await pollUntil(async () => (await admin`SELECT count(*)::int AS n FROM pg_stat_activity WHERE query ILIKE 'listen %'`)[0]!.n >= 1,
    { what: 'the waiter to LISTEN' })
  await admin.end({ timeout: 1 })

  await cluster.stop()
  await cluster.start()
  const again = postgres(cluster.url, { max: 1, onnotice: () => {} })
  t.teardown(() => again.end({ timeout: 5 }))
  await pollUntil(async () => (await again`SELECT count(*)::int AS n FROM pg_stat_activity WHERE query ILIKE 'listen %'`)[0]!.n >= 1,
    { what: 'the waiter to LISTEN again after the restart', timeoutMs: 30_000 })
  gates.get(key)!.open()
  t.same(await result, [`${key}-1`, `${key}-2`, `${key}-3`], 'woken by the notification, not by the 10-minute poll')
})

const napper = defineWorkflow('napper', async (ctx, ms: number) => {
  const one = await ctx.step('one', async () => 1)
  await ctx.sleep(ms)
  return one + await ctx.step('two', async () => 2)
})

t.test('workflows suspended in a sleep wake once Postgres is back from an outage over their wake-up time', async (t) => {
  const schema = uniqueSchema('nap')
  const records: { event?: string }[] = []
  const logger: Logger = { ...silentLogger, warn (obj) { records.push(obj as { event?: string }) } }
  const app = await appOnCluster(t, { schema, workflows: [napper], sleepInMemoryMaxMs: 0, logger })
  const handles = await Promise.all([0, 1, 2].map(() => app.workflows.start(napper, 800)))
  const admin = postgres(cluster.url, { max: 1, onnotice: () => {} })
  const asleep = await pollUntil(async () => {
    const [{ n, last }] = await admin`SELECT count(*)::int AS n, max(wake_at) AS last FROM ${admin(schema)}.workflows WHERE wake_at IS NOT NULL` as unknown as [{ n: number, last: Date }]
    return n === 3 && last
  }, { what: 'all three to be suspended' })
  await admin.end({ timeout: 1 })
  const results = handles.map((h) => h.getResult({ timeoutMs: 60_000 }))

  await cluster.stop()
  await pollUntil(() => Date.now() > asleep.getTime(), { what: 'the wake-up times to pass' })
  await pollUntil(() => records.some((r) => r.event === 'database.unreachable'),
    { what: 'the scheduler to meet the outage' })
  await cluster.start()
  t.same(await Promise.all(results), [3, 3, 3], 'woken and finished after the outage')
  const statuses = await app.workflows.list()
  t.same(statuses.map((s) => [s.status, s.attempts]), [['SUCCESS', 1], ['SUCCESS', 1], ['SUCCESS', 1]])
})
