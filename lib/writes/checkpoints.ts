/**
 * The engine's write paths: workflow starts, step checkpoints and completions,
 * each behind a Batcher so concurrent workflows share statements and commits.
 *
 * Durability is never traded for batching: a caller's promise resolves only
 * after the statement carrying its row has committed.
 *
 * Outages: a start fails fast with DBOS_ERR_DATABASE_UNAVAILABLE (503), since
 * a client is waiting for an answer; step and completion writes of running
 * workflows wait for the database to come back and retry, which is safe
 * because every write is idempotent (ON CONFLICT DO NOTHING, epoch-checked
 * UPDATE) even when an earlier attempt did commit before its answer was lost.
 */
import { Batcher } from '../core/batcher.js'
import { DatabaseUnavailableError, EngineStoppedError, ShuttingDownError } from '../errors.js'
import type { Logger } from '../core/logger.js'
import { untilReachable } from '../core/retry.js'
import type { Pools, Tables } from '../store/connect.js'
import { isConnectionError } from '../store/pg-errors.js'
import { stepKey, writeCheckpoints } from '../store/checkpoints.js'
import type { Completion, NewWorkflowRow, StartWithStep, StepWrite, Suspension } from '../store/rows.js'
import { findOwnStep } from '../store/steps.js'
import { suspendWorkflows } from '../store/wake-ups.js'
import { findExisting, insertWorkflows } from '../store/workflows.js'

export type StartResult =
  | { inserted: true, epoch: string, deadline: Date | null }
  /** `pendingOwner` is the existing row's executor while it is PENDING (undefined otherwise, or when it was inserted in this very batch). */
  | { inserted: false, name: string, inputHash: string, pendingOwner?: string }


type Write = { kind: 'step', row: StepWrite } | { kind: 'completion', row: Completion } | { kind: 'opening', row: StartWithStep }

const BATCH = { maxBatch: 1000, isolateOnError: (err: unknown) => !isConnectionError(err) }

/** A completion left out of its batch: a step write of its workflow failed meanwhile and is being retried (see complete). */
const HELD_BACK = Symbol('held back')

/** A workflow's completion depends on its own step (or opening) written before it: it must not commit without it. */
function completionAfterItsStep (later: Write, earlier: Write): boolean {
  if (later.kind !== 'completion' || earlier.kind === 'completion') return false
  const workflowId = earlier.kind === 'step' ? earlier.row.workflowId : earlier.row.start.workflowId
  return workflowId === later.row.workflowId
}

export class Checkpoints {
  readonly #pools: Pools
  readonly #t: Tables
  readonly #logger: Logger
  readonly #signal: AbortSignal
  readonly #starts: Batcher<NewWorkflowRow, StartResult>
  /** Steps and completions share statements: a last step and its completion usually go together. */
  readonly #writes: Batcher<Write, boolean | typeof HELD_BACK>
  /**
   * Suspensions by long sleeps, on the write connection too: 10,000 workflows
   * falling asleep at once share statements and commits instead of queueing
   * 10,000 commits on it.
   */
  readonly #suspends: Batcher<Suspension, boolean>
  /**
   * Step writes of each workflow that failed once and are being retried. Its
   * completion waits for them: retried independently, a completion could
   * commit before its last step's retry, which would then find the workflow
   * finished and be dropped.
   */
  readonly #stepsRetrying = new Map<string, Set<Promise<boolean>>>()
  #outageLogged = false
  /** The last write (or start) found the database unreachable, and none has reached it since. */
  #unreachable = false
  #onReachableAgain: (() => void) | undefined
  /** Recent commit latency (ms, moving average): how long an opening waits for its first step (writes/opening.ts). */
  #commitMs = 2

