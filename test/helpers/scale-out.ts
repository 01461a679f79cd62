/**
 * Several instances of one service on one schema, for the scale-out tests:
 * each a real child process running test/fixtures/cluster-app.js, which the
 * test can kill (SIGKILL), freeze and thaw (SIGSTOP, SIGCONT) or stop
 * (SIGTERM). What the instances did is counted in tables of the schema: a
 * side effect per step execution, ledger rows per committed transaction.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import postgres from 'postgres'
import type { Test } from 'tap'
import { deserialize } from '../../lib/core/codec.js'
import { childEnv, request, spawnFixture, type ChildApp, type Exit, type Line } from '../fixtures/child.js'
import { databaseUrl, pollUntil, uniqueSchema } from './db.js'

export interface EffectRow { seq: number, workflow_id: string, step: string, executor: string, pid: number, at: Date }
export interface LedgerRow { workflow_id: string, entry: string, executor: string, pid: number }
export interface WorkflowRow { workflow_id: string, name: string, status: string, output: string | null, executor_id: string, app_version: string | null, attempts: number, epoch: string, wake_at: Date | null }
export interface StepRow { workflow_id: string, step_id: number, name: string, output: string | null }

/** The steps each fixture workflow records, in order (parallel ones by name). */
export const PARALLEL_STEPS = ['pa', 'pb', 'pc']

export interface Instance {
  readonly child: ChildApp
  readonly port: number
  readonly executorId: string
  readonly pid: number
  /** Starts a workflow through this instance; resolves with its id once the start is durable. */
  start (name: string, input: unknown, workflowId?: string): Promise<string>
  /** Starts many at once (concurrently, in one request). */
  startMany (name: string, inputs: unknown[]): Promise<string[]>
  get (url: string): Promise<{ status: number, body: any }>
  post (url: string, body: unknown): Promise<{ status: number, body: any }>
  /** Log lines with this `event` (and matching `match`, if given). */
  events (event: string, match?: (line: Line) => boolean): Line[]
  waitForEvent (event: string, match?: (line: Line) => boolean, timeoutMs?: number): Promise<Line>
  kill (): Promise<Exit>
  freeze (): void
  thaw (): void
  terminate (): void
}

export interface Fleet {
  readonly schema: string
  readonly url: string
  readonly gateDir: string
  /** The test's own connection to the database. */
  readonly sql: postgres.Sql
  /** Spawns an instance and waits until it serves. */
  launch (env?: Record<string, string | undefined>): Promise<Instance>
  /** Spawns an instance without waiting (for starts that are meant to fail). */
  spawn (env?: Record<string, string | undefined>): ChildApp
  openGate (name: string): Promise<void>
  effects (): Promise<EffectRow[]>
  ledger (): Promise<LedgerRow[]>
  workflows (): Promise<WorkflowRow[]>
  steps (): Promise<StepRow[]>
  executors (): Promise<{ executor_id: string, instance: string, app_version: string | null, stopped_at: Date | null }[]>
  /** Waits until none of `ids` is PENDING; returns their rows. */
  finished (ids: string[], timeoutMs?: number): Promise<WorkflowRow[]>
  /**
   * Makes the COMMIT of every transaction that wrote a ledger row 'hold' wait
   * (a deferred constraint trigger takes an advisory lock the test holds)
   * until release(). Call once the engine's tables exist.
   */
  holdCommits (): Promise<HeldCommits>
  /** Likewise for every transaction that makes `executorId` the owner of a workflow (an adoption). */
  holdAdoptionsBy (executorId: string): Promise<HeldCommits>
}

export interface HeldCommits {
  /** Transactions waiting at their COMMIT now. */
  waiting (): Promise<number>
  release (): Promise<void>
}

const quote = (text: string): string => `'${text.replaceAll("'", "''")}'`

/**
 * A deferred constraint trigger (`on`: event and table) for rows matching `when` takes an
 * advisory lock that the test holds, on a connection of its own, until
 * release(): the COMMIT of such a transaction waits until then.
 */
