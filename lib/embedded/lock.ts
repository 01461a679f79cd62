/**
 * One process at a time owns a data directory: only the owner initialises it,
 * stops a Postgres a killed process left in it, and runs a server on it. Two
 * apps (or two `npm test` runs) started at once on one directory would
 * otherwise both run initdb into it, or the second would stop the first's
 * server as a leftover.
 *
 * The owner is named in `<dataDir>.lock` (its pid and start time). The file
 * appears whole or not at all: it is written under a temporary name and
 * hard-linked into place, and link() fails if the name exists, so of two
 * processes only one gets it. A lock whose process is gone (SIGKILL, a crash,
 * a reboot) is stale and taken over.
 */
import { randomBytes } from 'node:crypto'
import { readFileSync, unlinkSync } from 'node:fs'
import { link, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { setTimeout as sleep } from 'node:timers/promises'
import { EmbeddedPostgresError } from '../errors.js'
import { failure } from './failure.js'
import { isSameProcess, startTime } from './processes.js'

/** Takes the data directory's lock; the function returned gives it back (synchronous, for exit hooks). */
export async function lockDataDir (dataDir: string): Promise<() => void> {
  const lockFile = `${dataDir}.lock`
  const me = `${process.pid} ${startTime(process.pid)}\n`
  for (let attempt = 1; ; attempt++) {
    if (await tryCreate(lockFile, me)) return () => release(lockFile, me)
    const owner = await readFile(lockFile, 'utf8').catch(() => undefined)
    if (owner === undefined) continue // released meanwhile
    const [pid, started = ''] = owner.trim().split(' ')
    if (isSameProcess(Number(pid), started)) {
      const who = Number(pid) === process.pid ? 'another engine in this process' : `another process (pid ${pid})`
      throw new EmbeddedPostgresError('in-use', `the data directory ${dataDir} is in use by ${who}, see ${lockFile}: ` +
        'stop that one first, or give this one another embeddedDataDir')
    }
    if (attempt > 20) throw new EmbeddedPostgresError('in-use', `could not take over the stale lock ${lockFile}: delete it`)
    await breakStale(lockFile, owner)
  }
}

async function tryCreate (lockFile: string, content: string): Promise<boolean> {
  const temp = `${lockFile}.${process.pid}-${randomBytes(4).toString('hex')}`
  try {
    await writeFile(temp, content, { flag: 'wx' })
    await link(temp, lockFile)
    return true
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false
    throw failure('data-dir', `cannot create the lock file ${lockFile}`, err)
  } finally {
    await rm(temp, { force: true })
  }
}

/**
 * Removes `lockFile` if it still holds `stale`. Two processes may judge the
 * same lock stale at once; a second lock, `<lock>.break`, taken the same way,
 * makes the check-and-remove theirs one at a time, so neither removes the
 * lock the other has just taken. Whoever holds `.break` holds it for
 * microseconds; one older than 10 s was left by a process killed in between.
 */
async function breakStale (lockFile: string, stale: string): Promise<void> {
  const breaker = `${lockFile}.break`
  if (!await tryCreate(breaker, `${process.pid}\n`)) {
    const age = Date.now() - ((await stat(breaker).catch(() => undefined))?.mtimeMs ?? Date.now())
    if (age > 10_000) await rm(breaker, { force: true })
    await sleep(20)
    return
  }
  try {
    if (await readFile(lockFile, 'utf8').catch(() => undefined) === stale) await rm(lockFile, { force: true })
  } finally {
    await rm(breaker, { force: true })
  }
}

function release (lockFile: string, me: string): void {
  try {
    if (readFileSync(lockFile, 'utf8') === me) unlinkSync(lockFile)
  } catch {
    // Already gone; or unreadable, and then not ours to remove.
  }
}
