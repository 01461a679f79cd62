/**
 * Every public call answers 503 DBOS_ERR_DATABASE_UNAVAILABLE while the
 * database is unreachable, not the driver's raw error (which a Fastify app
 * would turn into a 500 without a code): the caller can tell "try again
 * later" from a bug. Reads have their own, stricter wrapper (client/queries.ts:
 * a timeout and one retry on a fresh connection); this one only translates,
 * because a write that failed on a dead connection may have committed, and
 * retrying it is the caller's decision (each of these writes is idempotent or
 * refuses a repeat with its own code).
 */
import { DatabaseUnavailableError } from '../errors.js'
import { isConnectionError } from './pg-errors.js'

export async function unavailableAs503<T> (call: () => Promise<T>): Promise<T> {
  try {
    return await call()
  } catch (err) {
    throw isConnectionError(err) ? new DatabaseUnavailableError({ cause: err }) : err
  }
}

/** The same for an async iterator: an outage between two values ends it with a 503. */
export async function * streamAs503<T> (values: () => AsyncGenerator<T, void, undefined>): AsyncGenerator<T, void, undefined> {
  try {
    yield * values()
  } catch (err) {
    throw isConnectionError(err) ? new DatabaseUnavailableError({ cause: err }) : err
  }
}
