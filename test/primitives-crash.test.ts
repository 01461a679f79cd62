// Messages, streams, children and workflow timeouts across a kill -9: real
// child processes (test/fixtures/primitives-app.js) on one schema; the one
// that owns the work is killed and the other adopts it. Each workflow must
// continue where it was, not start over, and no message may be lost or
// consumed twice: side effects are ctx.transaction rows (exactly once by
// construction), so a duplicate or missing row is a real failure.
import postgres from 'postgres'
import t from 'tap'
import { deserialize } from '../lib/core/codec.js'
import { childEnv, request, spawnFixture } from './fixtures/child.js'
import { databaseUrl, pollUntil, uniqueSchema } from './helpers/db.js'

interface Instance { port: number, pid: number, kill (): Promise<unknown> }

async function launch (t: Tap.Test, schema: string, executorId: string): Promise<Instance> {
  const child = spawnFixture(t, './primitives-app.js', childEnv({
    DATABASE_URL: databaseUrl, SCHEMA: schema, EXECUTOR_ID: executorId, HEARTBEAT_MS: '200', LEASE_MS: '1500', DBOS_EXECUTOR_ID: undefined
  }))
  const ready = await child.waitForLine((l) => l.fixture === 'listening' || l.fixture === 'error', 'the instance to listen', 30_000)
  if (ready.fixture === 'error') throw new Error(`the instance did not start: ${ready.code} ${ready.message}`)
  return { port: ready.port, pid: ready.pid, kill: () => child.kill() }
}

async function post (instance: Instance, url: string, body: unknown): Promise<any> {
  const res = await request(instance.port, 'POST', url, body)
  if (res.status !== 200) throw new Error(`${url} answered ${res.status}: ${JSON.stringify(res.body)}`)
  return res.body
}

declare namespace Tap { type Test = Parameters<Parameters<typeof t.test>[1]>[0] }

