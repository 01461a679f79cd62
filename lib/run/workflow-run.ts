/**
 * One execution of a workflow function: the WorkflowContext it receives, with
 * replay of recorded steps and checkpointing of new ones.
 */
import type { Checkpoints } from '../writes/checkpoints.js'
import type { Opening } from '../writes/opening.js'
import { deserialize, serialize, serializeError, serializeResult } from '../core/codec.js'
import type { StepOptions, TransactionOptions, WorkflowContext } from '../context.js'
import { unstorableTextReason } from '../core/text.js'
import { EngineStoppedError, InvalidSleepDurationError, InvalidStepNameError, NondeterminismError, WorkflowFencedError, WorkflowSuspendedError } from '../errors.js'
import { retryDelay, retryWait, sleep } from '../core/retry.js'
import { ping, type Sql, type Tables, type TransactionSql } from '../store/connect.js'
import { DEADLOCK_DETECTED, isConnectionError, isDatabaseConnectionError, isDriverInternalError, SERIALIZATION_FAILURE, sqlState } from '../store/pg-errors.js'
import type { StepRow, StepWrite } from '../store/rows.js'
import { findStep, insertStepInTransaction } from '../store/steps.js'
import { inTransaction } from '../store/transaction.js'
import type { WakeUps } from '../background/wake-ups.js'

export interface RunDeps {
  /** For reads (a transaction's checkpoint, after a lost connection). */
  sql: Sql
  /** Only for ctx.transaction's sql.begin (see Pools in store/connect.ts). */
  transactions: Sql
  tables: Tables
  checkpoints: Checkpoints
  /** Aborted when the engine stops: retry sleeps end and no more writes happen. */
  signal: AbortSignal
  /** Decides which sleeps wait in memory, and records the ones that suspend. */
  wakeUps: Pick<WakeUps, 'inMemoryMaxMs' | 'suspend'>
}

const MAX_TRANSACTION_RETRIES = 10
/** The step name under which ctx.sleep records its wake-up time. */
const SLEEP_STEP = 'sleep'
/**
 * About 3,170 years: keeps every wake-up time within years 0 to 9999 for
 * millennia to come. A valid Date is not enough: postgres.js sends Dates as
 * toISOString(), which writes later years as "+010000-...", and Postgres
 * refuses that text, so a later wake-up time could never be recorded.
 */
const MAX_SLEEP_MS = 1e14

/**
 * Refused before the call takes a step id, so that a bad name leaves no trace
 * in the numbering and fails the same way on every run: a name that Postgres
 * cannot store as it is would fail every replay (NONDETERMINISM) or every
 * write, leaving a workflow that never finishes.
 */
function checkStepName (name: unknown): void {
  if (typeof name !== 'string') throw new InvalidStepNameError(`must be a string, got ${typeof name}`)
  const bad = unstorableTextReason(name)
  if (bad !== undefined) throw new InvalidStepNameError(`${JSON.stringify(name)} ${bad}`)
}

/** Thrown inside a transaction to roll it back when its checkpoint already exists or is fenced. */
class CheckpointNotWritten extends Error {}

type Outcome = { output: string | null, error: string | null }

export class WorkflowRun implements WorkflowContext {
  readonly workflowId: string
  readonly requestId: string | null
  readonly epoch: string
  readonly #deps: RunDeps
  readonly #recorded: Map<number, StepRow>
  #nextStepId = 0
  /**
   * Checkpoint writes issued but not yet confirmed. A step returns as soon as
   * its write is issued; the write must be durable before anything with side
   * effects happens next (the next step or transaction runs, or the outcome is
   * recorded). Code between steps is replayed on recovery anyway, so it may
   * run meanwhile; and the last step's write can share a statement with the
   * workflow's completion.
   */
  #unconfirmed: Promise<void>[] = []
  #checkpointFailure: unknown
  #suspension: InstanceType<typeof WorkflowSuspendedError> | undefined
  /** Settles once a sleep has recorded its suspension (or failed to): steps that finish meanwhile wait for it. */
  #suspending: Promise<void> | undefined
  /** This run's start, until it is durable: the first checkpoint takes it along (see opening.ts). */
  #opening: Opening | undefined

