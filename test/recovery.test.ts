// Crash recovery across real processes: the app runs in a child process
// (test/fixtures/recovery-app.js), is SIGKILLed mid-workflow and restarted
// with the same executor id and schema. Side effects are counted in a table
// to tell what ran exactly once from what ran at least once.
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import t, { type Test } from 'tap'
import { deserialize } from '../lib/core/codec.js'
import { adminSql, databaseUrl, dropSchema, pollUntil, uniqueSchema } from './helpers/db.js'
import { childEnv, request, spawnFixture, type ChildApp } from './fixtures/child.js'

interface Row { status: string, attempts: number, executor_id: string, epoch: string, wake_at: Date | null }

interface Setup {
  schema: string
  gateDir: string
  /** Starts the fixture app; `env` adds to or overrides its environment. */
  launch (env?: Record<string, string>): ChildApp
  /** Side effects of one workflow, as counts per step number. */
  effects (workflowId: string): Promise<Record<number, number>>
  row (workflowId: string): Promise<Row | undefined>
  stepIds (workflowId: string): Promise<number[]>
  /** The wake-up time a workflow's sleep recorded (its step named sleep), if any. */
  recordedWakeAt (workflowId: string): Promise<number | undefined>
  openGate (name: string): Promise<void>
}

async function setup (t: Test): Promise<Setup> {
  const schema = uniqueSchema('recovery')
  const executorId = `recovery-test-${schema}`
  const gateDir = await mkdtemp(path.join(tmpdir(), 'fastify-dbos-gates-'))
  const sql = adminSql(t)
  await sql`CREATE SCHEMA ${sql(schema)}`
  await sql`CREATE TABLE ${sql(schema + '.side_effects')} (workflow_id text NOT NULL, step int NOT NULL)`
  t.teardown(async () => {
    await dropSchema(schema)
    await rm(gateDir, { recursive: true, force: true })
  })
  return {
    schema,
    gateDir,
    launch: (env = {}) => spawnFixture(t, './recovery-app.js', childEnv({
      DATABASE_URL: databaseUrl, SCHEMA: schema, EXECUTOR_ID: executorId, GATE_DIR: gateDir, ...env
    })),
    effects: async (workflowId) => {
      const rows = await sql<{ step: number, n: number }[]>`
        SELECT step, count(*)::int AS n FROM ${sql(schema + '.side_effects')} WHERE workflow_id = ${workflowId} GROUP BY step`
      return Object.fromEntries(rows.map((r) => [r.step, r.n]))
    },
    row: async (workflowId) => {
      const [row] = await sql<Row[]>`
        SELECT status, attempts, executor_id, epoch::text AS epoch, wake_at FROM ${sql(schema + '.workflows')} WHERE workflow_id = ${workflowId}`
      return row
    },
    stepIds: async (workflowId) => (await sql<{ step_id: number }[]>`
      SELECT step_id FROM ${sql(schema + '.steps')} WHERE workflow_id = ${workflowId} ORDER BY step_id`).map((r) => r.step_id),
    recordedWakeAt: async (workflowId) => {
      const [row] = await sql<{ output: string }[]>`
        SELECT output FROM ${sql(schema + '.steps')} WHERE workflow_id = ${workflowId} AND name = 'sleep'`
      return row === undefined ? undefined : deserialize(row.output) as number
    },
    openGate: (name) => writeFile(path.join(gateDir, name), '')
  }
}

async function startWorkflow (port: number, name: string, workflowId: string, input: unknown = {}): Promise<void> {
  const res = await request(port, 'POST', '/start', { name, workflowId, input })
  if (res.status !== 200) throw new Error(`start ${name} answered ${res.status}: ${JSON.stringify(res.body)}`)
}

t.test('a workflow killed mid-step resumes after a restart: completed steps once, the interrupted one again', async (t) => {
  const s = await setup(t)
  const id = 'wf-three-steps'
  const first = s.launch()
  await startWorkflow(await first.listening(), 'threeSteps', id, { tag: 'a', gate: 'g1' })
  // Step two has begun (its side effect is written), so step one's checkpoint is committed.
  await pollUntil(async () => (await s.effects(id))[2] === 1, { what: 'step two to begin' })
  t.same(await s.stepIds(id), [0], 'step one is checkpointed, step two is not')
  t.same((await first.kill()).signal, 'SIGKILL')
  t.same(await s.effects(id), { 1: 1, 2: 1 })
  t.equal((await s.row(id))?.status, 'PENDING')

  const second = s.launch()
  // Listening while the recovered workflow is still blocked in step two: recovery
  // does not hold up readiness.
  const port = await second.listening()
  await pollUntil(async () => (await s.effects(id))[2] === 2, { what: 'the recovered run to re-enter step two' })
  const health = await request(port, 'GET', '/health')
  t.equal(health.status, 200, 'the app serves while recovery is running a workflow')
  const during = await request(port, 'GET', `/status/${id}`)
  t.same(during.body, { status: 'PENDING', attempts: 2, executorId: `recovery-test-${s.schema}` })

  await s.openGate('g1')
  const result = await request(port, 'GET', `/result/${id}`)
  t.equal(result.status, 200)
  t.same(result.body, { value: { steps: ['a-1', 'a-2', 'a-3'] } })
  const effects = await s.effects(id)
  t.equal(effects[1], 1, 'step one ran exactly once')
  t.ok(effects[2]! >= 1, 'step two ran at least once')
  t.equal(effects[3], 1, 'step three ran exactly once')
  t.equal((await s.row(id))?.status, 'SUCCESS')
  t.same(await s.stepIds(id), [0, 1, 2])
})

