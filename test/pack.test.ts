// The published package, as a user installs it: `npm pack` this repo, install
// the tarball with fastify into a scratch app, then use it from plain ESM
// JavaScript and type-check a TypeScript file against its declarations.
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import t from 'tap'
import { childEnv } from './fixtures/child.js'
import { adminSql, databaseUrl, dropSchema, uniqueSchema } from './helpers/db.js'

const run = promisify(execFile)
const repo = fileURLToPath(new URL('..', import.meta.url))

// npm run by `npm test` exports its own settings (npm_config_*, npm_package_*,
// lifecycle variables); the nested npm must not inherit them.
const env = Object.fromEntries(Object.entries(childEnv({})).filter(([key]) => !/^npm_/i.test(key)))

const script = `
import Fastify from 'fastify'
import dbosPlugin, { defineWorkflow } from 'fastify-dbos'
import { Engine } from 'fastify-dbos/engine'

const greet = defineWorkflow('greet', async (ctx, name) => {
  const greeting = await ctx.step('hello', async () => 'hello ' + name)
  return { greeting, workflowId: ctx.workflowId }
})
const app = Fastify()
await app.register(dbosPlugin, { workflows: [greet], databaseUrl: process.env.DATABASE_URL, schema: process.env.SCHEMA })
app.post('/greet', async (req) => req.workflows.run(greet, req.body.name))
const res = await app.inject({ method: 'POST', url: '/greet', payload: { name: 'pack' }, headers: { 'dbos-idempotency-key': 'key-1' } })
console.log(JSON.stringify({ status: res.statusCode, body: res.json(), engine: typeof Engine }))
await app.close()
`

const typed = `
import Fastify from 'fastify'
import dbosPlugin, { defineWorkflow, type WorkflowStatus } from 'fastify-dbos'
import { Engine } from 'fastify-dbos/engine'

export const pay = defineWorkflow('pay', async (ctx, input: { amount: number }) => {
  const id: string = await ctx.step('record', async () => 'tx-' + input.amount, { retries: { maxAttempts: 3 } })
  return { id }
})

const app = Fastify()
await app.register(dbosPlugin, { workflows: [pay], schema: 'x', maxRecoveryAttempts: 3 })
app.post('/pay', async (req) => {
  const handle = await req.workflows.start(pay, { amount: 1 })
  const out: { id: string } = await handle.getResult({ timeoutMs: 1000 })
  // @ts-expect-error the output is { id: string }
  const wrong: number = await handle.getResult()
  return { out, wrong, requestId: req.workflows.requestId }
})
const statuses: WorkflowStatus[] = await app.workflows.list({ status: 'PENDING' })
// @ts-expect-error the input must be { amount: number }
await app.workflows.start(pay, { amount: 'one' })
new Engine({ workflows: [pay], databaseUrl: 'postgres://localhost/x' })
export { statuses }
`

t.test('the packed tarball installs and works from JavaScript and TypeScript', async (t) => {
  t.ok(existsSync(path.join(repo, 'dist/plugins/index.js')), 'dist is built (npm test builds it)')
  const dir = await mkdtemp(path.join(tmpdir(), 'fastify-dbos-pack-'))
  const schema = uniqueSchema('pack')
  t.teardown(async () => {
    await rm(dir, { recursive: true, force: true })
    await dropSchema(schema)
  })

  // dist is already built; skip the prepare script's rebuild.
  const packed = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], { cwd: repo, env })
  const [info] = JSON.parse(packed.stdout) as [{ filename: string, files: { path: string }[] }]
  const files = info.files.map((f) => f.path)
  t.ok(files.includes('dist/lib/migrations/0001_init.sql'), 'the SQL migrations are in the tarball')
  t.ok(files.includes('dist/plugins/index.d.ts'), 'the type declarations are in the tarball')
  t.notOk(files.some((f) => f.startsWith('test/') || f.startsWith('lib/')), 'tests and TypeScript sources are not')

  const app = path.join(dir, 'app')
  await mkdir(app)
  await writeFile(path.join(app, 'package.json'), JSON.stringify({ name: 'scratch', private: true, type: 'module' }))
  await run('npm', ['install', path.join(dir, info.filename), 'fastify@5', '--no-audit', '--no-fund', '--prefer-offline'],
    { cwd: app, env, maxBuffer: 16 * 1024 * 1024 })

  await writeFile(path.join(app, 'main.js'), script)
  const out = await run(process.execPath, ['main.js'], { cwd: app, env: { ...env, DATABASE_URL: databaseUrl, SCHEMA: schema } })
  t.same(JSON.parse(out.stdout.trim().split('\n').at(-1)!), {
    status: 200, body: { greeting: 'hello pack', workflowId: 'key-1' }, engine: 'function'
  })
  const sql = adminSql(t)
  t.same(await sql`SELECT workflow_id, status FROM ${sql(schema + '.workflows')}`, [{ workflow_id: 'key-1', status: 'SUCCESS' }])

  await writeFile(path.join(app, 'check.ts'), typed)
  await writeFile(path.join(app, 'tsconfig.json'), JSON.stringify({
    compilerOptions: {
      target: 'ES2022',
      module: 'NodeNext',
      moduleResolution: 'NodeNext',
      strict: true,
      noEmit: true,
      // The scratch app has no @types/node of its own; borrow the repo's.
      typeRoots: [path.join(repo, 'node_modules/@types')],
      types: ['node']
    },
    files: ['check.ts']
  }))
  const tsc = await run(process.execPath, [path.join(repo, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.json'], { cwd: app, env })
    .then(() => ({ code: 0, output: '' }), (err: { code: number, stdout: string }) => ({ code: err.code, output: err.stdout }))
  t.same(tsc, { code: 0, output: '' }, 'tsc --noEmit passes, and the @ts-expect-error lines are errors')
})
