/**
 * The engine's connections, opened together at start (with pending
 * migrations applied) and closed together at stop.
 */
import type { Logger } from '../core/logger.js'
import { connectPools, endPools, openPools, tables, type Pools, type Tables } from '../store/connect.js'
import { migrate } from '../store/migrate.js'

export interface Database {
  pools: Pools
  tables: Tables
  close (): Promise<void>
}

/** Connects and applies pending migrations; closes what it opened if either fails. */
export async function openDatabase (o: { url: string, poolSize: number, schema: string, logger: Logger, transactionPooling: boolean }): Promise<Database> {
  const pools = connectPools(o.url, o.poolSize, { transactionPooling: o.transactionPooling })
  const db: Database = { pools, tables: tables(pools.sql, o.schema), close: () => endPools(pools) }
  try {
    await openPools(pools)
    const applied = await migrate(pools.sql, db.tables)
    if (applied.length > 0) o.logger.info({ event: 'migrations.applied', migrations: applied, schema: db.tables.schema }, 'applied workflow database migrations')
  } catch (err) {
    await db.close()
    throw err
  }
  return db
}
