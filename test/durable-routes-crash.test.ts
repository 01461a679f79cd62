// Durable routes across crashes, with real processes
// (test/fixtures/durable-routes-app.js): the app is SIGKILLed between two
// steps of a handler while the client waits; the handler finishes on restart
// (or on another instance, which adopts it), and the client's retry gets
// the stored response. Side effects are counted in tables.
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import t, { type Test } from 'tap'
import { deserialize } from '../lib/core/codec.js'
import { adminSql, databaseUrl, dropSchema, pollUntil, uniqueSchema } from './helpers/db.js'
import { childEnv, spawnFixture, type ChildApp } from './fixtures/child.js'

const REPLAYED = 'idempotent-replayed'

interface Setup {
  schema: string
  launch (executorId: string, env?: Record<string, string>): ChildApp
  /** Side effects of a workflow: how many times each step ran, and by whom. */
  effects (workflowId: string): Promise<{ step: string, executor: string }[]>
  ledger (workflowId: string): Promise<{ id: number, amount: number, executor: string }[]>
  /** The stored output of a workflow's step, once its checkpoint is committed. */
  stepOutput (workflowId: string, name: string): Promise<unknown>
  status (workflowId: string): Promise<{ status: string, executor_id: string } | undefined>
  openGate (name: string): Promise<void>
}

async function setup (t: Test): Promise<Setup> {
  const schema = uniqueSchema('durable')
  const gateDir = await mkdtemp(path.join(tmpdir(), 'fastify-dbos-durable-'))
  const sql = adminSql(t)
  await sql`CREATE SCHEMA ${sql(schema)}`
  await sql`CREATE TABLE ${sql(schema + '.side_effects')} (workflow_id text NOT NULL, step text NOT NULL, executor text NOT NULL)`
  await sql`CREATE TABLE ${sql(schema + '.ledger')} (id serial PRIMARY KEY, workflow_id text NOT NULL, amount int NOT NULL, executor text NOT NULL)`
  t.teardown(async () => {
    await dropSchema(schema)
    await rm(gateDir, { recursive: true, force: true })
  })
  return {
    schema,
    launch: (executorId, env = {}) => spawnFixture(t, './durable-routes-app.js', childEnv({
      DATABASE_URL: databaseUrl, SCHEMA: schema, EXECUTOR_ID: `${executorId}-${schema}`, GATE_DIR: gateDir, ...env
    })),
    effects: (workflowId) => sql<{ step: string, executor: string }[]>`
      SELECT step, executor FROM ${sql(schema + '.side_effects')} WHERE workflow_id = ${workflowId} ORDER BY step`,
    ledger: (workflowId) => sql<{ id: number, amount: number, executor: string }[]>`
      SELECT id, amount, executor FROM ${sql(schema + '.ledger')} WHERE workflow_id = ${workflowId}`,
    stepOutput: async (workflowId, name) => {
      const [row] = await sql<{ output: string }[]>`
        SELECT output FROM ${sql(schema + '.steps')} WHERE workflow_id = ${workflowId} AND name = ${name}`
      return row === undefined ? undefined : deserialize(row.output)
    },
    status: async (workflowId) => {
      const [row] = await sql<{ status: string, executor_id: string }[]>`
        SELECT status, executor_id FROM ${sql(schema + '.workflows')} WHERE workflow_id = ${workflowId}`
      return row
    },
    openGate: (name) => writeFile(path.join(gateDir, name), '')
  }
}

interface Response { status: number, headers: Record<string, string>, body: any }