for (const mode of ['adopted by another instance', 'restarted'] as const) {
  t.test(`kill -9 with a workflow in recv, one mid-stream, one with a child, one with a timeout: ${mode}, each carries on`, async (t) => {
    const schema = uniqueSchema('prim')
    const sql = postgres(databaseUrl, { max: 3, onnotice: () => {} })
    await sql`CREATE SCHEMA ${sql(schema)}`
    await sql`CREATE TABLE ${sql(`${schema}.effects`)} (seq bigserial PRIMARY KEY, workflow_id text NOT NULL, what text NOT NULL, executor text NOT NULL)`
    t.teardown(async () => {
      await sql`DROP SCHEMA IF EXISTS ${sql(schema)} CASCADE`.catch(() => {})
      await sql.end({ timeout: 5 })
    })
    const table = (name: string): postgres.Helper<string> => sql(`${schema}.${name}`)
    const effects = async (id: string): Promise<string[]> =>
      (await sql<{ what: string }[]>`SELECT what FROM ${table('effects')} WHERE workflow_id = ${id} ORDER BY seq`).map((r) => r.what)

    const restart = mode === 'restarted'
    // Restarted: the same executor id, so the new process recovers its own work at start.
    const [a, other] = restart ? [await launch(t, schema, 'a'), undefined] : await Promise.all([launch(t, schema, 'a'), launch(t, schema, 'b')])
    await post(a, '/start', { name: 'inbox', input: { n: 20 }, workflowId: 'inbox' })
    await post(a, '/start', { name: 'streamer', input: { n: 30, ms: 100 }, workflowId: 'stream' })
    await post(a, '/start', { name: 'parent', input: { ms: 4000 }, workflowId: 'parent' })
    await post(a, '/start', { name: 'timed', input: {}, workflowId: 'timed', timeoutMs: 8000 })
    for (let i = 0; i < 10; i++) await post(a, '/send', { workflowId: 'inbox', message: { i }, topic: 't', idempotencyKey: `m${i}` })

    await pollUntil(async () => (await effects('inbox')).length === 10 && (await effects('stream')).length >= 5 &&
      (await effects('parent')).length === 1 && (await effects('parent-0')).length === 1 && (await effects('timed')).length === 1,
    { what: 'every workflow to be under way', timeoutMs: 30_000 })
    const [timedRow] = await sql<{ deadline_at: Date }[]>`SELECT deadline_at FROM ${table('workflows')} WHERE workflow_id = 'timed'`
    await a.kill()
    const ticksAtKill = (await effects('stream')).length
    t.ok(ticksAtKill < 30, `killed mid-stream (${ticksAtKill} of 30 values)`)
    const b = other ?? await launch(t, schema, 'a')
    const survivor = restart ? 'a' : 'b'

    // The rest of the messages, through the survivor; 5 to 9 again, as a client retrying after the crash would.
    for (let i = 5; i < 20; i++) await post(b, '/send', { workflowId: 'inbox', message: { i }, topic: 't', idempotencyKey: `m${i}` })

    const ids = ['inbox', 'stream', 'parent', 'timed']
    const rows = await pollUntil(async () => {
      const found = await sql<{ workflow_id: string, status: string, output: string | null, error: string | null, executor_id: string, completed_at: Date | null }[]>`
        SELECT workflow_id, status, output, error, executor_id, completed_at FROM ${table('workflows')} WHERE workflow_id = ANY(${ids}::text[])`
      return found.length === 4 && found.every((r) => r.status !== 'PENDING') ? new Map(found.map((r) => [r.workflow_id, r])) : undefined
    }, { what: 'the four workflows to finish on the adopter', timeoutMs: 45_000, intervalMs: 100 })
    for (const id of ids) t.equal(rows.get(id)!.executor_id, survivor, `${id} finished on ${survivor}`)

    // recv: every message once, in order; none lost at the crash, none consumed twice, retries deduplicated.
    t.equal(rows.get('inbox')!.status, 'SUCCESS')
    t.same(deserialize(rows.get('inbox')!.output!), Array.from({ length: 20 }, (_, i) => i))
    t.same(await effects('inbox'), Array.from({ length: 20 }, (_, i) => `got:${i}`), 'each message\'s side effect once')
    const messages = await sql<{ consumed_step: number | null }[]>`SELECT consumed_step FROM ${table('messages')} WHERE workflow_id = 'inbox'`
    t.equal(messages.length, 20, 'the retried sends stored nothing more')
    t.equal(new Set(messages.map((m) => m.consumed_step)).size, 20, 'each consumed by its own recv')

    // Stream: continued from where it was; every offset once.
    t.equal(rows.get('stream')!.status, 'SUCCESS')
    t.same(await effects('stream'), Array.from({ length: 30 }, (_, i) => `tick:${i}`), 'no tick ran twice: it did not start over')
    const values = await sql<{ offset: number, value: string | null, closed: boolean }[]>`
      SELECT "offset", value, closed FROM ${table('streams')} WHERE workflow_id = 'stream' ORDER BY "offset"`
    t.same(values.map((v) => [v.offset, v.closed ? 'closed' : deserialize(v.value!)]), [...Array.from({ length: 30 }, (_, i) => [i, i]), [30, 'closed']])

    // Child: one child, started once; its result reached the parent.
    t.equal(rows.get('parent')!.status, 'SUCCESS')
    t.same(deserialize(rows.get('parent')!.output!), { child: 'child result', childId: 'parent-0' })
    const children = await sql`SELECT workflow_id FROM ${table('workflows')} WHERE parent_id = 'parent'`
    t.equal(children.length, 1, 'the replay started no second child')
    t.same(await effects('parent-0'), ['child ran'])
    t.same(await effects('parent'), ['parent started child'])

    // Timeout: the stored deadline held on the adopter.
    const timed = rows.get('timed')!
    t.equal(timed.status, 'CANCELLED')
    t.match(deserialize(timed.error!), { code: 'DBOS_ERR_WORKFLOW_TIMEOUT' })
    t.ok(timed.completed_at!.getTime() >= timedRow!.deadline_at.getTime() - 100, 'cancelled at its deadline, not before')
    t.same(await effects('timed'), ['timed waiting'], 'it never went on')
    await b.kill()
  })
}