t.test('a workflow whose definition is missing on restart stays PENDING; the app still starts and serves', async (t) => {
  const s = await setup(t)
  const id = 'wf-orphan'
  const first = s.launch()
  await startWorkflow(await first.listening(), 'orphan', id, { gate: 'orphan-gate' })
  await pollUntil(async () => (await s.effects(id))[1] === 1, { what: 'the orphan step to begin' })
  await first.kill()

  const second = s.launch({ OMIT_WORKFLOWS: 'orphan' })
  const port = await second.listening()
  await second.waitForLine((l) => l.level === 40 && l.event === 'recovery.unknown_definition' && l.workflowId === id, 'a warning about the unrecoverable workflow')
  t.equal((await request(port, 'GET', '/health')).status, 200)
  await s.openGate('other')
  await startWorkflow(port, 'threeSteps', 'wf-other', { tag: 'o', gate: 'other' })
  t.same((await request(port, 'GET', '/result/wf-other')).body, { value: { steps: ['o-1', 'o-2', 'o-3'] } },
    'new workflows run normally')
  const row = await s.row(id)
  t.equal(row?.status, 'PENDING')
  t.equal(row?.attempts, 1, 'not claimed, so not counted as a recovery attempt')
  t.same(await s.effects(id), { 1: 1 }, 'its step did not run again')
  await second.kill()

  // Registered again, it is recovered after all.
  await s.openGate('orphan-gate')
  const third = s.launch()
  const result = await request(await third.listening(), 'GET', `/result/${id}`)
  t.same(result.body, { value: 'orphan done' })
  t.equal((await s.row(id))?.status, 'SUCCESS')
})

t.test('a workflow that keeps crashing its process is abandoned after maxRecoveryAttempts', async (t) => {
  const s = await setup(t)
  const id = 'wf-crasher'
  const maxRecoveryAttempts = 2
  const env = { MAX_RECOVERY_ATTEMPTS: String(maxRecoveryAttempts) }
  const first = s.launch(env)
  // The process may die before it answers.
  await startWorkflow(await first.listening(), 'crasher', id).catch(() => {})
  t.same(await first.exited, { code: null, signal: 'SIGKILL' }, 'the first run killed its process')

  let survivor: ChildApp | undefined
  const launches: string[] = []
  for (let i = 0; i < maxRecoveryAttempts + 3 && survivor === undefined; i++) {
    const child = s.launch(env)
    const outcome = await pollUntil(async () => {
      if (child.exit !== undefined) return 'crashed'
      return (await s.row(id))?.status === 'MAX_RECOVERY_ATTEMPTS_EXCEEDED' ? 'abandoned' : undefined
    }, { what: 'the restarted app to crash or abandon the workflow' })
    launches.push(outcome!)
    if (outcome === 'abandoned') survivor = child
  }
  t.same(launches, ['crashed', 'crashed', 'abandoned'], 'two recoveries crash, the third start gives up')
  t.same(await s.effects(id), { 1: 1, 2: maxRecoveryAttempts + 1 }, 'the crashing step ran on the first run and each recovery')
  t.equal((await s.row(id))?.attempts, maxRecoveryAttempts + 2)
  if (survivor === undefined) return
  const port = await survivor.listening()
  t.equal((await request(port, 'GET', '/health')).status, 200, 'the app that gave up keeps serving')
  const result = await request(port, 'GET', `/result/${id}`)
  t.equal(result.status, 500)
  t.equal(result.body.code, 'DBOS_ERR_MAX_RECOVERY_ATTEMPTS')
  t.equal((await request(port, 'GET', `/status/${id}`)).body.status, 'MAX_RECOVERY_ATTEMPTS_EXCEEDED')
})

