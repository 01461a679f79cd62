/**
 * Adoption: a live instance takes over the PENDING workflows of dead ones
 * (stopped, or silent for longer than their lease) and of work handed off
 * on purpose, in bounded batches shared with the other living instances,
 * then resumes them as a recovery would: from their last checkpoint, with an
 * attempt counted (maxRecoveryAttempts holds), and the crash-loop rules of
 * recovery.ts. Sleeping ones wake on the new owner at their original time.
 */
import type { Logger } from '../core/logger.js'
import { adoptionShare, adoptWorkflows } from '../store/adoption.js'
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
 * Adopts this instance's share of what the `dead` executors left (their
 * PENDING work divided by the live executors, counted once at the start of
 * the pass), in batches of at most MAX_BATCH; resolves with how many it
 * took. The other live instances take theirs at their own beats, within one
 * heartbeat; what nobody took (an instance that died meanwhile, work this one
 * cannot run) is shared again at the next beat.
 */
export async function adopt (deps: AdoptionDeps, dead: string[]): Promise<{ taken: number, more: boolean }> {
  const { orphans, live } = await adoptionShare(deps.sql, deps.tables, dead)
  const share = Math.ceil(orphans / Math.max(1, live))
  let total = 0
  while (total < share && !deps.signal.aborted) {
    const limit = Math.min(MAX_BATCH, share - total)
    let taken: number
    try {
      taken = await adoptWorkflows(deps.sql, deps.tables, dead, {
        executorId: deps.executorId(), names: deps.names(), appVersion: deps.appVersion, limit
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
    // Less than asked for: nothing more here that this instance can take.
    if (taken < limit) return { taken: await forget(deps, dead, total), more: false }
  }
  // Its whole share taken: the others' shares were counted from fewer
  // orphans if they adopted first, so some may be left. Another pass soon.
  return { taken: await forget(deps, dead, total), more: total > 0 && !deps.signal.aborted }
}

async function forget (deps: AdoptionDeps, dead: string[], total: number): Promise<number> {
  await forgetDead(deps.sql, deps.tables, dead)
  return total
}
