/**
 * Where the embedded Postgres keeps things, and whether the `postgres` user
 * can reach them. Running as root, Postgres runs as that user, so its data
 * directory, the directories above it and its binaries must be open to
 * others; what is not goes under the shared directory instead.
 */
import { createHash } from 'node:crypto'
import { chmod, mkdir, stat } from 'node:fs/promises'
import { userInfo } from 'node:os'
import path from 'node:path'

export const runningAsRoot = (): boolean => userInfo().uid === 0

/**
 * Root-owned and open to others: the binaries copied for the postgres user,
 * and the default data directories of apps in directories it cannot enter.
 */
export function sharedDir (): string {
  return path.resolve(process.env.DBOS_EMBEDDED_SHARED_DIR || '/var/tmp/fastify-dbos')
}

/**
 * Where the default data directory goes: `.dbos/<name>` in the working
 * directory, or, when running as root from a directory the postgres user
 * cannot reach (say /root), `<shared dir>/<hash of the directory>/<name>`.
 */
export async function defaultDataDir (cwd = process.cwd(), name = 'pgdata'): Promise<string> {
  const preferred = path.join(cwd, '.dbos', name)
  if (!runningAsRoot() || await reachableByOthers(cwd)) return preferred
  return path.join(sharedDir(), createHash('sha256').update(cwd).digest('hex').slice(0, 16), name)
}

/** The first of `dir` and its ancestors that other users cannot enter, if any. */
export async function closedToOthers (dir: string): Promise<string | undefined> {
  for (let d = path.resolve(dir); ; d = path.dirname(d)) {
    const s = await stat(d).catch(() => undefined)
    if (s !== undefined && (s.mode & 0o001) === 0) return d
    if (path.dirname(d) === d) return undefined
  }
}

export async function reachableByOthers (dir: string): Promise<boolean> {
  return await closedToOthers(dir) === undefined
}

/**
 * mkdir -p. As root, the directories it creates are made 0755 whatever the
 * umask, so the postgres user can pass through them. Returns the first of
 * `dir` and its ancestors that others still cannot enter, if any: then
 * Postgres, running as that user, could not reach what is inside.
 */
export async function makeOpenDirs (dir: string): Promise<string | undefined> {
  const first = await mkdir(dir, { recursive: true })
  if (!runningAsRoot()) return undefined
  if (first !== undefined) {
    for (let d = dir; d.length >= first.length; d = path.dirname(d)) await chmod(d, 0o755)
  }
  return closedToOthers(dir)
}
