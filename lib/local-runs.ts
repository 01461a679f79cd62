/**
 * The workflows running in this process: each one's execution, the epoch it
 * holds, and what happens when it ends (outcome recorded, waiters woken, or
 * abandoned because the engine stopped or another run took over).
 */
import { deserialize, serializeError, serializeResult } from './codec.js'
import type { Checkpoints } from './checkpoints.js'
import { EngineStoppedError, WorkflowFencedError } from './errors.js'
import type { Logger } from './logger.js'
import type { ResultWaiters } from './results.js'
import { WorkflowRun } from './runner.js'
import type { Pools, Sql, Tables } from './store/connect.js'
import type { StepRow } from './store/steps.js'
import type { WorkflowDefinition } from './workflow.js'

/** The engine's open database resources. */
export interface Connected {
  /** For transactions and reads; the write paths have pools of their own. */
  sql: Sql
  pools: Pools
  tables: Tables
  checkpoints: Checkpoints
  results: ResultWaiters
}

export type LocalOutcome = { ok: true, value: unknown } | { ok: false, error: unknown }

export class LocalRuns {
  readonly #logger: Logger
  readonly #signal: AbortSignal
  readonly #running = new Map<string, Promise<LocalOutcome>>()
  /** Epoch each run holds, so a graceful stop can hand unfinished ones back. */
  readonly #epochs = new Map<string, string>()

  constructor (logger: Logger, signal: AbortSignal) {
    this.#logger = logger
    this.#signal = signal
  }

  get size (): number { return this.#running.size }
  has (workflowId: string): boolean { return this.#running.has(workflowId) }
  /** The run's outcome, if the workflow is running here. Never rejects. */
  get (workflowId: string): Promise<LocalOutcome> | undefined { return this.#running.get(workflowId) }
  ids (): string[] { return [...this.#running.keys()] }
  outcomes (): Promise<LocalOutcome>[] { return [...this.#running.values()] }
  held (): { workflowId: string, epoch: string }[] {
    return [...this.#epochs].map(([workflowId, epoch]) => ({ workflowId, epoch }))
  }

  launch (db: Connected, def: WorkflowDefinition<any, any>, workflowId: string, epoch: string, input: unknown, requestId: string | null, steps?: StepRow[]): void {
    const run = new WorkflowRun({ sql: db.sql, tables: db.tables, checkpoints: db.checkpoints, signal: this.#signal },
      workflowId, epoch, requestId, steps)
    const outcome = this.#execute(db, def, run, input)
    this.#running.set(workflowId, outcome)
    this.#epochs.set(workflowId, epoch)
    void outcome.finally(() => {
      this.#running.delete(workflowId)
      this.#epochs.delete(workflowId)
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
    try {
      const value = await def.fn(run, input)
      output = serializeResult(value, `the output of workflow ${JSON.stringify(def.name)}`)
      // What every other caller of getResult gets back from the database.
      local = { ok: true, value: deserialize(output) }
    } catch (err) {
      if (err instanceof EngineStoppedError || err instanceof WorkflowFencedError) return this.#abandoned(workflowId, err)
      error = serializeError(err)
      local = { ok: false, error: err }
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
