/**
 * The core of one execution of a workflow function: its step numbering, the
 * replay of recorded steps, the checkpoint writes it has issued and must
 * confirm before the next side effect, and the suspension a long sleep ends it
 * with. Each ctx operation (step.ts, transaction.ts, sleep.ts, ...) is built
 * from these few primitives; none of them needs to know how the run's start
 * is written (RunWrites: plain, or the first-step shortcut of opening.ts).
 */
import { deserialize, serializeError, serializeResult } from '../core/codec.js'
import { unstorableTextReason } from '../core/text.js'
import { LongTimer } from '../core/timers.js'
import { EngineStoppedError, InvalidStepNameError, NondeterminismError, WorkflowFencedError, WorkflowSuspendedError, WorkflowTimeoutError } from '../errors.js'
import type { Sql, Tables } from '../store/connect.js'
import type { StepRow, StepWrite } from '../store/rows.js'
import type { RunWrites } from '../writes/run-writes.js'
import type { WorkflowDefinition } from '../workflow.js'
import type { QueueDefinition } from '../queue.js'
import type { AnnouncementWatch } from '../core/announcements.js'

/** How a child started with `queue` is enqueued. */
export interface ChildEnqueue { queue: QueueDefinition, priority?: number, partitionKey?: string, delayMs?: number }

export interface RunDeps {
  /** For reads (a transaction's checkpoint, after a lost connection). */
  sql: Sql
  /** Only for ctx.transaction's sql.begin (see Pools in store/connect.ts). */
  transactions: Sql
  tables: Tables
  /** Aborted when the engine stops: retry sleeps end and no more writes happen. */
  signal: AbortSignal
  /** Sleeps with at most this long left wait in memory; longer ones suspend the workflow. */
  sleepInMemoryMaxMs: number
  /** Milliseconds since the epoch by the database's clock (core/clock.ts): wake-up times are judged by it. */
  now (): number
  /**
   * Records that a run suspends until `wakeAt` (its sleep's checkpoint is
   * durable already). Throws DBOS_ERR_WORKFLOW_FENCED if the run no longer
   * owns the workflow.
   */
  suspend (workflowId: string, epoch: string, wakeAt: number): Promise<void>
  /** The run's deadline passed: cancels the workflow (and its children) in the database, and stops this run. Never rejects. */
  timedOut (workflowId: string, epoch: string): Promise<void>
  /** Resolves when a message to this workflow is announced, or after `ms` (a poll); never rejects. */
  watchMessages (workflowId: string): AnnouncementWatch
  /**
   * After a recv suspended the workflow until `wakeAt` (its timeout): the
   * wake-up timer is armed for it, and the workflow claimed again at once if
   * a message came meanwhile.
   */
  recvSuspended (workflowId: string, wakeAt: number): void
  /** Starts a child workflow (idempotent: its id is deterministic). */
  startChild (def: WorkflowDefinition<any, any>, input: unknown, o: { workflowId: string, parentId: string, requestId: string | null, enqueue?: ChildEnqueue }): Promise<void>
  /** Another workflow's result (rejects with its error), as getResult. */
  resultOf (workflowId: string): Promise<unknown>
  /**
   * Undefined while this process's heartbeat is current. After a silence
   * (a freeze, a long pause, an unreachable database) a promise that settles
   * once a beat landed and the runs of workflows adopted meanwhile were
   * fenced off: a step or transaction awaits it before it begins.
   */
  heartbeatCurrent (): Promise<void> | undefined
}

/** A step's stored outcome: one of the two is set. */
export type Outcome = { output: string | null, error: string | null }