async function holdCommitsOf (t: Test, sql: postgres.Sql, schema: string, n: number, on: string, when: string): Promise<HeldCommits> {
  const holder = await sql.reserve()
  const [{ key }] = await holder<{ key: number }[]>`SELECT hashtext(${schema}) AS key`
  await holder`SELECT pg_advisory_lock(${key}, ${n})`
  await sql.unsafe(`
    CREATE FUNCTION ${schema}.hold_commit_${n}() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN PERFORM pg_advisory_xact_lock(${key}, ${n}); RETURN NULL; END $$`)
  await sql.unsafe(`
    CREATE CONSTRAINT TRIGGER hold_commit_${n} AFTER ${on}
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (${when}) EXECUTE FUNCTION ${schema}.hold_commit_${n}()`)
  let released = false
  const release = async (): Promise<void> => {
    if (released) return
    released = true
    await holder`SELECT pg_advisory_unlock(${key}, ${n})`
    holder.release()
  }
  t.teardown(release)
  return {
    release,
    waiting: async () => {
      const [{ waiting }] = await sql<{ waiting: number }[]>`
        SELECT count(*)::int AS waiting FROM pg_locks
        WHERE locktype = 'advisory' AND NOT granted AND classid = ${key >>> 0}::oid AND objid = ${n}`
      return waiting
    }
  }
}

/**
 * A fresh schema with the counting tables on `url` (the shared test
 * database by default), and a temporary directory for gate files. At
 * teardown every instance is killed, then the schema dropped.
 */
export async function fleet (t: Test, { url = databaseUrl, env: common = {} }: { url?: string, env?: Record<string, string | undefined> } = {}): Promise<Fleet> {
  const schema = uniqueSchema('fleet')
  const gateDir = await mkdtemp(path.join(tmpdir(), 'fastify-dbos-fleet-'))
  const sql = postgres(url, { max: 3, onnotice: () => {} })
  const children: ChildApp[] = []
  await sql`CREATE SCHEMA ${sql(schema)}`
  await sql`CREATE TABLE ${sql(`${schema}.side_effects`)} (
    seq bigserial PRIMARY KEY, workflow_id text NOT NULL, step text NOT NULL, executor text NOT NULL, pid int NOT NULL,
    token uuid NOT NULL UNIQUE, at timestamptz NOT NULL DEFAULT clock_timestamp())`
  // No unique key on purpose: a transaction's rows must be there once because
  // it committed once, not because a constraint refused the second commit.
  await sql`CREATE TABLE ${sql(`${schema}.ledger`)} (
    workflow_id text NOT NULL, entry text NOT NULL, executor text NOT NULL, pid int NOT NULL)`
  t.teardown(async () => {
    await Promise.all(children.map((c) => c.kill()))
    // A failed test leaves the instances' logs behind, for a look afterwards.
    if (!t.passing()) {
      for (const [i, c] of children.entries()) {
        const file = path.join(tmpdir(), `${schema}-${i}-${c.process.pid}.log`)
        await writeFile(file, [...c.lines.map((l) => JSON.stringify(l)), ...c.stderr].join('\n'))
        t.comment(`instance log: ${file}`)
      }
    }
    await sql`DROP SCHEMA IF EXISTS ${sql(schema)} CASCADE`.catch(() => {})
    await sql.end({ timeout: 5 })
    await rm(gateDir, { recursive: true, force: true })
  })
  const spawn = (env: Record<string, string | undefined> = {}): ChildApp => {
    const child = spawnFixture(t, './cluster-app.js', childEnv({
      DATABASE_URL: url, SCHEMA: schema, GATE_DIR: gateDir, DBOS_EXECUTOR_ID: undefined, ...common, ...env
    }))
    children.push(child)
    return child
  }
  const launch = async (env: Record<string, string | undefined> = {}): Promise<Instance> => {
    const child = spawn(env)
    const ready = await child.waitForLine((l) => l.fixture === 'listening' || l.fixture === 'error', 'the instance to listen', 30_000)
    if (ready.fixture === 'error') throw new Error(`the instance did not start: ${ready.code} ${ready.message}`)
    return instance(child, ready)
  }
  const rowsOf = <T>(table: string, order: string) => async (): Promise<T[]> =>
    await sql.unsafe(`SELECT * FROM ${schema}.${table} ORDER BY ${order}`) as unknown as T[]
  return {
    schema,
    url,
    gateDir,
    sql,
    launch,
    spawn,
    openGate: (name) => writeFile(path.join(gateDir, name), ''),
    effects: rowsOf<EffectRow>('side_effects', 'seq'),
    ledger: rowsOf<LedgerRow>('ledger', 'workflow_id, entry'),
    workflows: async () => sql<WorkflowRow[]>`
      SELECT workflow_id, name, status, output, executor_id, app_version, attempts, epoch::text AS epoch, wake_at
      FROM ${sql(`${schema}.workflows`)} ORDER BY workflow_id`,
    steps: async () => sql<StepRow[]>`
      SELECT workflow_id, step_id, name, output FROM ${sql(`${schema}.steps`)} ORDER BY workflow_id, step_id`,
    executors: async () => sql`
      SELECT executor_id, instance, app_version, stopped_at FROM ${sql(`${schema}.executors`)} ORDER BY executor_id` as any,
    finished: async (ids, timeoutMs = 60_000) => {
      let rows: WorkflowRow[] = []
      await pollUntil(async () => {
        rows = await sql<WorkflowRow[]>`
          SELECT workflow_id, name, status, output, executor_id, app_version, attempts, epoch::text AS epoch, wake_at
          FROM ${sql(`${schema}.workflows`)} WHERE workflow_id = ANY(${ids}) ORDER BY workflow_id`
        return rows.length === ids.length && rows.every((r) => r.status !== 'PENDING')
      }, { timeoutMs, intervalMs: 100, what: `${ids.length} workflows to finish` }).catch(async (err) => {
        const pending = rows.filter((r) => r.status === 'PENDING')
        throw new Error(`${err.message}: ${rows.length} found, ${pending.length} PENDING, e.g. ${JSON.stringify(pending.slice(0, 3))}`)
      })
      return rows
    },
    holdCommits: () => holdCommitsOf(t, sql, schema, 1, `INSERT ON ${schema}.ledger`, `NEW.entry = 'hold'`),
    holdAdoptionsBy: (executorId) => holdCommitsOf(t, sql, schema, 2, `UPDATE ON ${schema}.workflows`,
      `NEW.executor_id = ${quote(executorId)} AND OLD.executor_id IS DISTINCT FROM NEW.executor_id`)
  }
}