  /** Why a step's checkpoint could not be written, if one could not: the run must not record an outcome. */
  get checkpointFailure (): unknown { return this.#checkpointFailure }
  /** Set once a sleep suspended the workflow: the run is over, and records nothing more. */
  get suspension (): Error | undefined { return this.#suspension }

  constructor (deps: RunDeps, workflowId: string, epoch: string, requestId: string | null, recorded: StepRow[] = [], opening?: Opening) {
    this.#deps = deps
    this.workflowId = workflowId
    this.epoch = epoch
    this.requestId = requestId
    this.#recorded = new Map(recorded.map((s) => [s.step_id, s]))
    if (opening !== undefined) {
      this.#opening = opening
      opening.durable.then(() => { this.#opening = undefined }, (err) => {
        // No workflow was recorded (start() reports why): the run must write
        // nothing, and every later checkpoint wait throws this.
        this.#checkpointFailure ??= err
        this.#unconfirmed.push(opening.durable)
      })
    }
  }

  /**
   * Resolves once this run's start is durable, writing it alone now if no
   * checkpoint has taken it along yet (at once for a run whose start was
   * written before it was launched).
   */
  ensureStarted (): Promise<void> {
    return this.#opening?.alone() ?? Promise.resolve()
  }

  async step<T> (name: string, fn: () => T | Promise<T>, options: StepOptions = {}): Promise<T> {
    checkStepName(name)
    // Taken synchronously, so steps started together (Promise.all) get ids in call order.
    const stepId = this.#nextStepId++
    if (this.#suspension !== undefined) throw this.#suspension
    const replayed = this.#replay(stepId, name)
    if (replayed !== undefined) return replayed.value as T
    // Not the start: this step's checkpoint may carry it.
    await this.#confirmIssued()
    const attempt = await this.#attempt(fn, options)
    // Suspended meanwhile (a sleep in parallel): the run records nothing more; a wake-up runs the step again.
    if (this.#suspending !== undefined || this.#suspension !== undefined) await this.#settleSuspension()
    const outcome = attempt.ok
      ? this.#encodeResult(attempt.value, `the result of step ${JSON.stringify(name)}`)
      : { output: null, error: serializeError(attempt.error) }
    this.#issueWrite({ workflowId: this.workflowId, epoch: this.epoch, stepId, name, ...outcome })
    if (!attempt.ok) throw attempt.error
    if (outcome.error !== null) throw outcome.thrown
    // The stored form, not the original: a replay returns exactly this, so the
    // first run and a recovery see the same value (a class instance's toJSON,
    // -0, ... would otherwise differ between them).
    return deserialize(outcome.output!) as T
  }

  /** Runs a step's function, retrying per its policy; the last attempt's outcome counts. */
  async #attempt<T> (fn: () => T | Promise<T>, options: StepOptions): Promise<{ ok: true, value: T } | { ok: false, error: unknown }> {
    const maxAttempts = Math.max(1, options.retries?.maxAttempts ?? 1)
    for (let attempt = 1; ; attempt++) {
      this.#assertRunning()
      try {
        return { ok: true, value: await fn() }
      } catch (error) {
        if (attempt >= maxAttempts || error instanceof EngineStoppedError) return { ok: false, error }
        await sleep(retryDelay(options.retries!, attempt), this.#deps.signal)
      }
    }
  }

  /** A result that cannot be stored becomes the step's error (a 500: it is the code's fault, and retrying cannot help). */
  #encodeResult (value: unknown, what: string): Outcome & { thrown?: unknown } {
    try {
      return { output: serializeResult(value, what), error: null }
    } catch (thrown) {
      return { output: null, error: serializeError(thrown), thrown }
    }
  }

  /** Issues a step's checkpoint write; confirmCheckpoints waits for it before the next side effect. */
  #issueWrite (row: StepWrite): void {
    const opening = this.#opening
    if (opening?.open === true) {
      this.#track(opening.withStep(row))
      return
    }
    // While the start is being written, checkpoints wait for it: their rows join the workflow's.
    const recorded = opening === undefined
      ? this.#deps.checkpoints.recordStep(row)
      : opening.durable.then(() => this.#deps.checkpoints.recordStep(row))
    this.#track(recorded.then((result) => {
      // Already recorded: fine if it is our own write whose answer was lost
      // (same outcome); anything else means another run owns this workflow.
      if (!result.written && (result.recorded.output !== row.output || result.recorded.error !== row.error)) {
        throw new WorkflowFencedError(this.workflowId)
      }
    }))
  }

