// Migrations against a real Postgres: what they leave in the schema (read back
// from the catalogs, not from the runner's answers), and that concurrent
// runners on a fresh schema apply each migration exactly once.
import { readdir } from 'node:fs/promises'
import postgres from 'postgres'
import t, { type Test } from 'tap'
import { defineWorkflow, type Logger } from '../lib/index.js'
import { tables } from '../lib/store/connect.js'
import { migrate } from '../lib/store/migrate.js'
import { adminSql, databaseUrl, dropSchema, silentLogger, uniqueSchema } from './helpers/db.js'
import { sharedSchema } from './helpers/workflows.js'

/** The migrations the schema below was written for. A new migration updates both (and docs/Reference/schema.md). */
const MIGRATIONS = ['0001_init.sql', '0002_wake_at.sql', '0003_executors.sql', '0004_primitives.sql', '0005_queues.sql']

/** What the migrations leave in an engine's schema. */
const SCHEMA: SchemaState = {
  columns: [
    'events.workflow_id text NOT NULL',
    'events.key text NOT NULL',
    'events.step_id integer NOT NULL',
    'events.value text NOT NULL',
    'events.created_at timestamp with time zone NOT NULL DEFAULT now()',
    'executors.executor_id text NOT NULL',
    'executors.instance text NOT NULL',
    'executors.app_version text NULL',
    'executors.lease_ms integer NOT NULL',
    'executors.started_at timestamp with time zone NOT NULL DEFAULT now()',
    'executors.heartbeat_at timestamp with time zone NOT NULL DEFAULT now()',
    'executors.stopped_at timestamp with time zone NULL',
    'messages.workflow_id text NOT NULL',
    'messages.topic text NOT NULL',
    'messages.seq bigint NOT NULL',
    'messages.message text NOT NULL',
    'messages.idempotency_key text NULL',
    'messages.consumed_step integer NULL',
    'messages.created_at timestamp with time zone NOT NULL DEFAULT now()',
    'migrations.id integer NOT NULL',
    'migrations.name text NOT NULL',
    'migrations.applied_at timestamp with time zone NOT NULL DEFAULT now()',
    'queues.name text NOT NULL',
    'queues.created_at timestamp with time zone NOT NULL DEFAULT now()',
    'schedules.name text NOT NULL',
    'schedules.cron text NOT NULL',
    'schedules.timezone text NULL',
    'schedules.paused boolean NOT NULL DEFAULT false',
    'schedules.last_tick timestamp with time zone NULL',
    'schedules.updated_at timestamp with time zone NOT NULL DEFAULT now()',
    'steps.workflow_id text NOT NULL',
    'steps.step_id integer NOT NULL',
    'steps.name text NOT NULL',
    'steps.output text NULL',
    'steps.error text NULL',
    'steps.created_at timestamp with time zone NOT NULL DEFAULT now()',
    'steps.started_at timestamp with time zone NULL',
    'streams.workflow_id text NOT NULL',
    'streams.key text NOT NULL',
    'streams.offset integer NOT NULL',
    'streams.step_id integer NOT NULL',
    'streams.value text NULL',
    'streams.closed boolean NOT NULL DEFAULT false',
    'streams.created_at timestamp with time zone NOT NULL DEFAULT now()',
    'workflows.workflow_id text NOT NULL',
    'workflows.name text NOT NULL',
    'workflows.status text NOT NULL',
    'workflows.input text NOT NULL',
    'workflows.input_hash text NOT NULL',
    'workflows.output text NULL',
    'workflows.error text NULL',
    'workflows.request_id text NULL',
    'workflows.executor_id text NOT NULL',
    'workflows.epoch bigint NOT NULL DEFAULT 1',
    'workflows.attempts integer NOT NULL DEFAULT 1',
    'workflows.created_at timestamp with time zone NOT NULL DEFAULT now()',
    'workflows.updated_at timestamp with time zone NOT NULL DEFAULT now()',
    'workflows.completed_at timestamp with time zone NULL',
    'workflows.wake_at timestamp with time zone NULL',
    'workflows.app_version text NULL',
    'workflows.parent_id text NULL',
    'workflows.deadline_at timestamp with time zone NULL',
    'workflows.waiting_topic text NULL',
    'workflows.queue_name text NULL',
    'workflows.priority integer NULL',
    'workflows.queue_seq bigint NULL',
    'workflows.visible_at timestamp with time zone NULL',
    'workflows.partition_key text NULL',
    'workflows.deduplication_id text NULL',
    'workflows.debounce_key text NULL',
    'workflows.dequeued_at timestamp with time zone NULL',
    'workflows.timeout_ms double precision NULL'
  ],
  indexes: [
    'CREATE INDEX events_latest ON events USING btree (workflow_id, key, step_id DESC)',
    'CREATE UNIQUE INDEX events_pkey ON events USING btree (workflow_id, step_id)',
    'CREATE UNIQUE INDEX executors_pkey ON executors USING btree (executor_id)',
    'CREATE UNIQUE INDEX messages_idempotency ON messages USING btree (workflow_id, idempotency_key) WHERE (idempotency_key IS NOT NULL)',
    'CREATE UNIQUE INDEX messages_pkey ON messages USING btree (workflow_id, topic, seq)',
    'CREATE INDEX messages_unconsumed ON messages USING btree (workflow_id, topic, seq) WHERE (consumed_step IS NULL)',
    'CREATE UNIQUE INDEX migrations_pkey ON migrations USING btree (id)',
    'CREATE UNIQUE INDEX queues_pkey ON queues USING btree (name)',
    'CREATE UNIQUE INDEX schedules_pkey ON schedules USING btree (name)',
    'CREATE UNIQUE INDEX steps_pkey ON steps USING btree (workflow_id, step_id)',
    'CREATE UNIQUE INDEX streams_pkey ON streams USING btree (workflow_id, key, "offset")',
    'CREATE INDEX workflows_completed_at ON workflows USING btree (completed_at) WHERE (completed_at IS NOT NULL)',
    'CREATE INDEX workflows_created_at_id ON workflows USING btree (created_at, workflow_id)',
    'CREATE INDEX workflows_deadline ON workflows USING btree (executor_id, deadline_at) WHERE (deadline_at IS NOT NULL)',
    'CREATE INDEX workflows_executor_status ON workflows USING btree (executor_id, status)',
    'CREATE INDEX workflows_executor_wake_at ON workflows USING btree (executor_id, wake_at) WHERE (wake_at IS NOT NULL)',
    'CREATE INDEX workflows_name_created_at ON workflows USING btree (name, created_at)',
    'CREATE INDEX workflows_parent ON workflows USING btree (parent_id, created_at) WHERE (parent_id IS NOT NULL)',
    'CREATE UNIQUE INDEX workflows_pkey ON workflows USING btree (workflow_id)',
    "CREATE UNIQUE INDEX workflows_queue_debounce ON workflows USING btree (queue_name, debounce_key) WHERE ((debounce_key IS NOT NULL) AND (status = 'ENQUEUED'::text))",
    "CREATE UNIQUE INDEX workflows_queue_dedup ON workflows USING btree (queue_name, deduplication_id) WHERE ((deduplication_id IS NOT NULL) AND (status = ANY (ARRAY['ENQUEUED'::text, 'PENDING'::text])))",
    'CREATE INDEX workflows_queue_dequeued ON workflows USING btree (queue_name, dequeued_at) WHERE (dequeued_at IS NOT NULL)',
    "CREATE INDEX workflows_queue_ready ON workflows USING btree (queue_name, priority, queue_seq) WHERE (status = 'ENQUEUED'::text)",
    "CREATE INDEX workflows_queue_running ON workflows USING btree (queue_name, partition_key, executor_id) WHERE ((status = 'PENDING'::text) AND (queue_name IS NOT NULL))",
    "CREATE INDEX workflows_queue_visible ON workflows USING btree (queue_name, visible_at) WHERE (status = 'ENQUEUED'::text)",
    'CREATE INDEX workflows_request_id ON workflows USING btree (request_id) WHERE (request_id IS NOT NULL)',
    'CREATE INDEX workflows_status_created_at ON workflows USING btree (status, created_at, workflow_id)'
  ],
  constraints: [
    'events.events_pkey PRIMARY KEY (workflow_id, step_id)',
    'executors.executors_lease_ms_check CHECK ((lease_ms > 0))',
    'executors.executors_pkey PRIMARY KEY (executor_id)',
    'messages.messages_pkey PRIMARY KEY (workflow_id, topic, seq)',
    'migrations.migrations_pkey PRIMARY KEY (id)',
    'queues.queues_pkey PRIMARY KEY (name)',
    'schedules.schedules_pkey PRIMARY KEY (name)',
    'steps.steps_pkey PRIMARY KEY (workflow_id, step_id)',
    'streams.streams_pkey PRIMARY KEY (workflow_id, key, "offset")',
    'workflows.workflows_pkey PRIMARY KEY (workflow_id)',
    "workflows.workflows_status_check CHECK ((status = ANY (ARRAY['ENQUEUED'::text, 'PENDING'::text, 'SUCCESS'::text, 'ERROR'::text, 'MAX_RECOVERY_ATTEMPTS_EXCEEDED'::text, 'CANCELLED'::text])))"
  ]
}

