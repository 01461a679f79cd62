/**
 * ctx.transaction: the user's function and the step's checkpoint in one
 * Postgres transaction, so its database writes commit exactly once.
 */
import { deserialize, serializeError } from '../core/codec.js'
import { retryWait, sleep } from '../core/retry.js'
import type { TransactionOptions } from '../context.js'
import { WorkflowFencedError } from '../errors.js'
import { ping, type TransactionSql } from '../store/connect.js'
import { DEADLOCK_DETECTED, isConnectionError, isDatabaseConnectionError, isDriverInternalError, SERIALIZATION_FAILURE, sqlState } from '../store/pg-errors.js'
import { findOwnStep, findStep, insertStepInTransaction } from '../store/steps.js'
import { inTransaction } from '../store/transaction.js'
import { checkStepName, encodeResult, restore, type RunCore } from './run-core.js'

const MAX_TRANSACTION_RETRIES = 10

/** Thrown inside a transaction to roll it back when its checkpoint already exists or is fenced. */
class CheckpointNotWritten extends Error {}

export async function transaction<T> (run: RunCore, name: string, fn: (sql: TransactionSql) => Promise<T>, options: TransactionOptions = {}): Promise<T> {
  checkStepName(name)
  const stepId = run.takeStepId()
  run.assertNotSuspended()
  const replayed = run.replay(stepId, name)
  if (replayed !== undefined) return replayed.value as T
  await run.confirmCheckpoints()
  const { deps } = run
  for (let attempt = 1; ; attempt++) {
    const current = deps.heartbeatCurrent()
    if (current !== undefined) await current
    run.assertRunning()
    try {
      if (attempt > 1) {
        // The last attempt's COMMIT may have landed before its connection
        // died: then the checkpoint is there, and running again would repeat
        // the transaction's writes.
        const committed = await findStep(deps.sql, deps.tables, run.workflowId, stepId)
        if (committed !== undefined) return restore(committed) as T
      }
      return await inTransaction(deps.transactions, options.isolationLevel, (tx) => body(run, tx, stepId, name, fn))
    } catch (err) {
      run.assertNotSuspended()
      if (err instanceof CheckpointNotWritten) return recordedBefore(run, stepId) as T
      if (isDriverInternalError(err) && attempt >= MAX_TRANSACTION_RETRIES) {
        // Not the transaction's outcome: the run stops without recording
        // one, and the workflow stays PENDING for a recovery to run it again.
        run.fail(err)
        throw err
      }
      if (!await retryable(run, err, attempt)) {
        // The transaction rolled back: its error is the step's outcome.
        run.issueWrite(stepId, name, { output: null, error: serializeError(err) })
        throw err
      }
      // After a lost connection the commit may or may not have happened: the
      // next attempt looks for the checkpoint before running anything.
      await sleep(retryWait(attempt), run.signal)
    }
  }
}

/**
 * Serialization failures and deadlocks are retried a few times; losing the
 * database is waited out. A network error the user's code got from some
 * other service only counts as ours if our database is unreachable too.
 */
async function retryable (run: RunCore, err: unknown, attempt: number): Promise<boolean> {
  if ([SERIALIZATION_FAILURE, DEADLOCK_DETECTED].includes(sqlState(err) ?? '')) return attempt < MAX_TRANSACTION_RETRIES
  if (isDriverInternalError(err)) return true
  if (isDatabaseConnectionError(err)) return true
  if (!isConnectionError(err)) return false
  // postgres.js marks the errors of its queries with the query text; a
  // refused connect names its address. Otherwise: ours if ours is down.
  if (Object.hasOwn(err as object, 'query')) return true
  const port = (err as { port?: unknown }).port
  if (typeof port === 'number') return run.deps.transactions.options.port.includes(port)
  return !await ping(run.deps.sql)
}

/** Inside the transaction: the user's function, then its checkpoint, committed together. */
async function body<T> (run: RunCore, tx: TransactionSql, stepId: number, name: string, fn: (sql: TransactionSql) => Promise<T>): Promise<T> {
  const startedAt = run.startTime()
  const value = await fn(tx)
  // Rolls back: a suspended run commits nothing more.
  const settling = run.settleSuspension()
  if (settling !== undefined) await settling
  const outcome = encodeResult(value, `the result of transaction ${JSON.stringify(name)}`)
  if (outcome.error !== null) throw outcome.thrown
  const row = { workflowId: run.workflowId, epoch: run.epoch, stepId, name, output: outcome.output, error: null, startedAt }
  if (!await insertStepInTransaction(tx, run.deps.tables, row)) throw new CheckpointNotWritten()
  // The stored form, as for steps: what a replay returns.
  return deserialize(outcome.output!) as T
}

/**
 * The checkpoint was there already. Judged by ownership: recorded while the
 * workflow is still this run's (an earlier attempt committed), its outcome
 * is this transaction's; otherwise another run owns the workflow now.
 */
async function recordedBefore (run: RunCore, stepId: number): Promise<unknown> {
  const row = await findOwnStep(run.deps.sql, run.deps.tables, run.workflowId, run.epoch, stepId)
  if (row === undefined) throw new WorkflowFencedError(run.workflowId)
  return restore(row)
}
