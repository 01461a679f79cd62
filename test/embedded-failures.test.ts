// Each way the embedded Postgres can fail to start rejects app.ready() /
// engine.start() with DBOS_ERR_EMBEDDED_POSTGRES and a `reason`, in this
// process, which lives on. (Binaries that cannot be executed are tested on an
// installed copy of the package, in pack.test.ts.)
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import { promisify } from 'node:util'
import Fastify from 'fastify'
import postgres from 'postgres'
import t, { type Test } from 'tap'
import dbosPlugin from '../plugins/index.js'
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../lib/embedded/postgres.js'
import { Engine } from '../lib/index.js'

// This file is about the zero-config default; test/run.js's DATABASE_URL would bypass it.
delete process.env.DATABASE_URL
const silent = { debug () {}, info () {}, warn () {}, error () {} }
const failed = { code: 'DBOS_ERR_EMBEDDED_POSTGRES', statusCode: 500 }

async function scratch (t: Test): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'fastify-dbos-failures-'))
  await chmod(dir, 0o755) // as root, Postgres runs as the postgres user, who must be able to enter it
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return dir
}

async function select1 (url: string): Promise<number> {
  const sql = postgres(url, { max: 1, onnotice () {} })
  try {
    return (await sql`SELECT 1 AS one`)[0]!.one as number
  } finally {
    await sql.end({ timeout: 5 })
  }
}

t.test('a data directory that cannot be created: app.ready() rejects (data-dir) and the app still closes', async (t) => {
  const file = path.join(await scratch(t), 'a-file')
  await writeFile(file, '')
  const app = Fastify({ logger: false })
  await app.register(dbosPlugin, { embeddedDataDir: path.join(file, 'pgdata'), logger: silent })
  const err = await app.ready().then(() => undefined, (e: unknown) => e as Error)
  t.match(err, { ...failed, reason: 'data-dir' })
  t.match(err?.message, /DATABASE_URL/, 'the message says how to use another Postgres')
  await app.close()
})

t.test('a data directory Postgres refuses to run on: start() rejects (start) with its log, and releases the directory', async (t) => {
  const dataDir = path.join(await scratch(t), 'pgdata')
  // Looks initialised, so initdb is skipped, but holds no cluster (and, as root, the postgres user cannot enter it).
  await mkdir(dataDir, { mode: 0o700 })
  await writeFile(path.join(dataDir, 'PG_VERSION'), '17\n')
  const engine = new Engine({ embeddedDataDir: dataDir, logger: silent })
  const err = await engine.start().then(() => undefined, (e: unknown) => e as Error)
  t.match(err, { ...failed, reason: 'start' })
  t.match(err?.message, /postgres exited during start-up; its log \(.*\) says:\n\S/, 'the message quotes the server log')
  t.notOk(existsSync(`${dataDir}.lock`), 'the data directory is not left locked')
  await engine.stop()
})

t.test('two starts at once on one data directory: one runs, the other is refused (in-use); stop() hands it on', async (t) => {
  const dataDir = path.join(await scratch(t), 'pgdata')
  const servers: EmbeddedPostgres[] = []
  t.teardown(() => Promise.all(servers.map((s) => s.stop())))
  const settled = await Promise.allSettled([startEmbeddedPostgres(dataDir, silent), startEmbeddedPostgres(dataDir, silent)])
  for (const s of settled) if (s.status === 'fulfilled') servers.push(s.value)
  t.equal(servers.length, 1, 'exactly one started')
  t.match(settled.find((s) => s.status === 'rejected'), { reason: { ...failed, reason: 'in-use' } })
  t.equal(await select1(servers[0]!.url), 1, 'the one that started serves')

  await servers[0]!.stop()
  const again = await startEmbeddedPostgres(dataDir, silent)
  servers.push(again)
  t.equal(await select1(again.url), 1, 'once stopped, the directory can be started again')
})

t.test('a lock whose pid now names another process (reboot, container restart) is taken over', async (t) => {
  const dataDir = path.join(await scratch(t), 'pgdata')
  // pid 1 is alive, but did not start at tick 1: not the process that wrote this.
  await writeFile(`${dataDir}.lock`, '1 1\n')
  const server = await startEmbeddedPostgres(dataDir, silent)
  t.teardown(() => server.stop())
  t.equal(await select1(server.url), 1)
})

const run = promisify(execFile)
t.test('a data directory on a full disk: start() rejects (disk-full)', async (t) => {
  const mount = await mkdtemp(path.join(tmpdir(), 'fastify-dbos-full-'))
  // A 4 MB file system: initdb writes about 40 MB.
  const mounted = await run('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', mount]).then(() => true, () => false)
  t.teardown(async () => {
    if (mounted) await run('umount', [mount])
    await rm(mount, { recursive: true, force: true })
  })
  if (!mounted) return t.plan(0, 'needs root and permission to mount a tmpfs')
  const err = await startEmbeddedPostgres(path.join(mount, 'pgdata'), silent).then(() => undefined, (e: unknown) => e as Error)
  t.match(err, { ...failed, reason: 'disk-full' })
  t.match(err?.message, /disk .* is full/)
})