  constructor (pools: Pools, t: Tables, logger: Logger, signal: AbortSignal) {
    this.#pools = pools
    this.#t = t
    this.#logger = logger
    this.#signal = signal
    this.#starts = new Batcher((rows) => this.#flushStarts(rows), { ...BATCH, maxInFlight: pools.starts.options.max })
    // One write batch at a time: batches then commit in push order, so a
    // workflow's completion can never commit before its last step's row.
    // Under load a batch simply grows; one statement carries them all.
    this.#writes = new Batcher((rows) => this.#flushWrites(rows), { ...BATCH, maxInFlight: 1, dependsOn: completionAfterItsStep })
    this.#suspends = new Batcher(async (rows) => {
      const written = await suspendWorkflows(pools.writes, t, rows)
      return rows.map((r) => written.has(r.workflowId))
    }, { ...BATCH, maxInFlight: 1 })
  }

  /** Inserts a PENDING workflow, or reports the one already under that id. One attempt: 503 if the database is down. */
  start (row: NewWorkflowRow): Promise<StartResult> {
    return this.#once(() => this.#starts.push(row))
  }

  /**
   * Inserts a new workflow together with its first step checkpoint (see
   * writes/opening.ts); false if the id was taken. One attempt, like start().
   */
  startWithStep (row: StartWithStep): Promise<boolean> {
    // Only completions are ever held back.
    return this.#once(() => this.#writes.push({ kind: 'opening', row }) as Promise<boolean>)
  }

  /**
   * Nothing being written or queued, and the database reachable as far as we
   * know: a start may let its first step's checkpoint carry it (opening.ts).
   * Not during an outage, where every such start would run its first step
   * only to answer 503.
   */
  get quiet (): boolean { return this.#writes.idle && this.#starts.idle && !this.#unreachable }

  /** `fn` runs whenever a write reaches the database after one found it unreachable. */
  onReachableAgain (fn: () => void): void {
    this.#onReachableAgain = fn
  }

  /** Recent commit latency in milliseconds (a moving average of write round trips). */
  get commitMs (): number { return this.#commitMs }

  /** Records a step's outcome; throws DBOS_ERR_WORKFLOW_FENCED if the workflow is no longer ours. */
  /**
   * Records a step's outcome. True once it is durable: written now, or
   * found written under this run's epoch (an earlier try committed and its
   * answer was lost). False when the workflow is no longer this run's.
   */
  recordStep (row: StepWrite): Promise<boolean> {
    let retrying = false
    const written: Promise<boolean> = (async () => {
      const push = (): Promise<boolean> => this.#writes.push({ kind: 'step', row }) as Promise<boolean>
      if (await this.#persist(row.workflowId, push, () => {
        if (!retrying) this.#trackRetry(row.workflowId, written)
        retrying = true
      })) return true
      const own = await this.#persist(row.workflowId, () => findOwnStep(this.#pools.sql, this.#t, row.workflowId, row.epoch, row.stepId))
      return own !== undefined
    })()
    return written
  }

  #trackRetry (workflowId: string, write: Promise<boolean>): void {
    let retrying = this.#stepsRetrying.get(workflowId)
    if (retrying === undefined) this.#stepsRetrying.set(workflowId, retrying = new Set())
    retrying.add(write)
    const forget = (): void => {
      retrying.delete(write)
      if (retrying.size === 0 && this.#stepsRetrying.get(workflowId) === retrying) this.#stepsRetrying.delete(workflowId)
    }
    write.then(forget, forget)
  }

  /**
   * Records a final outcome; false if it was not ours to write (fenced, or
   * already final). Pushed after the workflow's last step write, it shares
   * its batch or follows it; a step write being retried is waited for first,
   * and if it is not written, neither is the completion.
   */
  complete (row: Completion): Promise<boolean> {
    return this.#persist(row.workflowId, async () => {
      for (;;) {
        const retrying = this.#stepsRetrying.get(row.workflowId)
        if (retrying !== undefined) {
          for (const step of await Promise.allSettled(retrying)) {
            if (step.status === 'rejected') throw step.reason
            if (!step.value) return false
          }
        }
        const written = await this.#writes.push({ kind: 'completion', row })
        if (written !== HELD_BACK) return written
      }
    })
  }

  /**
   * Records that a workflow sleeps until `row.wakeAt` (its sleep's checkpoint
   * must be durable already); false if it was not ours to write (fenced).
   */
  suspend (row: Suspension): Promise<boolean> {
    return this.#persist(row.workflowId, () => this.#suspends.push(row))
  }

  /** A start's write: one attempt (a client waits for the answer), 503 if the database is unreachable. */
  async #once<R> (write: () => Promise<R>): Promise<R> {
    if (this.#signal.aborted) throw new ShuttingDownError()
    try {
      const result = await write()
      this.#reached()
      return result
    } catch (err) {
      if (!isConnectionError(err)) throw err
      this.#unreachable = true
      throw new DatabaseUnavailableError({ cause: err })
    }
  }

  /**
   * Retries `write` while the database is unreachable, until it answers or the
   * engine stops (then the workflow stays PENDING for the next start).
   */
  async #persist<R> (workflowId: string, write: () => Promise<R>, onRetry?: () => void): Promise<R> {
    const result = await untilReachable(write, {
      signal: this.#signal,
      stopped: () => new EngineStoppedError(workflowId),
      unreachable: isConnectionError,
      onRetry: (err) => {
        onRetry?.()
        this.#unreachable = true
        if (this.#outageLogged) return
        this.#outageLogged = true
        this.#logger.warn({ event: 'database.unreachable', err, workflowId }, 'workflow database unreachable; running workflows wait and retry their checkpoints')
      }
    })
    this.#reached()
    if (this.#outageLogged) {
      this.#outageLogged = false
      this.#logger.info({ event: 'database.reachable', workflowId }, 'workflow database reachable again; checkpoint writes resumed')
    }
    return result
  }

  #reached (): void {
    if (!this.#unreachable) return
    this.#unreachable = false
    this.#onReachableAgain?.()
  }

  async drained (): Promise<void> {
    // Not suspensions: one may wait on a row lock the stop must not wait for;
    // whether or not it lands, the workflow's wake_at (set or not) says who
    // resumes it (see releaseWorkflows).
    await Promise.all([this.#starts.drained(), this.#writes.drained()])
  }

  async #flushStarts (rows: NewWorkflowRow[]): Promise<StartResult[]> {
    // The same id twice in one batch (concurrent idempotent requests): insert it
    // once; the others then see it as existing, exactly as if they came later.
    const unique = new Map<string, NewWorkflowRow>()
    for (const r of rows) if (!unique.has(r.workflowId)) unique.set(r.workflowId, r)
    // While no checkpoint write is in flight, use the write connection: the
    // new workflow's first checkpoint then follows on a backend that has just
    // worked, instead of one idle for a whole workflow (one at a time, an idle
    // backend answered each first statement about 0.25 ms later here). Under
    // load the writer is busy and starts keep to their own connections.
    const sql = this.#writes.idle ? this.#pools.writes : this.#pools.starts
    const inserted = new Map((await insertWorkflows(sql, this.#t, [...unique.values()]))
      .map((r) => [r.workflow_id, r]))
    const missing = [...unique.keys()].filter((id) => !inserted.has(id))
    const existing = new Map(missing.length === 0
      ? []
      : (await findExisting(sql, this.#t, missing)).map((r) => [r.workflow_id, r]))
    return rows.map((r): StartResult => {
      const row = inserted.get(r.workflowId)
      if (row !== undefined && unique.get(r.workflowId) === r) return { inserted: true, epoch: row.epoch, deadline: row.deadline_at }
      if (row !== undefined) return { inserted: false, name: unique.get(r.workflowId)!.name, inputHash: unique.get(r.workflowId)!.inputHash }
      const e = existing.get(r.workflowId)
      // Vanished between the two statements (deleted): report a mismatch rather than guess.
      if (e === undefined) return { inserted: false, name: '', inputHash: '' }
      return { inserted: false, name: e.name, inputHash: e.input_hash, pendingOwner: e.status === 'PENDING' ? e.executor_id : undefined }
    })
  }

  async #flushWrites (writes: Write[]): Promise<(boolean | typeof HELD_BACK)[]> {
    const began = performance.now()
    const steps: StepWrite[] = []
    const completions: Completion[] = []
    const openings: StartWithStep[] = []
    const held = new Set<Write>()
    for (const w of writes) {
      if (w.kind === 'step') steps.push(w.row)
      // Queued behind a batch that failed with its step in it: not before the step's retry.
      else if (w.kind === 'completion' && this.#stepsRetrying.has(w.row.workflowId)) held.add(w)
      else if (w.kind === 'completion') completions.push(w.row)
      else openings.push(w.row)
    }
    if (steps.length + completions.length + openings.length === 0) return writes.map(() => HELD_BACK)
    const written = await writeCheckpoints(this.#pools.writes, this.#t, steps, completions, openings)
    this.#commitMs = 0.8 * this.#commitMs + 0.2 * (performance.now() - began)
    return writes.map((w) => {
      if (held.has(w)) return HELD_BACK
      if (w.kind === 'completion') return written.completed.has(w.row.workflowId)
      // An opening is written when its step is: one statement inserts both.
      const step = w.kind === 'step' ? w.row : w.row.step
      return written.steps.has(stepKey(step.workflowId, step.stepId))
    })
  }
}
