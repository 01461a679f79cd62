/**
 * The workflows running in this process: each one's execution, the epoch it
 * holds, and what happens when it ends (outcome recorded, waiters woken, or
 * abandoned because the engine stopped or another run took over).
 */
import { deserialize, serializeError, serializeResult } from '../core/codec.js'
import type { Connected } from './database.js'
import { EngineStoppedError, WorkflowFencedError } from '../errors.js'
import type { LocalOutcome } from './results.js'
import type { Logger } from '../core/logger.js'
import type { Opening } from '../writes/opening.js'
import { WorkflowRun } from '../run/workflow-run.js'
import type { StepRow } from '../store/rows.js'
import { releaseWorkflows } from '../store/workflows.js'
import type { WorkflowDefinition } from '../workflow.js'

export type { LocalOutcome }

interface Entry {
  run: WorkflowRun
  outcome: Promise<LocalOutcome>
  /** Told the outcome when the run ends (getResult's watches; see results.ts). */
  listeners: Set<(outcome: LocalOutcome) => void>
}

export class LocalRuns {
  readonly #logger: Logger
  readonly #signal: AbortSignal
  /** The run of each workflow running here, with its outcome (the run holds its epoch). */
  readonly #running = new Map<string, Entry>()

  constructor (logger: Logger, signal: AbortSignal) {
    this.#logger = logger
    this.#signal = signal
  }