  #track (write: Promise<void>): void {
    // Surfaced by confirmCheckpoints; remembered so that workflow code that
    // catches it cannot carry on as if the step had been recorded.
    write.catch((err) => { this.#checkpointFailure ??= err })
    this.#unconfirmed.push(write)
  }

  async transaction<T> (name: string, fn: (sql: TransactionSql) => Promise<T>, options: TransactionOptions = {}): Promise<T> {
    checkStepName(name)
    const stepId = this.#nextStepId++
    if (this.#suspension !== undefined) throw this.#suspension
    const replayed = this.#replay(stepId, name)
    if (replayed !== undefined) return replayed.value as T
    await this.confirmCheckpoints()
    for (let attempt = 1; ; attempt++) {
      this.#assertRunning()
      try {
        if (attempt > 1) {
          // The last attempt's COMMIT may have landed before its connection
          // died: then the checkpoint is there, and running again would repeat
          // the transaction's writes.
          const committed = await findStep(this.#deps.sql, this.#deps.tables, this.workflowId, stepId)
          if (committed !== undefined) return this.#restore(committed) as T
        }
        return await inTransaction(this.#deps.transactions, options.isolationLevel, (tx) => this.#transactionBody(tx, stepId, name, fn))
      } catch (err) {
        if (this.#suspension !== undefined) throw this.#suspension
        if (err instanceof CheckpointNotWritten) return this.#recordedElsewhere(stepId) as T
        if (isDriverInternalError(err) && attempt >= MAX_TRANSACTION_RETRIES) {
          // Not the transaction's outcome: the run stops without recording
          // one, and the workflow stays PENDING for a recovery to run it again.
          this.#checkpointFailure ??= err
          throw err
        }
        if (!await this.#retryableInTransaction(err, attempt)) {
          // The transaction rolled back: its error is the step's outcome.
          this.#issueWrite({ workflowId: this.workflowId, epoch: this.epoch, stepId, name, output: null, error: serializeError(err) })
          throw err
        }
        // After a lost connection the commit may or may not have happened: the
        // next attempt looks for the checkpoint before running anything.
        await sleep(retryWait(attempt), this.#deps.signal)
      }
    }
  }

  /**
   * Serialization failures and deadlocks are retried a few times; losing the
   * database is waited out. A network error the user's code got from some
   * other service only counts as ours if our database is unreachable too.
   */
  async #retryableInTransaction (err: unknown, attempt: number): Promise<boolean> {
    if ([SERIALIZATION_FAILURE, DEADLOCK_DETECTED].includes(sqlState(err) ?? '')) return attempt < MAX_TRANSACTION_RETRIES
    if (isDriverInternalError(err)) return true
    if (isDatabaseConnectionError(err)) return true
    if (!isConnectionError(err)) return false
    // postgres.js marks the errors of its queries with the query text; a
    // refused connect names its address. Otherwise: ours if ours is down.
    if (Object.hasOwn(err as object, 'query')) return true
    const port = (err as { port?: unknown }).port
    if (typeof port === 'number') return this.#deps.transactions.options.port.includes(port)
    return !await ping(this.#deps.sql)
  }

  /** Inside the transaction: the user's function, then its checkpoint, committed together. */
  async #transactionBody<T> (tx: TransactionSql, stepId: number, name: string, fn: (sql: TransactionSql) => Promise<T>): Promise<T> {
    const value = await fn(tx)
    // Rolls back: a suspended run commits nothing more.
    if (this.#suspending !== undefined || this.#suspension !== undefined) await this.#settleSuspension()
    const outcome = this.#encodeResult(value, `the result of transaction ${JSON.stringify(name)}`)
    if (outcome.error !== null) throw outcome.thrown
    const row = { workflowId: this.workflowId, epoch: this.epoch, stepId, name, output: outcome.output, error: null }
    if (!await insertStepInTransaction(tx, this.#deps.tables, row)) throw new CheckpointNotWritten()
    // The stored form, as for steps: what a replay returns.
    return deserialize(outcome.output!) as T
  }

  async sleep (ms: number): Promise<void> {
    // Refused before taking a step id, so a bad call leaves no trace in the numbering.
    if (typeof ms !== 'number' || !(ms >= 0 && ms <= MAX_SLEEP_MS)) throw new InvalidSleepDurationError(String(ms))
    const stepId = this.#nextStepId++
    this.#assertRunning()
    const wakeAt = this.#wakeAt(stepId, ms)
    const remaining = wakeAt - Date.now()
    if (remaining <= 0) return
    if (remaining > this.#deps.wakeUps.inMemoryMaxMs) return this.#suspend(wakeAt)
    await sleep(remaining, this.#deps.signal)
    this.#assertRunning()
  }

  /** The wake-up time recorded for sleep `stepId`, or a new one, checkpointed like a step result. */
  #wakeAt (stepId: number, ms: number): number {
    const replayed = this.#replay(stepId, SLEEP_STEP)
    if (replayed !== undefined) {
      // A step the code named "sleep" where it now sleeps: not the same call.
      if (typeof replayed.value !== 'number') throw new NondeterminismError(this.workflowId, stepId, 'a step named sleep', SLEEP_STEP)
      return replayed.value
    }
    const wakeAt = Date.now() + Math.ceil(ms)
    this.#issueWrite({ workflowId: this.workflowId, epoch: this.epoch, stepId, name: SLEEP_STEP, output: serialize(wakeAt), error: null })
    return wakeAt
  }

  /**
   * Ends this run until `wakeAt`. The sleep's checkpoint must be durable first:
   * a wake-up (or a recovery) replays it and so sleeps only what is left. Then
   * wake_at is recorded under this run's epoch, and the signal thrown here
   * unwinds the workflow function; from then on every ctx call throws it.
   */
  async #suspend (wakeAt: number): Promise<never> {
    let settle!: () => void
    const suspending = new Promise<void>((resolve) => { settle = resolve })
    // Steps finishing from now on hold their writes (see step): the ones
    // issued before are what confirmCheckpoints waits for.
    this.#suspending = suspending
    try {
      await this.confirmCheckpoints()
      await this.#deps.wakeUps.suspend(this.workflowId, this.epoch, wakeAt)
      this.#suspension ??= new WorkflowSuspendedError(this.workflowId, new Date(wakeAt).toISOString())
    } catch (err) {
      // As for a refused checkpoint: even if the code catches this, the run must not record an outcome.
      this.#checkpointFailure ??= err
      throw err
    } finally {
      if (this.#suspending === suspending) this.#suspending = undefined
      settle()
    }
    throw this.#suspension
  }

  /**
   * Before a step or transaction records its outcome: if a sleep beside it is
   * recording a suspension, wait for that, and throw the suspension once it
   * is recorded. Once wake_at is written the workflow may be woken at once; a
   * checkpoint of ours landing after the woken run read its checkpoints would
   * contradict the result that run computed, and fence it off although it
   * owns the workflow. Called only when either is set, so that the common
   * case (no sleep beside the step) costs no extra await.
   */
  async #settleSuspension (): Promise<void> {
    while (this.#suspending !== undefined && this.#suspension === undefined) await this.#suspending
    if (this.#suspension !== undefined) throw this.#suspension
  }

  /**
   * Waits until the start and every step checkpoint issued so far are
   * durable; throws if one was fenced off or could not be written.
   */
  async confirmCheckpoints (): Promise<void> {
    await this.ensureStarted()
    await this.#confirmIssued()
  }

  /** confirmCheckpoints, but leaves an unwritten start for the next checkpoint to carry. */
  async #confirmIssued (): Promise<void> {
    // Await a snapshot and only then drop it: clearing first would let a
    // parallel step (Promise.all) find the list empty and run its side effect
    // while an earlier step's write is still in flight.
    for (let pending = this.#unconfirmed; pending.length > 0; pending = this.#unconfirmed) {
      await Promise.all(pending)
      this.#unconfirmed = this.#unconfirmed.filter((p) => !pending.includes(p))
    }
  }

  /** The recorded outcome of step `stepId` (throws a recorded error), or undefined when it has not run yet. */
  #replay (stepId: number, name: string): { value: unknown } | undefined {
    const row = this.#recorded.get(stepId)
    if (row === undefined) return undefined
    this.#recorded.delete(stepId)
    if (row.name !== name) throw new NondeterminismError(this.workflowId, stepId, row.name, name)
    return { value: this.#restore(row) }
  }

  #restore (row: StepRow): unknown {
    if (row.error !== null) throw deserialize(row.error)
    return deserialize(row.output!)
  }

  async #recordedElsewhere (stepId: number): Promise<unknown> {
    const row = await findStep(this.#deps.sql, this.#deps.tables, this.workflowId, stepId)
    if (row === undefined) throw new WorkflowFencedError(this.workflowId)
    return this.#restore(row)
  }

  #assertRunning (): void {
    if (this.#suspension !== undefined) throw this.#suspension
    if (this.#deps.signal.aborted) throw new EngineStoppedError(this.workflowId)
  }
}
