/** What a running workflow sees: its id and the durable operations it may call. */
import type postgres from 'postgres'
import type { RetryPolicy } from './core/retry.js'
import type { QueueDefinition } from './queue.js'

/** The postgres.js transaction handle ctx.transaction passes to its function. */
export type TransactionSql = postgres.TransactionSql

export type IsolationLevel = 'read committed' | 'repeatable read' | 'serializable'

export interface StepOptions {
  /**
   * Retry the step when it throws. Only the outcome of the last attempt is
   * recorded; if every attempt fails, that error is recorded and thrown.
   */
  retries?: RetryPolicy
  /**
   * Each attempt may take at most this long: then its signal aborts and the
   * attempt fails with DBOS_ERR_STEP_TIMEOUT (retried per `retries`).
   */
  timeoutMs?: number
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
   * `fn` gets an AbortSignal that aborts on the step's timeout, when the
   * workflow is cancelled, and when the engine stops: pass it on (fetch, a
   * driver's query) so that work stops promptly.
   */
  step<T> (name: string, fn: (signal: AbortSignal) => T | Promise<T>, options?: StepOptions): Promise<T>
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
  /** The time (ms since the epoch) at the first run, recorded: the same on every replay. */
  now (): Promise<number>
  /** A random UUID made at the first run, recorded: the same on every replay. */
  randomUUID (): Promise<string>
  /**
   * The next message sent to this workflow on `topic` ('' by default), in
   * send order, each consumed exactly once; null once `timeoutMs` has
   * passed (default: wait as long as it takes). A long wait suspends the
   * workflow like a long sleep. See docs/Guides/messages.md.
   */
  recv<T = unknown> (topic?: string, options?: RecvOptions): Promise<T | null>
  /** Sends a message to another workflow, exactly once (also across replays). 404 / 409 as app.workflows.send. */
  send (workflowId: string, message: unknown, options?: SendOptions): Promise<void>
  /** Publishes `value` under `key` for getEvent (the latest value wins; every value is kept). */
  setEvent (key: string, value: unknown): Promise<void>
  /** Appends `value` to stream `key`, for readStream. */
  writeStream (key: string, value: unknown): Promise<void>
  /** Ends stream `key`: readers get what was written and then stop. */
  closeStream (key: string): Promise<void>
  /**
   * Starts a child workflow (its id: `<this id>-<position>` unless given)
   * and returns its handle; a replay never starts a second one.
   * `handle.getResult()` is recorded in this workflow.
   */
  startChild<I, O> (def: WorkflowDefinition<I, O>, input: I, options?: ChildOptions): Promise<ChildHandle<O>>
  /** startChild, then its result. */
  runChild<I, O> (def: WorkflowDefinition<I, O>, input: I, options?: ChildOptions): Promise<O>
}

export interface RecvOptions {
  /** Give up after this long and return null. Default: wait as long as it takes. */
  timeoutMs?: number
}

export interface SendOptions {
  /** '' (the default topic) when not given. */
  topic?: string
  /** A send with a key is delivered once, however often it is repeated (per destination workflow). */
  idempotencyKey?: string
}

export interface ChildOptions {
  /** The child's id. Default: `<parent id>-<position of the call>`. */
  workflowId?: string
  /**
   * Enqueue the child on this queue (one in the engine's `queues`) instead
   * of starting it at once: it waits its turn within the queue's limits, and
   * its timeout counts from when it is taken (a parent that times out or is
   * cancelled cancels it, waiting or running).
   */
  queue?: QueueDefinition
  /** With `queue`: as for enqueue. */
  priority?: number
  /** With `queue`: as for enqueue. */
  partitionKey?: string
  /** With `queue`: as for enqueue. */
  delayMs?: number
}

/** A child workflow, seen from its parent. */
export interface ChildHandle<O> {
  readonly workflowId: string
  /** Its result (throws its error), recorded in the parent: a replay does not wait again. */
  getResult (): Promise<O>
}

/** Workflow definitions (made with defineWorkflow, in workflow.ts). */
export interface WorkflowOptions {
  /**
   * How many times a crashed workflow is resumed before it is marked
   * MAX_RECOVERY_ATTEMPTS_EXCEEDED instead of being retried forever.
   * Defaults to the engine's `maxRecoveryAttempts`.
   */
  maxRecoveryAttempts?: number
  /** Default timeout of its workflows (see StartOptions.timeoutMs). */
  timeoutMs?: number
}

export type WorkflowFunction<I, O> = (ctx: WorkflowContext, input: I) => Promise<O>

export interface WorkflowDefinition<I = unknown, O = unknown> {
  readonly name: string
  readonly fn: WorkflowFunction<I, O>
  readonly options: Readonly<WorkflowOptions>
}