async function post (port: number, url: string, key: string, body: unknown): Promise<Response> {
  const res = await fetch(`http://127.0.0.1:${port}${url}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'idempotency-key': key },
    body: JSON.stringify(body)
  })
  const text = await res.text()
  return { status: res.status, headers: Object.fromEntries(res.headers), body: text.length > 0 ? JSON.parse(text) : undefined }
}

/** Sends the request and waits until the handler is between its steps, its first checkpoint committed. */
async function interrupted (s: Setup, app: ChildApp, url: string, key: string, body: unknown, firstStep: string): Promise<{ cut: Promise<Response>, first: unknown }> {
  const cut = post(await app.listening(), url, key, body)
  cut.catch(() => {})
  await app.waitForLine((l) => l.fixture === 'waiting' && l.workflowId === key, 'the handler to reach its gate')
  // The step returns before its checkpoint is confirmed: wait for the row.
  const first = await pollUntil(() => s.stepOutput(key, firstStep), { what: `the checkpoint of ${firstStep}` })
  return { cut, first }
}

t.test('killed between two steps: the restarted app finishes the handler, and the retry gets its stored response', async (t) => {
  const s = await setup(t)
  const a = s.launch('restart')
  const body = { amount: 42, gate: 'g-pay' }
  const { cut, first } = await interrupted(s, a, '/payment', 'pay-1', body, 'charge') as { cut: Promise<Response>, first: { chargeId: string } }
  t.same((await a.kill()).signal, 'SIGKILL')
  await t.rejects(cut, 'the client saw its connection cut, with no response')
  t.equal((await s.status('pay-1'))?.status, 'PENDING')
  t.same((await s.effects('pay-1')).map((e) => e.step), ['charge'])

  await s.openGate('g-pay')
  const b = s.launch('restart')
  const retry = await post(await b.listening(), '/payment', 'pay-1', body)
  t.equal(retry.status, 201, 'the stored status')
  t.equal(retry.headers[REPLAYED], 'true', 'a replay of the response the first request never got')
  t.equal(retry.body.chargeId, first.chargeId, 'made from the first run\'s charge')
  t.equal(retry.headers['x-charge-id'], first.chargeId, 'with its headers')
  t.same(retry.body, { amount: 42, chargeId: first.chargeId, chargedBy: `restart-${s.schema}`, shippedBy: `restart-${s.schema}` })
  t.same((await s.effects('pay-1')).map((e) => e.step), ['charge', 'ship'], 'charge ran once (not again on recovery), ship once')
  t.equal((await s.status('pay-1'))?.status, 'SUCCESS')

  const again = await post(await b.listening(), '/payment', 'pay-1', body)
  t.same(again.body, retry.body, 'and every later retry gets the same')
  const changed = await post(await b.listening(), '/payment', 'pay-1', { ...body, amount: 43 })
  t.equal(changed.status, 422)
  t.equal(changed.body.code, 'DBOS_ERR_IDEMPOTENCY_KEY_REUSED')
  t.notMatch(JSON.stringify(changed.body), new RegExp(first.chargeId), 'nothing of the stored response')
})

t.test('req.transaction commits once across a crash after it', async (t) => {
  const s = await setup(t)
  const a = s.launch('ledger')
  const body = { amount: 7, gate: 'g-ledger' }
  const { cut, first } = await interrupted(s, a, '/ledger', 'debit-1', body, 'debit')
  await a.kill()
  await t.rejects(cut)
  t.equal((await s.ledger('debit-1')).length, 1, 'the transaction committed before the crash')

  await s.openGate('g-ledger')
  const b = s.launch('ledger')
  const retry = await post(await b.listening(), '/ledger', 'debit-1', body)
  t.equal(retry.status, 200)
  t.same(retry.body, { entry: first, amount: 7 }, 'the response carries the first run\'s ledger entry')
  const rows = await s.ledger('debit-1')
  t.equal(rows.length, 1, 'the transaction did not run again on recovery')
  t.equal(rows[0]!.id, first)
  t.same((await s.effects('debit-1')).map((e) => e.step), ['notify'])
})

t.test('a retry at a second instance while the first is dead waits for the adoption, and gets the response', async (t) => {
  const s = await setup(t)
  const timing = { HEARTBEAT_MS: '100', LEASE_MS: '1000' }
  const a = s.launch('a', timing)
  const b = s.launch('b', timing)
  const bPort = await b.listening()
  const body = { amount: 5, gate: 'g-adopt' }
  const { cut, first } = await interrupted(s, a, '/payment', 'pay-2', body, 'charge') as { cut: Promise<Response>, first: { chargeId: string } }
  await a.kill()
  await t.rejects(cut)
  await s.openGate('g-adopt')

  // Sent at once, within A's lease (a second) most of the time: B waits for
  // the workflow it will adopt. Either way the retry must get the response.
  const retry = await post(bPort, '/payment', 'pay-2', body)
  t.equal(retry.status, 201)
  t.equal(retry.headers[REPLAYED], 'true')
  t.same(retry.body, { amount: 5, chargeId: first.chargeId, chargedBy: `a-${s.schema}`, shippedBy: `b-${s.schema}` },
    'charged by the dead instance, finished by the one that adopted it')
  const effects = await s.effects('pay-2')
  t.same(effects, [{ step: 'charge', executor: `a-${s.schema}` }, { step: 'ship', executor: `b-${s.schema}` }], 'each step ran once')
  t.same(await s.status('pay-2'), { status: 'SUCCESS', executor_id: `b-${s.schema}` })
})