export class RunCore {
  readonly workflowId: string
  readonly requestId: string | null
  readonly epoch: string
  readonly deps: RunDeps
  readonly #writes: RunWrites
  /** State a ctx operation keeps for the run (stream offsets, say), by the operation's name. */
  readonly opState = new Map<string, unknown>()
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
  /** Set once the run must stop: it no longer owns the workflow (fence), or it was cancelled (cancel). */
  #stopped: Error | undefined
  #deadlineTimer: LongTimer | undefined
  /** The workflow's timeout, ms since the epoch by the database's clock (Infinity: none). */
  readonly deadline: number
  #expired = false
  /** Aborts this run's waits: on engine stop (deps.signal) and on fence(). Made on first use. */
  #abort: AbortController | undefined
  #unlinkStop: (() => void) | undefined

  constructor (deps: RunDeps, writes: RunWrites, workflowId: string, epoch: string, requestId: string | null, recorded: StepRow[] = [], deadline: Date | null = null) {
    this.deps = deps
    this.#writes = writes
    this.workflowId = workflowId
    this.epoch = epoch
    this.requestId = requestId
    this.#recorded = new Map(recorded.map((s) => [s.step_id, s]))
    this.deadline = deadline === null ? Infinity : deadline.getTime()
    if (deadline !== null) {
      this.#deadlineTimer = new LongTimer(Math.max(0, this.deadline - deps.now()), () => this.#expire())
    }
    // A start that cannot be written leaves no workflow (start() reports
    // why): the run must write nothing, and every later checkpoint wait
    // throws this.
    writes.startPending?.catch((err: unknown) => this.fail(err))
  }

