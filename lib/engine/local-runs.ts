/**
 * The workflows running in this process: each one's execution, the epoch it
 * holds, and what happens when it ends (outcome recorded, waiters woken, or
 * abandoned because the engine stopped or another run took over).
 */
import type { Logger } from '../core/logger.js'
import { execute, type ExecuteDeps, type LocalOutcome } from '../run/execute.js'
import { RunCore, type RunDeps } from '../run/run-core.js'
import type { StepRow } from '../store/rows.js'
import type { Checkpoints } from '../writes/checkpoints.js'
import { PlainWrites, type RunWrites } from '../writes/run-writes.js'
import type { WorkflowDefinition } from '../workflow.js'

export type { LocalOutcome }

export interface LocalRunDeps extends ExecuteDeps {
  /** What each run's core needs. */
  run: RunDeps
  checkpoints: Pick<Checkpoints, 'recordStep'>
  /** Aborted when the engine stops. */
  signal: AbortSignal
  /** Hands back workflows a graceful stop cut short, without counting their attempt. */
  release (rows: { workflowId: string, epoch: string }[]): Promise<void>
  /** A run ended (with or without an outcome): its result waiters look. */
  finished (workflowId: string): void
}

/** A run to launch: the workflow, the epoch it holds, and what it replays. */
export interface Launch {
  def: WorkflowDefinition<any, any>
  workflowId: string
  epoch: string
  /** The stored form of the input. */
  input: unknown
  requestId: string | null
  /** Recorded steps, replayed instead of run. */
  steps?: StepRow[]
  /** How its checkpoints are written (default: plainly; opening.ts: its start is not written yet). */
  writes?: RunWrites
  /** Its timeout: past it, the run is cancelled. */
  deadline?: Date | null
}

interface Entry {
  run: RunCore
  outcome: Promise<LocalOutcome>
  /** Told the outcome when the run ends (getResult's watches; see results.ts). */
  listeners: Set<(outcome: LocalOutcome) => void>
}

export class LocalRuns {
  readonly #deps: LocalRunDeps
  readonly #logger: Logger
  /** The run of each workflow running here, with its outcome (the run holds its epoch). */
  readonly #running = new Map<string, Entry>()

  constructor (deps: LocalRunDeps) {
    this.#deps = deps
    this.#logger = deps.logger
  }

  get size (): number { return this.#running.size }
  has (workflowId: string): boolean { return this.#running.has(workflowId) }
  /** The epoch the workflow's run here holds, if it runs here. */
  epochOf (workflowId: string): string | undefined { return this.#running.get(workflowId)?.run.epoch }
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
  /** Resolves once the workflow's start is durable, if it runs here (see RunCore.ensureStarted); never rejects. */
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

  /** Every run here, with the epoch it holds. */
  owned (): { workflowId: string, epoch: string }[] {
    return [...this.#running.values()].map(({ run }) => ({ workflowId: run.workflowId, epoch: run.epoch }))
  }

  /**
   * Stops the runs of workflows this process no longer owns: those in `lost`
   * (a run holding that epoch; a newer run of the workflow is left alone), or
   * all of them when `lost` is undefined. Each ends at its next ctx call
   * without writing anything. Returns their ids.
   */
  fence (lost?: { workflowId: string, epoch: string }[]): string[] {
    const fenced: string[] = []
    const which = lost === undefined ? undefined : new Set(lost.map((l) => `${l.epoch}:${l.workflowId}`))
    for (const { run } of this.#running.values()) {
      if (which !== undefined && !which.has(`${run.epoch}:${run.workflowId}`)) continue
      run.fence()
      fenced.push(run.workflowId)
    }
    return fenced
  }

  /**
   * Stops the runs here of these workflows, which were cancelled: each ends
   * at its next ctx call with `reason(id)`. Only a run at the cancelled epoch
   * or an older one: a cancel heard late (its notification) must not stop the
   * run a resume has started since.
   */
  cancel (cancelled: { workflowId: string, epoch: string }[], reason: (workflowId: string) => Error): void {
    for (const { workflowId, epoch } of cancelled) {
      const run = this.#running.get(workflowId)?.run
      if (run !== undefined && BigInt(run.epoch) <= BigInt(epoch)) run.cancel(reason(workflowId))
    }
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
    this.#logger.info({ event: 'shutdown.waiting', count: running.length }, 'waiting for running workflows to finish')
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<void>((resolve) => { timer = setTimeout(resolve, timeoutMs) })
    await Promise.race([Promise.allSettled(running), timeout])
    clearTimeout(timer)
    if (this.#running.size > 0) {
      this.#logger.warn({ event: 'shutdown.timeout', workflowIds: this.ids() },
        'shutdown timeout: leaving unfinished workflows PENDING; they resume on the next start')
    }
  }

  /**
   * Runs cut short by a graceful stop (see held) are not crashes: take their
   * attempt back so that restarts during a long workflow never count toward
   * maxRecoveryAttempts. Best effort; if the database is down they count.
   */
  async release (rows: { workflowId: string, epoch: string }[]): Promise<void> {
    if (rows.length === 0) return
    await this.#deps.release(rows).catch((err) => {
      this.#logger.warn({ event: 'shutdown.release_failed', err }, 'could not release unfinished workflows; this shutdown counts as a recovery attempt')
    })
  }

  /**
   * Runs a workflow here. With `writes`, its checkpoints go through them
   * (opening.ts: its start is not written yet); by default plainly.
   */
  launch (l: Launch): void {
    const { def, workflowId } = l
    const deps = this.#deps
    const run = new RunCore(deps.run, l.writes ?? new PlainWrites(deps.checkpoints), workflowId, l.epoch, l.requestId, l.steps, l.deadline ?? null)
    const input = l.input
    const entry: Entry = { run, outcome: execute(deps, def, run, input), listeners: new Set() }
    this.#running.set(workflowId, entry)
    void entry.outcome.then((outcome) => {
      // A newer run of this workflow (woken or claimed while this one was
      // still unwinding) may have taken the slot: it is not ours to clear.
      if (this.#running.get(workflowId) === entry) this.#running.delete(workflowId)
      for (const listener of entry.listeners) listener(outcome)
      deps.finished(workflowId)
    })
  }
}
