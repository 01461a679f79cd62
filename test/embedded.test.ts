// Zero-config database: without databaseUrl or DATABASE_URL the plugin starts
// an embedded Postgres, and app.close() stops it. Runs in a child process
// (test/fixtures/embedded-app.js) whose environment has no DATABASE_URL.
import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { readFile, rm, writeFile } from 'node:fs/promises'
import { connect } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import t, { type Test } from 'tap'
import { pollUntil } from './helpers/db.js'
import { childEnv, request, spawnFixture, type Line } from './fixtures/child.js'

/** Stops a Postgres left running in `dataDir` by a failed run, so it never outlives the test. */
async function stopLeftover (dataDir: string): Promise<void> {
  const pid = Number.parseInt((await readFile(path.join(dataDir, 'postmaster.pid'), 'utf8').catch(() => '')).split('\n')[0]!, 10)
  if (!Number.isInteger(pid) || pid <= 0) return
  try {
    process.kill(pid, 'SIGINT')
  } catch {
    return
  }
  await pollUntil(() => !existsSync(path.join(dataDir, 'postmaster.pid')), { timeoutMs: 30_000, what: 'the leftover Postgres to stop' })
}

function probe (port: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    socket.once('connect', () => { socket.destroy(); resolve('connected') })
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'error'))
  })
}

function tempDataDir (t: Test): string {
  const dataDir = path.join(tmpdir(), `fastify-dbos-embedded-${randomBytes(6).toString('hex')}`)
  t.teardown(async () => {
    await stopLeftover(dataDir)
    await rm(dataDir, { recursive: true, force: true })
    await rm(`${dataDir}.log`, { force: true })
    await rm(`${dataDir}.lock`, { force: true })
  })
  return dataDir
}

t.test('without a database URL the plugin runs on an embedded Postgres it stops on close', async (t) => {
  const dataDir = tempDataDir(t)
  const child = spawnFixture(t, './embedded-app.js', childEnv({ DATABASE_URL: undefined, EMBEDDED_DATA_DIR: dataDir }))

  const result = await child.waitForLine((l) => l.fixture === 'result', 'the workflow result', 90_000)
  t.same(result, { fixture: 'result', status: 200, body: { greeting: 'hello embedded' } })
  await child.waitForLine((l) => l.fixture === 'closed', 'app.close() to return', 30_000)

  const announced = child.lines.filter((l) => l.level >= 30 && l.event === 'embedded.started')
  t.equal(announced.length, 1, 'one log line says an embedded Postgres was started')
  t.equal(announced[0]?.dataDir, dataDir)
  t.notMatch(announced[0]?.url ?? '', /fastify-dbos@/, 'the logged URL hides the password')
  const port = Number(new URL(announced[0]?.url ?? 'postgres://x@127.0.0.1:1/').port)

  t.ok(existsSync(path.join(dataDir, 'PG_VERSION')), 'the data directory was initialised')
  t.notOk(existsSync(path.join(dataDir, 'postmaster.pid')), 'Postgres has stopped (no postmaster.pid)')
  t.equal(await probe(port), 'ECONNREFUSED', 'its port refuses connections')
  t.equal(child.exit, undefined, 'the app process was still alive: app.close() stopped Postgres, not an exit hook')
  await child.kill()
})

t.test('a SIGKILLed app leaves its embedded Postgres running; the restarted app takes over and resumes', async (t) => {
  const dataDir = tempDataDir(t)
  const gateFile = `${dataDir}-gate`
  t.teardown(() => rm(gateFile, { force: true }))
  const env = childEnv({ DATABASE_URL: undefined, EMBEDDED_DATA_DIR: dataDir, MODE: 'serve', GATE_FILE: gateFile })

  const first = spawnFixture(t, './embedded-app.js', env)
  const firstPort = await first.listening(90_000)
  const started = await request(firstPort, 'POST', '/wait', { name: 'w', workflowId: 'wf-embedded' })
  t.equal(started.status, 200)
  await pollUntil(async () => (await request(firstPort, 'GET', '/steps/wf-embedded')).body.length === 1,
    { what: 'the first step to be checkpointed' })
  await first.kill()
  t.ok(existsSync(path.join(dataDir, 'postmaster.pid')), 'its Postgres outlived the SIGKILLed app')

  const second = spawnFixture(t, './embedded-app.js', env)
  const port = await second.listening(90_000)
  await writeFile(gateFile, '')
  const result = await request(port, 'GET', '/result/wf-embedded')
  t.same(result, { status: 200, body: { value: ['w first', 'w second'] } }, 'the workflow resumed on the same data')
  second.process.kill('SIGTERM')
  await second.waitForLine((l) => l.fixture === 'closed', 'the app to close')
  t.same(await second.exited, { code: 0, signal: null })
  t.notOk(existsSync(path.join(dataDir, 'postmaster.pid')), 'closing the second app stopped Postgres')
})

t.test('two apps started at once on one data directory: one serves, the other is refused (in-use) and leaves it running', async (t) => {
  const dataDir = tempDataDir(t)
  const env = childEnv({ DATABASE_URL: undefined, EMBEDDED_DATA_DIR: dataDir, MODE: 'serve' })
  const apps = [spawnFixture(t, './embedded-app.js', env), spawnFixture(t, './embedded-app.js', env)]

  const outcome = (app: typeof apps[number]): Promise<Line> =>
    app.waitForLine((l) => l.fixture === 'listening' || l.fixture === 'error', 'the app to listen or fail', 90_000)
  const [first, second] = await Promise.all(apps.map(outcome))
  const lines = [first!, second!]
  t.same(lines.map((l) => l.fixture).sort(), ['error', 'listening'], 'exactly one of them started')
  const refused = lines.find((l) => l.fixture === 'error')!
  t.match(refused, { code: 'DBOS_ERR_EMBEDDED_POSTGRES', reason: 'in-use' })
  t.match(refused.message, /DATABASE_URL/, 'the message names the way out')
  const loser = apps[lines.indexOf(refused)]!
  t.same(await loser.exited, { code: 1, signal: null }, 'the refused app exited on its own, with code 1')

  const winner = apps[1 - lines.indexOf(refused)]!
  const port = lines.find((l) => l.fixture === 'listening')!.port as number
  t.same(await request(port, 'POST', '/greet', { name: 'first' }), { status: 200, body: { greeting: 'hello first' } },
    'the app that started still has its Postgres')
  winner.process.kill('SIGTERM')
  t.same(await winner.exited, { code: 0, signal: null })
  t.notOk(existsSync(`${dataDir}.lock`), 'closing released the data directory')
})