interface SchemaState { columns: string[], indexes: string[], constraints: string[] }

/** Every column, index and (key or check) constraint in `schema`, from the catalogs. */
async function schemaState (sql: postgres.Sql, schema: string): Promise<SchemaState> {
  const columns = await sql<{ c: string }[]>`
    SELECT table_name || '.' || column_name || ' ' || data_type || ' ' ||
           CASE is_nullable WHEN 'YES' THEN 'NULL' ELSE 'NOT NULL' END ||
           coalesce(' DEFAULT ' || column_default, '') AS c
    FROM information_schema.columns WHERE table_schema = ${schema}
    ORDER BY table_name, ordinal_position`
  const indexes = await sql<{ c: string }[]>`
    SELECT replace(indexdef, ${schema + '.'}, '') AS c FROM pg_indexes WHERE schemaname = ${schema} ORDER BY indexname`
  // Key and check constraints only: Postgres 18 lists NOT NULL ones here too, which the columns show already.
  const constraints = await sql<{ c: string }[]>`
    SELECT rel.relname || '.' || con.conname || ' ' || pg_get_constraintdef(con.oid) AS c
    FROM pg_constraint con JOIN pg_class rel ON rel.oid = con.conrelid JOIN pg_namespace ns ON ns.oid = con.connamespace
    WHERE ns.nspname = ${schema} AND con.contype IN ('p', 'u', 'f', 'c', 'x')
    ORDER BY con.conname`
  return { columns: columns.map((r) => r.c), indexes: indexes.map((r) => r.c), constraints: constraints.map((r) => r.c) }
}

