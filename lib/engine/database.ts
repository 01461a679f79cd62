/**
 * The engine's open database resources, opened together at start and closed
 * together at stop: the pools, the table names, the write paths, the result
 * waiters and the wake-up scheduler.
 */
import { Checkpoints } from '../writes/checkpoints.js'
import type { Logger } from '../core/logger.js'
import { ResultWaiters } from './results.js'
import { connectPools, endPools, openPools, tables, type Pools, type Sql, type Tables } from '../store/connect.js'
import { migrate } from '../store/migrate.js'
import { WakeUps, type WakeUpDeps } from '../background/wake-ups.js'

export interface Connected {
  /** For transactions and reads; the write paths have pools of their own. */
  sql: Sql
  pools: Pools
  tables: Tables
  checkpoints: Checkpoints
  results: ResultWaiters
  wakeUps: WakeUps
}

export interface DatabaseOptions {
  url: string
  poolSize: number
  schema: string
  logger: Logger
  /** Aborted when the engine stops: write retries end. */
  signal: AbortSignal
  /** What the wake-up scheduler needs from the engine. */
  wakeUps: Pick<WakeUpDeps, 'executorId' | 'inMemoryMaxMs' | 'resume' | 'names' | 'recover'>
}

/** Connects and applies pending migrations; closes what it opened if either fails. */
export async function openDatabase (o: DatabaseOptions): Promise<Connected> {
  const pools = connectPools(o.url, o.poolSize)
  const t = tables(pools.sql, o.schema)
  const checkpoints = new Checkpoints(pools, t, o.logger, o.signal)
  const db: Connected = {
    sql: pools.sql,
    pools,
    tables: t,
    checkpoints,
    results: new ResultWaiters(o.url, t.channel, o.logger),
    wakeUps: new WakeUps({ sql: pools.sql, checkpoints, tables: t, logger: o.logger, ...o.wakeUps })
  }
  try {
    await openPools(pools)
    const applied = await migrate(pools.sql, t)
    if (applied.length > 0) o.logger.info({ migrations: applied, schema: t.schema }, 'applied workflow database migrations')
  } catch (err) {
    await closeDatabase(db)
    throw err
  }
  return db
}

export async function closeDatabase (db: Connected): Promise<void> {
  await db.results.close()
  await endPools(db.pools)
}
