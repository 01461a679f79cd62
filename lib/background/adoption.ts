/**
 * Adoption: a live instance takes over the PENDING workflows of dead ones
 * (stopped, or silent for longer than their lease) and of work handed off
 * on purpose, in bounded batches shared with the other living instances,
 * then resumes them as a recovery would: from their last checkpoint, with an
 * attempt counted (maxRecoveryAttempts holds), and the crash-loop rules of
 * recovery.ts. Sleeping ones wake on the new owner at their original time.
 */
import type { Logger } from '../core/logger.js'
import { adoptWorkflows } from '../store/adoption.js'
import type { Sql, Tables } from '../store/connect.js'
import { forgetDead } from '../store/executors.js'
import { isConnectionError } from '../store/pg-errors.js'

/** Most workflows one adoption statement takes. */
const MAX_BATCH = 100

export interface AdoptionDeps {
  sql: Sql
  tables: Tables
  logger: Logger
  signal: AbortSignal
  executorId (): string
  appVersion: string | null
  /** Names of the registered definitions: only those are adopted. */
  names (): string[]
  /** Runs what was adopted: a recovery pass over this executor's work, and the wake-up scheduler's look. */
  adopted (): Promise<void>
}

/**
 * Adopts what the `dead` executors left, batch by batch, until nothing more
 * is there for this instance; resolves with how many it took.
 */
export async function adopt (deps: AdoptionDeps, dead: string[]): Promise<number> {
  let total = 0
  for (;;) {
    if (deps.signal.aborted) break
    let taken: number
    try {
      taken = await adoptWorkflows(deps.sql, deps.tables, dead, {
        executorId: deps.executorId(), names: deps.names(), appVersion: deps.appVersion, maxBatch: MAX_BATCH
      })
    } catch (err) {
      // It may have committed before its answer was lost: what it took is
      // this executor's now, and the next pass finds nothing to take. A
      // recovery pass (retried until the database answers) resumes it.
      if (isConnectionError(err)) await deps.adopted()
      throw err
    }
    total += taken
    if (taken > 0) {
      deps.logger.info({ event: 'adoption.adopted', count: taken, from: dead }, 'adopted the PENDING workflows of executors that are gone')
      // Resumed batch by batch, so the first adopted workflow runs at once.
      await deps.adopted()
    }
    // A short batch: the rest is another instance's share, or there is none.
    if (taken < MAX_BATCH) break
  }
  await forgetDead(deps.sql, deps.tables, dead)
  return total
}