  /** Why a checkpoint could not be written, if one could not: the run must not record an outcome. */
  get checkpointFailure (): unknown { return this.#checkpointFailure }
  /** Set once a sleep suspended the workflow: the run is over, and records nothing more. */
  get suspension (): Error | undefined { return this.#suspension }

  /** From now on the run records nothing: its outcome is abandoned, and every checkpoint wait throws `err`. */
  fail (err: unknown): void {
    this.#checkpointFailure ??= err
    const failed = Promise.reject(err)
    failed.catch(() => {}) // rejects again wherever it is awaited; never unhandled
    this.#unconfirmed.push(failed)
  }

  /**
   * The next step position. Taken synchronously by each ctx call, so that
   * calls started together (Promise.all) get positions in call order.
   */
  takeStepId (): number {
    return this.#nextStepId++
  }

  /** The position the next ctx call would take (ctx.patched decides whether it takes one). */
  peekStepId (): number {
    return this.#nextStepId
  }

  /** The recorded outcome of step `stepId` (throws a recorded error), or undefined when it has not run yet. */
  replay (stepId: number, name: string): { value: unknown } | undefined {
    const row = this.#recorded.get(stepId)
    if (row === undefined) return undefined
    this.#recorded.delete(stepId)
    if (row.name !== name) throw new NondeterminismError(this.workflowId, stepId, row.name, name)
    return { value: restore(row) }
  }

  /** The row recorded at `stepId`, if any, without consuming it (ctx.patched peeks). */
  peek (stepId: number): StepRow | undefined {
    return this.#recorded.get(stepId)
  }

  /** Throws the suspension once a sleep suspended the run: every ctx call after it throws it. */
  assertNotSuspended (): void {
    if (this.#suspension !== undefined) throw this.#suspension
  }

  /**
   * Throws once the run must not go on: it suspended, it was fenced off, the
   * engine is stopping, or its deadline passed.
   */
  assertRunning (): void {
    if (this.#suspension !== undefined) throw this.#suspension
    if (this.#stopped === undefined && this.deadline !== Infinity && this.deps.now() >= this.deadline) {
      // The deadline timer may not have fired yet (a busy event loop), or its
      // cancellation is still being written: no step begins past the deadline.
      this.#expire()
      this.#stop(new WorkflowTimeoutError(this.workflowId))
    }
    if (this.#stopped !== undefined) throw this.#stopped
    if (this.deps.signal.aborted) throw new EngineStoppedError(this.workflowId)
  }

  /**
   * Past its deadline the workflow is cancelled: in the database (for every
   * instance and its children) and here. Recorded first, so that a caller
   * told of the timeout finds it in getStatus; the run stops either way (the
   * engine stops it once the cancellation is written, or here if it could
   * not be). Once.
   */
  #expire (): void {
    if (this.#expired) return
    this.#expired = true
    this.#deadlineTimer?.clear()
    void this.deps.timedOut(this.workflowId, this.epoch).finally(() => this.cancel(new WorkflowTimeoutError(this.workflowId)))
  }

  /**
   * Aborted when the engine stops or the run is fenced off: what its retry
   * waits and in-memory sleeps listen to.
   */
  get signal (): AbortSignal {
    if (this.#abort === undefined) {
      const abort = this.#abort = new AbortController()
      if (this.#stopped !== undefined) abort.abort(this.#stopped)
      else if (this.deps.signal.aborted) abort.abort(new EngineStoppedError(this.workflowId))
      else {
        const stop = (): void => abort.abort(new EngineStoppedError(this.workflowId))
        this.deps.signal.addEventListener('abort', stop, { once: true })
        this.#unlinkStop = () => this.deps.signal.removeEventListener('abort', stop)
      }
    }
    return this.#abort.signal
  }

  /**
   * The workflow is no longer this run's (another process adopted it): every
   * ctx call from now on throws DBOS_ERR_WORKFLOW_FENCED, waits end, and the
   * run records nothing (its writes would be refused by the epoch anyway).
   */
  fence (): void {
    this.#stop(new WorkflowFencedError(this.workflowId))
  }

  /**
   * The workflow was cancelled (cancel(), its timeout, its parent's): as
   * fence, with `reason` as what every later ctx call throws and the signal
   * a running step receives carries.
   */
  cancel (reason: Error): void {
    this.#stop(reason)
  }

  /** Why the run was stopped from outside (fenced off, cancelled), if it was. */
  get stopped (): Error | undefined { return this.#stopped }

  #stop (reason: Error): void {
    if (this.#stopped !== undefined) return
    this.#stopped = reason
    // Stopped: its deadline is no longer its to enforce (a resume may have
    // started a run of its own meanwhile, with no deadline).
    this.#deadlineTimer?.clear()
    this.fail(reason)
    this.#abort?.abort(reason)
  }

  /** The run ended: it stops listening for the engine's stop, and its deadline. */
  dispose (): void {
    this.#unlinkStop?.()
    this.#unlinkStop = undefined
    this.#deadlineTimer?.clear()
  }

  /**
   * Issues a step's checkpoint write; confirmCheckpoints waits for it before
   * the next side effect. `startedAt`: when the step began (default now).
   */
  issueWrite (stepId: number, name: string, outcome: Outcome, startedAt?: Date): void {
    const row: StepWrite = { workflowId: this.workflowId, epoch: this.epoch, stepId, name, ...outcome, startedAt: startedAt ?? this.startTime() }
    const write = this.#writes.step(row)
    // Surfaced by confirmCheckpoints; remembered so that workflow code that
    // catches it cannot carry on as if the step had been recorded.
    write.catch((err) => { this.#checkpointFailure ??= err })
    this.#unconfirmed.push(write)
  }

  /** Now, by the database's clock as this process reads it: when a step begins. */
  startTime (): Date {
    return new Date(this.deps.now())
  }

  /** Resolves once this run's start is durable, writing it alone now if no checkpoint carried it yet. */
  ensureStarted (): Promise<void> {
    return this.#writes.started()
  }

  /**
   * Waits until the start and every step checkpoint issued so far are
   * durable; throws if one was fenced off or could not be written.
   */
  async confirmCheckpoints (): Promise<void> {
    await this.ensureStarted()
    await this.confirmIssued()
  }

  /** confirmCheckpoints, but leaves an unwritten start for the next checkpoint to carry. */
  async confirmIssued (): Promise<void> {
    // Await a snapshot and only then drop it: clearing first would let a
    // parallel step (Promise.all) find the list empty and run its side effect
    // while an earlier step's write is still in flight.
    for (let pending = this.#unconfirmed; pending.length > 0; pending = this.#unconfirmed) {
      await Promise.all(pending)
      this.#unconfirmed = this.#unconfirmed.filter((p) => !pending.includes(p))
    }
  }

  /**
   * Before a step or transaction records its outcome: if a sleep beside it is
   * recording a suspension, wait for that, and throw the suspension once it
   * is recorded. Once wake_at is written the workflow may be woken at once; a
   * checkpoint of ours landing after the woken run read its checkpoints would
   * contradict the result that run computed, and fence it off although it
   * owns the workflow. Awaits nothing when no sleep is suspending, so that
   * the common case costs no extra turn.
   */
  settleSuspension (): Promise<void> | undefined {
    if (this.#suspending === undefined && this.#suspension === undefined) return undefined
    return (async () => {
      while (this.#suspending !== undefined && this.#suspension === undefined) await this.#suspending
      if (this.#suspension !== undefined) throw this.#suspension
    })()
  }

  /**
   * Ends this run until `wakeAt`. The sleep's checkpoint must be durable first:
   * a wake-up (or a recovery) replays it and so sleeps only what is left. Then
   * wake_at is recorded under this run's epoch, and the signal thrown here
   * unwinds the workflow function; from then on every ctx call throws it.
   */
  async suspend (wakeAt: number): Promise<never> {
    await this.suspendWith(wakeAt, async () => {
      // Woken by its deadline if that is earlier, to be cancelled then.
      await this.deps.suspend(this.workflowId, this.epoch, Math.min(wakeAt, this.deadline))
      return true
    })
    throw this.#suspension
  }

  /**
   * suspend(), with `write` recording the suspension (ctx.recv's waits for a
   * message too). `write` may find there is nothing to wait for after all
   * (false): then the run goes on and this returns.
   */
  async suspendWith (wakeAt: number, write: () => Promise<boolean>): Promise<void> {
    let settle!: () => void
    const suspending = new Promise<void>((resolve) => { settle = resolve })
    // Steps finishing from now on hold their writes (see settleSuspension):
    // the ones issued before are what confirmCheckpoints waits for.
    this.#suspending = suspending
    try {
      await this.confirmCheckpoints()
      if (await write()) this.#suspension ??= new WorkflowSuspendedError(this.workflowId, new Date(wakeAt).toISOString())
    } catch (err) {
      // As for a refused checkpoint: even if the code catches this, the run must not record an outcome.
      this.#checkpointFailure ??= err
      throw err
    } finally {
      if (this.#suspending === suspending) this.#suspending = undefined
      settle()
    }
    if (this.#suspension !== undefined) throw this.#suspension
  }
}

/**
 * Refused before the call takes a step id, so that a bad name leaves no trace
 * in the numbering and fails the same way on every run: a name that Postgres
 * cannot store as it is would fail every replay (NONDETERMINISM) or every
 * write, leaving a workflow that never finishes.
 */
export function checkStepName (name: unknown): void {
  if (typeof name !== 'string') throw new InvalidStepNameError(`must be a string, got ${typeof name}`)
  const bad = unstorableTextReason(name)
  if (bad !== undefined) throw new InvalidStepNameError(`${JSON.stringify(name)} ${bad}`)
}

/** A recorded outcome: its value, or its error thrown. */
export function restore (row: Pick<StepRow, 'output' | 'error'>): unknown {
  if (row.error !== null) throw deserialize(row.error)
  return deserialize(row.output!)
}

/** A result that cannot be stored becomes the step's error (a 500: it is the code's fault, and retrying cannot help). */
export function encodeResult (value: unknown, what: string): Outcome & { thrown?: unknown } {
  try {
    return { output: serializeResult(value, what), error: null }
  } catch (thrown) {
    return { output: null, error: serializeError(thrown), thrown }
  }
}