function instance (child: ChildApp, ready: Line): Instance {
  const port = ready.port as number
  const events = (event: string, match?: (line: Line) => boolean): Line[] =>
    child.lines.filter((l) => l.event === event && (match === undefined || match(l)))
  const signal = (name: NodeJS.Signals): void => { process.kill(child.process.pid!, name) }
  return {
    child,
    port,
    executorId: ready.executorId,
    pid: ready.pid,
    start: async (name, input, workflowId) => {
      const res = await request(port, 'POST', '/start', { name, input, workflowId })
      if (res.status !== 200) throw new Error(`start ${name} answered ${res.status}: ${JSON.stringify(res.body)}`)
      return res.body.workflowId
    },
    startMany: async (name, inputs) => {
      const res = await request(port, 'POST', '/start-many', { name, inputs })
      if (res.status !== 200) throw new Error(`start-many ${name} answered ${res.status}: ${JSON.stringify(res.body)}`)
      return res.body.workflowIds
    },
    get: (url) => request(port, 'GET', url),
    post: (url, body) => request(port, 'POST', url, body),
    events,
    waitForEvent: (event, match, timeoutMs = 20_000) => child.waitForLine((l) => l.event === event && (match === undefined || match(l)), `event ${event}`, timeoutMs),
    kill: () => child.kill(),
    freeze: () => signal('SIGSTOP'),
    thaw: () => signal('SIGCONT'),
    terminate: () => signal('SIGTERM')
  }
}

/** Side effects grouped: workflow id -> step name -> the executions, in order. */
export function byWorkflowAndStep (effects: EffectRow[]): Map<string, Map<string, EffectRow[]>> {
  const out = new Map<string, Map<string, EffectRow[]>>()
  for (const e of effects) {
    let steps = out.get(e.workflow_id)
    if (steps === undefined) out.set(e.workflow_id, steps = new Map())
    const runs = steps.get(e.step) ?? []
    runs.push(e)
    steps.set(e.step, runs)
  }
  return out
}

/** What each kind of workflow records: its steps in call order (checkpoints), and its outcome. */
export const KINDS = {
  sequential: { input: { steps: 4, stepMs: 150 }, steps: ['s1', 's2', 's3', 's4'], output: ['s1', 's2', 's3', 's4'] },
  ledger: { input: { stepMs: 150 }, steps: ['before', 'transfer', 'after'], output: 2 },
  parallel: { input: { stepMs: 150 }, steps: ['p0', ...PARALLEL_STEPS, 'p9'], output: PARALLEL_STEPS },
  sleeper: { input: { stepMs: 150, sleepMs: 3000 }, steps: ['before', 'sleep', 'after'], output: 'slept' }
} as const
export type Kind = keyof typeof KINDS
/** Checkpoints that are not ctx.step calls: they record no side effect. */
const NOT_STEPS = new Set(['transfer', 'sleep'])