t.test('a crash loop: the workflow that kills its process is abandoned, the ten running beside it finish', async (t) => {
  const s = await setup(t)
  const maxRecoveryAttempts = 3
  const env = { MAX_RECOVERY_ATTEMPTS: String(maxRecoveryAttempts) }
  const first = s.launch(env)
  const port = await first.listening()
  const innocents = Array.from({ length: 10 }, (_, i) => `innocent-${i}`)
  for (const id of innocents) await startWorkflow(port, 'slowSteps', id)
  await startWorkflow(port, 'crasher', 'poison').catch(() => {})
  t.same(await first.exited, { code: null, signal: 'SIGKILL' }, 'the poison killed the first process')

  const launches: string[] = []
  for (let i = 0; i < maxRecoveryAttempts + 4; i++) {
    const child = s.launch(env)
    const outcome = await pollUntil(async () => {
      if (child.exit !== undefined) return 'crashed'
      return (await s.row('poison'))?.status === 'MAX_RECOVERY_ATTEMPTS_EXCEEDED' ? 'abandoned' : undefined
    }, { what: 'the restarted app to crash or abandon the poison', timeoutMs: 60_000 })
    launches.push(outcome!)
    if (outcome === 'abandoned') break
  }
  t.equal(launches.at(-1), 'abandoned', `the poison was abandoned (launches: ${launches.join(', ')})`)
  for (const id of innocents) {
    const row = await pollUntil(async () => {
      const r = await s.row(id)
      return r?.status !== 'PENDING' && r
    }, { what: `${id} to finish`, timeoutMs: 30_000 })
    t.equal(row && row.status, 'SUCCESS', `${id} finished`)
    t.ok(row && row.attempts <= maxRecoveryAttempts + 1, `${id} stayed within its attempts (${row && row.attempts})`)
  }
  t.equal((await s.row('poison'))?.attempts, maxRecoveryAttempts + 2, 'the poison used up its attempts')
})

t.test('a workflow killed while suspended in a sleep wakes after a restart: the sleep is not restarted and no attempt counts', async (t) => {
  const s = await setup(t)
  const id = 'wf-sleeper'
  const env = { SLEEP_IN_MEMORY_MAX_MS: '0' }
  const first = s.launch(env)
  await startWorkflow(await first.listening(), 'sleeper', id, { ms: 3000 })
  await pollUntil(async () => (await s.row(id))?.wake_at != null, { what: 'the workflow to suspend' })
  const wakeAt = await s.recordedWakeAt(id)
  t.equal((await s.row(id))?.wake_at?.getTime(), wakeAt, 'suspended until the recorded wake-up time')
  t.same((await first.kill()).signal, 'SIGKILL')

  const second = s.launch(env)
  const port = await second.listening()
  const result = await request(port, 'GET', `/result/${id}`)
  t.equal(result.status, 200)
  t.ok(result.body.value.ranAt >= wakeAt!, 'the step after the sleep ran no earlier than the recorded wake-up time')
  t.same(await s.effects(id), { 1: 1, 2: 1 }, 'each step ran once')
  t.equal(await s.recordedWakeAt(id), wakeAt, 'the sleep checkpoint is the first run\'s')
  t.match(await s.row(id), { status: 'SUCCESS', attempts: 1, epoch: '2', wake_at: null },
    'claimed once, by the wake-up: recovery left it alone, no attempt counted, no second sleep')
  t.same(await s.stepIds(id), [0, 1, 2])
})

t.test('generated ids, killed mid-burst: every acknowledged start finishes after a restart, nothing is left PENDING', async (t) => {
  // With a generated id the start may be written by the first step's
  // checkpoint (writes/opening.ts), or alone when that step takes longer than
  // the engine waits for it (this one writes its side effect first): either
  // way an acknowledged start is durable.
  const s = await setup(t)
  const first = s.launch()
  const port = await first.listening()
  const burst = () => Promise.allSettled(Array.from({ length: 10 }, (_, i) =>
    request(port, 'POST', '/start', { name: 'threeSteps', input: { tag: `t${i}`, gate: 'burst' } })))
  const acknowledged = (results: PromiseSettledResult<{ status: number, body: any }>[]): string[] =>
    results.flatMap((r) => r.status === 'fulfilled' && r.value.status === 200 ? [r.value.body.workflowId as string] : [])
  const ids = acknowledged(await burst())
  t.equal(ids.length, 10)
  const inFlight = burst()
  t.same((await first.kill()).signal, 'SIGKILL')
  ids.push(...acknowledged(await inFlight))

  const second = s.launch()
  await second.listening()
  await s.openGate('burst')
  for (const id of ids) {
    await pollUntil(async () => (await s.row(id))?.status === 'SUCCESS', { what: `${id} to finish` })
    t.ok((await s.effects(id))[1]! >= 1, `${id}: its first step ran (at least once: the kill may have come before its checkpoint)`)
    t.same(await s.stepIds(id), [0, 1, 2])
  }
  const sql = adminSql(t)
  const left = await sql`SELECT workflow_id FROM ${sql(s.schema + '.workflows')} WHERE status <> 'SUCCESS'`
  t.same(left, [], 'nothing left PENDING: starts cut short either left no workflow or finished too')
})
