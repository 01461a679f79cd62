/** What a running workflow sees: its id and the durable operations it may call. */
import type postgres from 'postgres'
import type { RetryPolicy } from './core/retry.js'

/** The postgres.js transaction handle ctx.transaction passes to its function. */
export type TransactionSql = postgres.TransactionSql

export type IsolationLevel = 'read committed' | 'repeatable read' | 'serializable'

export interface StepOptions {
  /**
   * Retry the step when it throws. Only the outcome of the last attempt is
   * recorded; if every attempt fails, that error is recorded and thrown.
   */
  retries?: RetryPolicy
}

export interface TransactionOptions {
  /** Default: Postgres's own default (read committed). */
  isolationLevel?: IsolationLevel
}

export interface WorkflowContext {
  readonly workflowId: string
  /** The dbos-request-id of the request that started this workflow, if any. */
  readonly requestId: string | null
  /**
   * Runs `fn` once and checkpoints its result (or final error). When the
   * workflow is resumed after a crash, a completed step returns its recorded
   * result without running. A step that ran but whose checkpoint did not commit
   * runs again: steps are at-least-once, so make their side effects idempotent.
   * Steps are identified by call order; run them in parallel with Promise.all.
   */
  step<T> (name: string, fn: () => T | Promise<T>, options?: StepOptions): Promise<T>
  /**
   * Runs `fn` in a Postgres transaction (on the engine's database) that also
   * writes the step's checkpoint, so its database writes happen exactly once.
   * Retried automatically on serialization failures and deadlocks.
   */
  transaction<T> (name: string, fn: (sql: TransactionSql) => Promise<T>, options?: TransactionOptions): Promise<T>
  /**
   * Sleeps durably for `ms` milliseconds. The wake-up time is checkpointed like
   * a step (at the next position in call order), so a workflow resumed after a
   * crash or restart sleeps only what is left, and not at all once it has
   * passed. Sleeps with at most `sleepInMemoryMaxMs` left wait in memory; longer
   * ones suspend the workflow: its run ends here, nothing of it stays in
   * memory, and at the wake-up time it is resumed by replay from the top
   * (completed steps return their recorded results). Let the error thrown to
   * unwind the run (DBOS_ERR_WORKFLOW_SUSPENDED) propagate.
   */
  sleep (ms: number): Promise<void>
  /**
   * For changing workflow code while runs started on the old code are in
   * flight: put the new part behind `if (await ctx.patched('my-change'))`.
   * True for runs that reach this point on the new code (the choice is
   * checkpointed like a step, so replays agree); false for runs that had
   * already gone past this point on the old code, which then replay their
   * recorded old path. Names are unique per change; keep the call (and the
   * old branch) until no run started before the change is left.
   */
  patched (name: string): Promise<boolean>
}
