/**
 * A PgBouncer of a test's own, in transaction pooling mode, in front of the
 * test database (or any server URL). Tests that need one skip when the
 * `pgbouncer` binary is not installed (Debian: `apt-get install pgbouncer`).
 *
 * PgBouncer refuses to run as root: as root it runs as the `postgres` user
 * (the one the embedded Postgres runs as), from a temporary directory of its
 * own. Clients log in without a password (auth_type = any); PgBouncer logs in
 * to the server with the user and password of the server URL.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { accessSync, constants } from 'node:fs'
import { chmod, chown, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import path from 'node:path'
import postgres from 'postgres'
import type { Test } from 'tap'
import { postgresUser } from '../../lib/embedded/initdb.js'
import { databaseUrl } from './db.js'

/** The pgbouncer binary on PATH (or in /usr/sbin, Debian's place, often not on a user's PATH), else undefined. */
export function findPgBouncer (): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(path.delimiter).filter(Boolean), '/usr/sbin', '/usr/local/sbin']
  for (const dir of dirs) {
    const file = path.join(dir, 'pgbouncer')
    try {
      accessSync(file, constants.X_OK)
      return file
    } catch {}
  }
  return undefined
}

export interface PgBouncerOptions {
  /** The server PgBouncer pools connections to. Default: the test database. */
  serverUrl?: string
  /** Server connections per database and user (default_pool_size). Default 10. */
  poolSize?: number
  /** More [pgbouncer] settings, e.g. { server_login_retry: 1 }. */
  settings?: Record<string, string | number>
}

/** One row of the admin console's SHOW CLIENTS. */
export interface ClientRow { database: string, state: string, application_name: string }

export class PgBouncer {
  /** Connection string for clients: the server's database through PgBouncer. */
  readonly url: string
  readonly #adminUrl: string
  readonly #child: ChildProcess
  readonly #watchdog: ChildProcess
  readonly #exited: Promise<void>
  #log = ''