interface Recorded { id: number, name: string, applied_at: Date, xid: string }

/** The migrations table, with the transaction (xmin) that inserted each row. */
function recorded (sql: postgres.Sql, schema: string): Promise<Recorded[]> {
  return sql<Recorded[]>`SELECT id, name, applied_at, xmin::text AS xid FROM ${sql(schema)}.migrations ORDER BY id, name`
}

/**
 * Whether the engine's tables were created (and last altered) by the
 * transaction that recorded the migrations: each migration was applied by the
 * transaction that recorded it, not by another runner racing it.
 */
async function tablesMadeBy (sql: postgres.Sql, schema: string, xid: string): Promise<boolean> {
  const rows = await sql<{ relname: string, xid: string }[]>`
    SELECT relname, xmin::text AS xid FROM pg_class
    WHERE relnamespace = ${schema}::regnamespace AND relname IN ('workflows', 'steps')`
  return rows.length === 2 && rows.every((r) => r.xid === xid)
}

function freshSchema (t: Test): string {
  const schema = uniqueSchema('m')
  t.teardown(() => dropSchema(schema))
  return schema
}

t.test('the schema below is written for every migration file, in order', async (t) => {
  const files = (await readdir(new URL('../lib/migrations/', import.meta.url))).filter((f) => f.endsWith('.sql')).sort()
  t.same(files, MIGRATIONS, 'a new migration must update MIGRATIONS and SCHEMA in this file')
})