/**
 * Checks the outcome of a run of the fleet where `victim` died (killed, or
 * stopped gracefully, its steps in flight cut short): every workflow SUCCESS with its output and all of
 * its checkpoints; every step's side effect recorded once, except a step in
 * flight on the victim when it died, which may have run again elsewhere
 * (one per workflow, or some of one parallel group); ledger rows once;
 * sleepers woke at their recorded time (within `lateWakeMs`).
 */
export async function checkExactlyOnce (t: Test, f: Fleet, kinds: Map<string, Kind>, victim: Instance, { timeoutMs = 60_000, lateWakeMs = 1500 } = {}): Promise<void> {
  const rows = await f.finished([...kinds.keys()], timeoutMs)
  const steps = await f.steps()
  const effects = byWorkflowAndStep(await f.effects())
  const ledger = await f.ledger()
  let failures = 0
  const check = (ok: boolean, message: string): void => {
    // One assertion per kind of failure would hide which workflow failed; one per check would be thousands.
    if (!ok && failures++ < 10) t.fail(message)
  }
  let rerun = 0
  for (const row of rows) {
    const kind = KINDS[kinds.get(row.workflow_id)!]
    const id = row.workflow_id
    check(row.status === 'SUCCESS', `${id} (${row.name}) is ${row.status}`)
    check(JSON.stringify(deserialize(row.output!)) === JSON.stringify(kind.output), `${id} returned ${row.output}`)
    const recorded = steps.filter((s) => s.workflow_id === id)
    check(JSON.stringify(recorded.map((s) => s.name)) === JSON.stringify(kind.steps), `${id} recorded ${recorded.map((s) => s.name).join(', ')}`)
    const ran = effects.get(id) ?? new Map<string, EffectRow[]>()
    const twice: string[] = []
    for (const name of kind.steps.filter((s) => !NOT_STEPS.has(s))) {
      const runs = ran.get(name) ?? []
      check(runs.length === 1 || runs.length === 2, `${id} step ${name} ran ${runs.length} times`)
      if (runs.length !== 2) continue
      twice.push(name)
      // Only a step the victim was running when it died, resumed by another instance.
      check(runs[0]!.pid === victim.pid && runs[1]!.pid !== victim.pid,
        `${id} step ${name} ran twice, on ${runs.map((r) => r.executor).join(' then ')}`)
    }
    rerun += twice.length > 0 ? 1 : 0
    check(twice.length <= 1 || twice.every((s) => PARALLEL_STEPS.includes(s)), `${id} ran ${twice.join(', ')} twice`)
    if (row.name === 'ledger') {
      const mine = ledger.filter((l) => l.workflow_id === id)
      check(mine.map((l) => l.entry).join() === 'credit,debit' && mine[0]!.pid === mine[1]!.pid,
        `${id} has ledger rows ${JSON.stringify(mine)}`)
    }
    if (row.name === 'sleeper') {
      const wakeAt = deserialize(recorded.find((s) => s.name === 'sleep')!.output!) as number
      const after = ran.get('after')![0]!.at.getTime()
      // The woken run judges the time by its estimate of the database's clock: a few ms off at most.
      check(after >= wakeAt - 50 && after < wakeAt + lateWakeMs, `${id} woke ${after - wakeAt} ms after its recorded wake-up time`)
    }
  }
  t.equal(failures, 0, `all ${rows.length} workflows finished once, with their checkpoints, side effects and ledger rows`)
  t.comment(`${rerun} workflows re-ran a step in flight when the victim died or stopped`)
}


/** Starts `perKind` workflows of each kind on each instance, all at once; returns each one's kind, and who started what. */
export async function startLoad (instances: Instance[], perKind: number): Promise<{ kinds: Map<string, Kind>, started: Map<Instance, string[]> }> {
  const kinds = new Map<string, Kind>()
  const started = new Map<Instance, string[]>()
  await Promise.all(instances.map(async (instance) => {
    const ids = await Promise.all((Object.keys(KINDS) as Kind[]).map(async (kind) => {
      const ids = await instance.startMany(kind, Array.from({ length: perKind }, () => KINDS[kind].input))
      for (const id of ids) kinds.set(id, kind)
      return ids
    }))
    started.set(instance, ids.flat())
  }))
  return { kinds, started }
}