  constructor (url: string, adminUrl: string, child: ChildProcess) {
    this.url = url
    this.#adminUrl = adminUrl
    this.#child = child
    // Ends PgBouncer if this process dies without running its teardown (tap's
    // timeout sends SIGTERM, which runs no exit handler): the watchdog's
    // stdin is a pipe from this process, closed when it dies.
    this.#watchdog = spawn('/bin/sh', ['-c', `read _; kill -TERM ${child.pid} 2>/dev/null`], { stdio: ['pipe', 'ignore', 'ignore'] })
    this.#watchdog.on('error', () => {})
    // 'close', not 'exit': by then all it wrote to stderr has been read.
    this.#exited = new Promise((resolve) => child.once('close', () => resolve()))
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => { this.#log += chunk })
    child.stdout!.resume()
  }

  /** Everything PgBouncer logged so far. */
  get log (): string { return this.#log }

  /**
   * Its WARNING and ERROR lines (a server packet it could not route, a lost
   * server connection), from `since` (a length of `log` taken earlier) on.
   */
  problems (since = 0): string[] {
    return this.#log.slice(since).split('\n').filter((line) => / (WARNING|ERROR|FATAL) /.test(line))
  }

  get running (): boolean { return this.#child.exitCode === null && this.#child.signalCode === null }

  /** The client connections PgBouncer holds right now (its admin console's SHOW CLIENTS), the console's own left out. */
  async clients (): Promise<ClientRow[]> {
    return (await this.#admin('SHOW CLIENTS') as unknown as ClientRow[]).filter((c) => c.database !== 'pgbouncer')
  }

  /** A statement on the admin console, which speaks the simple query protocol only. */
  async #admin (statement: string): Promise<postgres.Row[]> {
    const sql = postgres(this.#adminUrl, { max: 1, fetch_types: false, onnotice: () => {}, connect_timeout: 5 })
    try {
      return [...await sql.unsafe(statement).simple()]
    } finally {
      await sql.end({ timeout: 1 })
    }
  }

  /** Immediate shutdown (SIGTERM), then SIGKILL if it lingers. */
  async stop (): Promise<void> {
    // First, so that it never signals a pid that PgBouncer no longer holds.
    this.#watchdog.kill('SIGKILL')
    if (!this.running) return
    this.#child.kill('SIGTERM')
    const timer = setTimeout(() => this.#child.kill('SIGKILL'), 5000)
    await this.#exited
    clearTimeout(timer)
  }

  /** Resolves when it exits, with what it logged. */
  async exited (): Promise<string> {
    await this.#exited
    return this.#log
  }
}

/**
 * Starts a PgBouncer with pool_mode = transaction on a free port of
 * 127.0.0.1; it is stopped and its directory removed at teardown (and
 * stopped by a watchdog if the test process dies first). Call only when
 * findPgBouncer() found one.
 */
export async function startPgBouncer (t: Test, o: PgBouncerOptions = {}): Promise<PgBouncer> {
  const binary = findPgBouncer()
  if (binary === undefined) throw new Error('pgbouncer is not installed (apt-get install pgbouncer)')
  const dir = await mkdtemp(path.join(tmpdir(), 'fastify-dbos-pgbouncer-'))
  let bouncer: PgBouncer | undefined
  t.teardown(async () => {
    await bouncer?.stop()
    await rm(dir, { recursive: true, force: true })
  })
  // A free port can be taken between our look and PgBouncer's bind: try a few.
  for (let attempt = 1; ; attempt++) {
    bouncer = await startOnce(binary, dir, await freePort(), o)
    const ready = await untilReady(bouncer)
    if (ready === true) return bouncer
    await bouncer.stop()
    if (attempt === 3 || !/bind|in use/i.test(ready)) throw new Error(`pgbouncer did not start:\n${ready}`)
  }
}

async function startOnce (binary: string, dir: string, port: number, o: PgBouncerOptions): Promise<PgBouncer> {
  const server = new URL(o.serverUrl ?? databaseUrl)
  const dbname = decodeURIComponent(server.pathname.slice(1)) || 'postgres'
  const user = decodeURIComponent(server.username) || 'postgres'
  const login = [
    `host=${server.hostname}`, `port=${server.port || '5432'}`, `dbname=${plain(dbname)}`, `user=${plain(user)}`,
    ...(server.password === '' ? [] : [`password=${plain(decodeURIComponent(server.password))}`])
  ].join(' ')
  const ini = path.join(dir, 'pgbouncer.ini')
  await writeFile(ini, [
    '[databases]',
    `${plain(dbname)} = ${login}`,
    '[pgbouncer]',
    'listen_addr = 127.0.0.1',
    `listen_port = ${port}`,
    // No Unix socket: nothing to clean up, nothing to collide with.
    'unix_socket_dir =',
    'pool_mode = transaction',
    // Any client name logs in; PgBouncer logs in to the server as `user` above.
    'auth_type = any',
    `default_pool_size = ${o.poolSize ?? 10}`,
    'max_client_conn = 500',
    'log_connections = 0',
    'log_disconnections = 0',
    ...Object.entries(o.settings ?? {}).map(([key, value]) => `${plain(key)} = ${plain(String(value))}`),
    ''
  ].join('\n'), { mode: 0o600 })
  const runAs = await postgresUser()
  if (runAs !== undefined) {
    await chown(dir, runAs.uid, runAs.gid)
    await chown(ini, runAs.uid, runAs.gid)
    await chmod(dir, 0o700)
  }
  const child = spawn(binary, [ini], { ...runAs, cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] })
  child.on('error', () => {}) // reported through exit: untilReady sees it gone
  const url = new URL(`postgres://${encodeURIComponent(user)}@127.0.0.1:${port}/${encodeURIComponent(dbname)}`)
  return new PgBouncer(url.href, `postgres://pgbouncer@127.0.0.1:${port}/pgbouncer`, child)
}

/** true once the admin console answers; PgBouncer's log if it exited first or did not answer within 10 s. */
async function untilReady (bouncer: PgBouncer): Promise<true | string> {
  const deadline = Date.now() + 10_000
  for (;;) {
    if (!bouncer.running) return bouncer.exited()
    try {
      await bouncer.clients()
      return true
    } catch {}
    if (Date.now() > deadline) {
      await bouncer.stop()
      return `no answer within 10 s\n${bouncer.log}`
    }
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}

/** A value for PgBouncer's config as it is: test servers' names and passwords need no quoting. */
function plain (value: string): string {
  if (!/^[\w.-]+$/.test(value)) throw new Error(`startPgBouncer: ${JSON.stringify(value)} would need quoting in pgbouncer.ini; use a simpler name`)
  return value
}

function freePort (): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.on('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number }
      server.close(() => resolve(port))
    })
  })
}
