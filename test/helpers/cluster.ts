/**
 * A Postgres server of a test's own that can be stopped and started again on
 * the same port, for outage tests. Never the shared test database, even with
 * DATABASE_URL set.
 */
import { randomBytes } from 'node:crypto'
import { existsSync } from 'node:fs'
import { rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import path from 'node:path'
import type { Test } from 'tap'
import { startEmbeddedPostgres } from '../../lib/embedded/postgres.js'
import { silentLogger } from './db.js'

/**
 * One Postgres cluster that can be stopped and started again on the same port
 * (the app's connection string must stay valid).
 */
export class Cluster {
  readonly dataDir: string
  readonly url: string
  #stop: (() => Promise<void>) | undefined

  private constructor (dataDir: string, url: string, stop: () => Promise<void>) {
    this.dataDir = dataDir
    this.url = url
    this.#stop = stop
  }

  static async create (dataDir: string): Promise<Cluster> {
    const pg = await startEmbeddedPostgres(dataDir, silentLogger)
    return new Cluster(pg.dataDir, pg.url, () => pg.stop())
  }

  get running (): boolean { return this.#stop !== undefined }

  /** Fast shutdown. The signal is sent before this returns; the promise resolves once the server exited. */
  stop (): Promise<void> {
    const stop = this.#stop
    this.#stop = undefined
    return stop === undefined ? Promise.resolve() : stop()
  }

  /**
   * Blocks the event loop until the server is gone (it removes postmaster.pid
   * last). Lets a test take the database away at an exact point in the
   * engine's work, before any other callback runs.
   */
  waitUntilDownSync (): void {
    const pidFile = path.join(this.dataDir, 'postmaster.pid')
    const deadline = Date.now() + 30_000
    const pause = new Int32Array(new SharedArrayBuffer(4))
    while (existsSync(pidFile)) {
      if (Date.now() > deadline) throw new Error('Postgres did not stop within 30 s')
      Atomics.wait(pause, 0, 0, 10)
    }
  }

  async start (): Promise<void> {
    const pg = await startEmbeddedPostgres(this.dataDir, silentLogger, { port: Number(new URL(this.url).port) })
    this.#stop = () => pg.stop()
  }
}


/** A new cluster in a temporary directory, stopped and removed at teardown. */
export async function startCluster (t: Test): Promise<Cluster> {
  const dataDir = path.join(tmpdir(), `fastify-dbos-cluster-${randomBytes(6).toString('hex')}`)
  const cluster = await Cluster.create(dataDir)
  t.teardown(async () => {
    await cluster.stop()
    await rm(dataDir, { recursive: true, force: true })
    await rm(`${dataDir}.log`, { force: true })
  })
  return cluster
}