  get size (): number { return this.#running.size }
  has (workflowId: string): boolean { return this.#running.has(workflowId) }
  /**
   * If the workflow runs here: calls `listener` once with its run's outcome
   * and returns how to stop listening. A listener, not a reaction on the
   * outcome's promise: callers that stop waiting (timeouts) take theirs
   * away, so a long run does not collect one per caller.
   */
  subscribe (workflowId: string, listener: (outcome: LocalOutcome) => void): (() => void) | undefined {
    const entry = this.#running.get(workflowId)
    if (entry === undefined) return undefined
    entry.listeners.add(listener)
    return () => entry.listeners.delete(listener)
  }
  ids (): string[] { return [...this.#running.keys()] }
  /** Outcome listeners held (see subscribe). */
  get listeners (): number {
    let n = 0
    for (const entry of this.#running.values()) n += entry.listeners.size
    return n
  }
  outcomes (): Promise<LocalOutcome>[] { return [...this.#running.values()].map((r) => r.outcome) }
  /** Resolves once the workflow's start is durable, if it runs here (see WorkflowRun.ensureStarted); never rejects. */
  ensureStarted (workflowId: string): Promise<void> | undefined {
    return this.#running.get(workflowId)?.run.ensureStarted().catch(() => {})
  }

  /** Resolves once the workflow's run here ends (at once if it has none), after `ms`, or when `signal` aborts. */
  settled (workflowId: string, ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer)
        unsubscribe?.()
        signal.removeEventListener('abort', done)
        resolve()
      }
      const unsubscribe = this.subscribe(workflowId, done)
      const timer = setTimeout(done, ms)
      if (unsubscribe === undefined || signal.aborted) return done()
      signal.addEventListener('abort', done, { once: true })
    })
  }

  /** Runs a graceful stop hands back. Not suspended ones still unwinding: their workflow waits for its wake-up, not for a recovery. */
  held (): { workflowId: string, epoch: string }[] {
    return [...this.#running.values()].filter(({ run }) => run.suspension === undefined)
      .map(({ run }) => ({ workflowId: run.workflowId, epoch: run.epoch }))
  }

  /** Waits up to `timeoutMs` for the running workflows to finish (a graceful stop). */
  async settle (timeoutMs: number): Promise<void> {
    const running = this.outcomes()
    if (running.length === 0) return
    this.#logger.info({ count: running.length }, 'waiting for running workflows to finish')
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<void>((resolve) => { timer = setTimeout(resolve, timeoutMs) })
    await Promise.race([Promise.allSettled(running), timeout])
    clearTimeout(timer)
    if (this.#running.size > 0) {
      this.#logger.warn({ workflowIds: this.ids() },
        'shutdown timeout: leaving unfinished workflows PENDING; they resume on the next start')
    }
  }

  /**
   * Runs cut short by a graceful stop (see held) are not crashes: take their
   * attempt back so that restarts during a long workflow never count toward
   * maxRecoveryAttempts. Best effort; if the database is down they count.
   */
  async release (db: Connected, rows: { workflowId: string, epoch: string }[]): Promise<void> {
    if (rows.length === 0) return
    await releaseWorkflows(db.sql, db.tables, rows).catch((err) => {
      this.#logger.warn({ err }, 'could not release unfinished workflows; this shutdown counts as a recovery attempt')
    })
  }

  /** Runs a workflow here. With an `opening`, its start is not written yet: the run writes it (see opening.ts). */
  launch (db: Connected, def: WorkflowDefinition<any, any>, workflowId: string, epoch: string, input: unknown, requestId: string | null, steps?: StepRow[], opening?: Opening): void {
    const run = new WorkflowRun({ sql: db.sql, transactions: db.pools.transactions, tables: db.tables, checkpoints: db.checkpoints, signal: this.#signal, wakeUps: db.wakeUps },
      workflowId, epoch, requestId, steps, opening)
    const entry: Entry = { run, outcome: this.#execute(db, def, run, input), listeners: new Set() }
    this.#running.set(workflowId, entry)
    void entry.outcome.then((outcome) => {
      // A newer run of this workflow (woken or claimed while this one was
      // still unwinding) may have taken the slot: it is not ours to clear.
      if (this.#running.get(workflowId) === entry) this.#running.delete(workflowId)
      for (const listener of entry.listeners) listener(outcome)
      db.results.wake(workflowId)
    })
  }

  /** Runs the body and records its outcome; never rejects. */
  async #execute (db: Connected, def: WorkflowDefinition<any, any>, run: WorkflowRun, input: unknown): Promise<LocalOutcome> {
    const logger = this.#logger
    const workflowId = run.workflowId
    let local: LocalOutcome
    let output: string | null = null
    let error: string | null = null
    // The body starts once launch() has registered the run: its first lines
    // may look up their own workflow, whose start may not be written yet.
    await undefined
    try {
      const value = await def.fn(run, input)
      if (run.suspension !== undefined) return this.#suspended(run)
      output = serializeResult(value, `the output of workflow ${JSON.stringify(def.name)}`)
      // What every other caller of getResult gets back from the database.
      local = { ok: true, value: deserialize(output) }
    } catch (err) {
      // Suspended by a sleep: whatever the code did after that (say, caught the signal and threw something else) is not an outcome.
      if (run.suspension !== undefined) return this.#suspended(run)
      if (err instanceof EngineStoppedError || err instanceof WorkflowFencedError) return this.#abandoned(workflowId, err)
      error = serializeError(err)
      local = { ok: false, error: err }
    }
    // The outcome's UPDATE needs the workflow row: a run launched before its
    // start was written (a workflow without steps) writes it now. If it could
    // not be written, start() has reported why, and there is no workflow.
    const startFailure = await run.ensureStarted().then(() => undefined, (err: unknown) => err ?? new Error('start failed'))
    if (startFailure !== undefined) {
      logger.debug({ workflowId, err: startFailure }, 'the workflow could not be started; the run stopped')
      return { ok: false, error: startFailure }
    }
    if (run.checkpointFailure !== undefined) return this.#abandoned(workflowId, run.checkpointFailure)
    try {
      const written = await db.checkpoints.complete({
        workflowId, epoch: run.epoch, status: local.ok ? 'SUCCESS' : 'ERROR', output, error
      })
      // Usually already settled: the last step's write shared the completion's statement.
      await run.confirmCheckpoints()
      if (!written) return this.#abandoned(workflowId, new WorkflowFencedError(workflowId))
    } catch (err) {
      if (err instanceof EngineStoppedError || err instanceof WorkflowFencedError) return this.#abandoned(workflowId, err)
      logger.error({ err, workflowId }, 'could not record the outcome of a workflow; it stays PENDING')
      return { ok: false, error: err }
    }
    if (!local.ok) logger.debug({ workflowId, err: local.error }, 'workflow finished with an error')
    return local
  }

  /** The run ends without an outcome; the workflow stays PENDING with wake_at set, for the wake-up scheduler. */
  #suspended (run: WorkflowRun): LocalOutcome {
    this.#logger.debug({ workflowId: run.workflowId }, 'workflow suspended by a sleep; it resumes at its wake-up time')
    return { ok: false, error: run.suspension }
  }

  /** The run ends without an outcome: the workflow stays PENDING for whoever owns it now. */
  #abandoned (workflowId: string, err: unknown): LocalOutcome {
    if (err instanceof WorkflowFencedError) {
      this.#logger.warn({ workflowId }, 'workflow taken over by another run; this run stopped without writing')
    } else if (err instanceof EngineStoppedError) {
      this.#logger.info({ workflowId }, 'engine stopped before the workflow finished; it stays PENDING')
    } else {
      this.#logger.error({ err, workflowId }, 'a step checkpoint could not be written; the workflow stays PENDING and resumes on the next start (or when its start is retried)')
    }
    return { ok: false, error: err }
  }

}