t.test('migrate() on a fresh schema creates every table, column, index and constraint; a second run changes nothing', async (t) => {
  const schema = freshSchema(t)
  const sql = postgres(databaseUrl, { max: 2, onnotice: () => {} })
  t.teardown(() => sql.end({ timeout: 5 }))
  const tb = tables(sql, schema)
  t.same(await migrate(sql, tb), MIGRATIONS, 'the first run applies every migration, in order')
  t.same(await schemaState(sql, schema), SCHEMA, 'the tables, columns, indexes and constraints of every migration')
  const first = await recorded(sql, schema)
  t.same(first.map((r) => [r.id, r.name]), MIGRATIONS.map((name) => [Number(name.slice(0, 4)), name]), 'one row per migration, numbered by its file name')
  t.equal(new Set(first.map((r) => r.xid)).size, 1, 'all recorded by one transaction')
  t.ok(await tablesMadeBy(sql, schema, first[0]!.xid), 'which also created the tables')

  t.same(await migrate(sql, tb), [], 'the second run applies nothing')
  t.same(await schemaState(sql, schema), SCHEMA, 'the schema is unchanged')
  t.same(await recorded(sql, schema), first, 'no row added or rewritten')
})

t.test('concurrent migrate() calls on one fresh schema apply each migration exactly once', async (t) => {
  const schema = freshSchema(t)
  const clients = Array.from({ length: 6 }, () => postgres(databaseUrl, { max: 1, onnotice: () => {} }))
  t.teardown(() => Promise.all(clients.map((c) => c.end({ timeout: 5 }))))
  const results = await Promise.all(clients.map((c) => migrate(c, tables(c, schema))))
  t.same(results.filter((r) => r.length > 0), [MIGRATIONS], 'one caller applied every migration; the others found them applied')
  const sql = adminSql(t)
  t.same(await schemaState(sql, schema), SCHEMA, 'the tables, columns, indexes and constraints of every migration')
  const rows = await recorded(sql, schema)
  t.same(rows.map((r) => r.name), MIGRATIONS, 'one row per migration')
  t.equal(new Set(rows.map((r) => r.xid)).size, 1, 'all recorded by one transaction')
  t.ok(await tablesMadeBy(sql, schema, rows[0]!.xid), 'the one that created the tables')
})

t.test('4 engines starting at once on one fresh schema: one applies the migrations, all of them work on its tables', async (t) => {
  const processes = sharedSchema(t, 'm')
  const crossCheck = defineWorkflow('crossCheck', async (ctx) => ctx.step('id', () => ctx.workflowId))
  // Each engine logs the migrations it applied (event field `migrations`).
  const applied: string[][][] = [[], [], [], []]
  const loggerFor = (i: number): Logger => ({
    ...silentLogger,
    info (obj: object) { if ((obj as { event?: string }).event === 'migrations.applied') applied[i]!.push((obj as { migrations: string[] }).migrations) }
  })
  const engines = await Promise.all([0, 1, 2, 3].map((i) =>
    processes.start({ workflows: [crossCheck], executorId: `engine-${i}`, poolSize: 4, logger: loggerFor(i) })))
  t.same(applied.flat(), [MIGRATIONS], 'exactly one engine applied the migrations, each once')
  const sql = adminSql(t)
  t.same(await schemaState(sql, processes.schema), SCHEMA, 'the tables, columns, indexes and constraints of every migration')
  const rows = await recorded(sql, processes.schema)
  t.same(rows.map((r) => r.name), MIGRATIONS, 'one row per migration')
  t.equal(new Set(rows.map((r) => r.xid)).size, 1, 'all recorded by one transaction')
  t.ok(await tablesMadeBy(sql, processes.schema, rows[0]!.xid), 'the one that created the tables')
  for (const [i, engine] of engines.entries()) {
    const handle = await engine.startWorkflow(crossCheck, undefined, { workflowId: `from-${i}` })
    t.equal(await handle.getResult(), `from-${i}`, `engine ${i} runs workflows`)
    t.equal((await engines[(i + 1) % 4]!.getStatus(`from-${i}`)).status, 'SUCCESS', `engine ${(i + 1) % 4} sees engine ${i}'s workflow`)
  }
})
