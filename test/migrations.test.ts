import { readdir } from 'node:fs/promises'
import postgres from 'postgres'
import t, { type Test } from 'tap'
import { defineWorkflow } from '../lib/index.js'
import { tables } from '../lib/store/connect.js'
import { migrate } from '../lib/store/migrate.js'
import { adminSql, databaseUrl, dropSchema, uniqueSchema } from './helpers/db.js'
import { sharedSchema } from './helpers/workflows.js'

const migrationFiles = (await readdir(new URL('../lib/migrations/', import.meta.url)))
  .filter((f) => /^\d{4}_[\w-]+\.sql$/.test(f)).sort()

function freshSchema (t: Test): string {
  const schema = uniqueSchema('m')
  t.teardown(() => dropSchema(schema))
  return schema
}

t.test('there is at least one migration to test with', async (t) => {
  t.ok(migrationFiles.length > 0)
})

t.test('running migrations twice applies nothing the second time', async (t) => {
  const schema = freshSchema(t)
  const sql = postgres(databaseUrl, { max: 2, onnotice: () => {} })
  t.teardown(() => sql.end({ timeout: 5 }))
  const tb = tables(sql, schema)
  t.same(await migrate(sql, tb), migrationFiles, 'the first run applies every migration, in order')
  t.same(await migrate(sql, tb), [], 'the second run applies nothing')
  const rows = await sql`SELECT id, name FROM ${sql(schema)}.migrations ORDER BY id`
  t.same(rows.map((r) => r.name), migrationFiles)
  t.same(rows.map((r) => r.id), migrationFiles.map((f) => Number(f.slice(0, 4))))
})

t.test('concurrent migrate() calls on one fresh schema apply each migration exactly once', async (t) => {
  const schema = freshSchema(t)
  const clients = Array.from({ length: 6 }, () => postgres(databaseUrl, { max: 1, onnotice: () => {} }))
  t.teardown(() => Promise.all(clients.map((c) => c.end({ timeout: 5 }))))
  const results = await Promise.all(clients.map((c) => migrate(c, tables(c, schema))))
  t.same(results.flat().sort(), migrationFiles, 'every migration applied by exactly one caller')
  t.equal(results.filter((r) => r.length > 0).length, 1, 'one caller did all the work')
})

t.test('4 engines starting at once on one fresh schema all start, with one row per migration', async (t) => {
  const processes = sharedSchema(t, 'm')
  const crossCheck = defineWorkflow('crossCheck', async (ctx) => ctx.step('id', () => ctx.workflowId))
  const engines = await Promise.all([1, 2, 3, 4].map((i) =>
    processes.start({ workflows: [crossCheck], executorId: `engine-${i}`, poolSize: 4 })))
  t.equal(engines.length, 4)
  const sql = adminSql(t)
  const rows = await sql`SELECT name, count(*)::int AS n FROM ${sql(processes.schema)}.migrations GROUP BY name ORDER BY name`
  t.same(rows.map((r) => [r.name, r.n]), migrationFiles.map((f) => [f, 1]))
  const handle = await engines[0]!.startWorkflow(crossCheck, undefined, { workflowId: 'shared' })
  t.equal(await handle.getResult(), 'shared')
  t.equal((await engines[3]!.getStatus('shared')).status, 'SUCCESS', 'every engine works on the same tables')
})
