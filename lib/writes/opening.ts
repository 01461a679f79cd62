/**
 * A workflow start not written yet, so that the run's first step checkpoint
 * can carry it: start and first step then share one statement and one commit
 * instead of two in a row. One at a time, commits are what a workflow waits
 * for (a 3-step workflow: start, step 1, step 2, step 3 with its outcome), so
 * this takes a quarter off its latency.
 *
 * What stays as it was:
 * - start() resolves only once the start row is durable (here: with the
 *   first step's row, or alone).
 * - A step's result is durable before the workflow goes past it.
 * - Only for generated ids (Engine#startWorkflow). A caller's own id (an
 *   idempotency key) may be started twice at once, in two processes; its start
 *   must be written first, so that the second finds it and runs nothing.
 *
 * What differs: the first step runs before the start is durable. If the start
 * then cannot be written, start() fails (503) and the run stops, leaving no
 * workflow behind; the step may have had effects, exactly as when a process
 * dies after a step but before its checkpoint (steps run at least once). And
 * until the start is written, other processes cannot see the workflow; this
 * process's own look-ups (getStatus, listSteps, retrieve) write it first.
 *
 * The run waits for its first step at most about one commit's time
 * (Checkpoints#commitMs): a first step slower than that, or a transaction
 * first, or an outcome without any step, writes the start alone. So a slow
 * first step delays start() by at most what a merge would have saved, and
 * only now and then: see FirstSteps.
 */
import type { Checkpoints } from './checkpoints.js'
import { GeneratedIdTakenError } from '../errors.js'
import type { NewWorkflowRow, StepWrite } from '../store/rows.js'

const MAX_WAIT_MS = 20
/** Starts of a definition written alone after its first step outlasted the wait (then it gets another chance). */
const SKIP_AFTER_SLOW = 16

/**
 * Which definitions' first steps outlast the wait: their starts are written
 * alone for a while, instead of each start() waiting in vain. A route that
 * starts a slow job and answers 202 then pays for one commit, as it would
 * without openings; every so often one start waits again, in case the step
 * got faster. One entry per definition name.
 */
export class FirstSteps {
  readonly #skips = new Map<string, number>()

  /** Whether a start of this definition should let its first step carry it. */
  worthWaiting (name: string): boolean {
    const left = this.#skips.get(name)
    if (left === undefined) return true
    if (left <= 1) this.#skips.delete(name)
    else this.#skips.set(name, left - 1)
    return false
  }

  /** A first step of this definition outlasted the wait. */
  slow (name: string): void {
    this.#skips.set(name, SKIP_AFTER_SLOW)
  }
}

export class Opening {
  readonly #checkpoints: Checkpoints
  readonly #start: NewWorkflowRow
  readonly #timer: NodeJS.Timeout
  #issued = false
  #settle!: { resolve: () => void, reject: (err: unknown) => void }
  /** Settles once the start row is committed, or rejects with why it could not be (start() then fails). */
  readonly durable: Promise<void>

  /** `firstSteps` hears when the first step outlasts the wait. */
  constructor (checkpoints: Checkpoints, start: NewWorkflowRow, firstSteps: FirstSteps) {
    this.#checkpoints = checkpoints
    this.#start = start
    this.durable = new Promise((resolve, reject) => { this.#settle = { resolve, reject } })
    // Observed by start() and the run; never an unhandled rejection.
    this.durable.catch(() => {})
    const waitMs = Math.min(MAX_WAIT_MS, Math.max(1, Math.ceil(checkpoints.commitMs)))
    this.#timer = setTimeout(() => {
      firstSteps.slow(start.name)
      void this.alone()
    }, waitMs)
  }

  /** Nothing has written the start yet: the next step checkpoint can take it along. */
  get open (): boolean { return !this.#issued }

  /** Writes the start with this first step checkpoint; resolves once both are durable. Only while open. */
  withStep (step: StepWrite): Promise<void> {
    return this.#issue(() => this.#checkpoints.startWithStep({ start: this.#start, step }))
  }

  /** Writes the start alone unless already issued; resolves once it is durable. */
  alone (): Promise<void> {
    if (this.#issued) return this.durable
    return this.#issue(async () => (await this.#checkpoints.start(this.#start)).inserted)
  }

  #issue (write: () => Promise<boolean>): Promise<void> {
    this.#issued = true
    clearTimeout(this.#timer)
    write().then((inserted) => {
      if (inserted) this.#settle.resolve()
      else this.#settle.reject(new GeneratedIdTakenError(this.#start.workflowId))
    }, this.#settle.reject)
    return this.durable
  }
}
