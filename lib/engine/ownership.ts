/**
 * Which workflows this process is busy with, whatever the reason, in one
 * place. A workflow is busy here while it runs here (LocalRuns), while a start
 * of it is being written here, or while a claim of it is in progress (by
 * recovery, by a retried start resuming an orphan, by the wake-up scheduler
 * between its claim and the launch). Every path that takes a workflow for a
 * new run asks here first and holds a claim while it does, so that two paths
 * in one process never run one workflow twice (the epoch fences other
 * processes; this fences our own paths from each other).
 */
export class Ownership {
  readonly #running: (workflowId: string) => boolean
  readonly #runningEpoch: (workflowId: string) => string | undefined
  /** Starts in flight, counted: concurrent starts of one id (idempotent retries) each hold one. */
  readonly #starting = new Map<string, number>()
  /** Claims in progress: one at a time per workflow. */
  readonly #claiming = new Set<string>()
  /** Queue dispatches in flight: their rows are ours in the database before their runs are launched here. */
  readonly #dispatches = new Set<Promise<void>>()

  /** `runningEpoch` tells the epoch a workflow's run in this process holds, if it has one. */
  constructor (runningEpoch: (workflowId: string) => string | undefined) {
    this.#runningEpoch = runningEpoch
    this.#running = (workflowId) => runningEpoch(workflowId) !== undefined
  }

  /** Running here, being started here, or being claimed here. */
  busy (workflowId: string): boolean {
    return this.#running(workflowId) || this.#starting.has(workflowId) || this.#claiming.has(workflowId)
  }

  /**
   * Busy only with a run that holds an older epoch than `epoch`, the one the
   * database records: that run was cancelled or fenced and is still
   * unwinding (a resume right after a cancel), and a new run may take over
   * at once. Waiting for it to end would leave the workflow to no one.
   */
  onlyStale (workflowId: string, epoch: string): boolean {
    const held = this.#runningEpoch(workflowId)
    // Older, not merely different: `epoch` may come from a list read before
    // another path here (adoption, a wake-up) took the workflow for a newer
    // run, and that run must not be taken over by this process itself.
    return held !== undefined && BigInt(held) < BigInt(epoch) && !this.#starting.has(workflowId) && !this.#claiming.has(workflowId)
  }

  /** How many starts of this id are in flight here. */
  starts (workflowId: string): number {
    return this.#starting.get(workflowId) ?? 0
  }

  /** Marks a start in flight; call the returned function when it is done. */
  starting (workflowId: string): () => void {
    this.#starting.set(workflowId, this.starts(workflowId) + 1)
    let released = false
    return () => {
      if (released) return
      released = true
      const n = this.starts(workflowId) - 1
      if (n === 0) this.#starting.delete(workflowId)
      else this.#starting.set(workflowId, n)
    }
  }

  /**
   * Marks a queue dispatch in flight until the returned function is called,
   * after its runs were launched. A dispatch commits rows as PENDING under
   * this executor and launches them only when its answer arrives: a recovery
   * pass reading in between would find them ours and not running, and run
   * them a second time (its claim fencing the first run, whose first step
   * may have had its side effect by then).
   */
  dispatching (): () => void {
    let release!: () => void
    const done = new Promise<void>((resolve) => { release = resolve })
    this.#dispatches.add(done)
    return () => {
      this.#dispatches.delete(done)
      release()
    }
  }

  /**
   * Resolves once the queue dispatches in flight now have launched their
   * runs (at once if none is). Later ones do not count: a dispatch that
   * begins after a read cannot have put rows into it.
   */
  dispatched (): Promise<void> {
    return Promise.all([...this.#dispatches]).then(() => {})
  }

  /**
   * Takes the claim on a workflow unless another path holds it; returns how
   * to release it, or undefined when it is taken already.
   */
  claim (workflowId: string): (() => void) | undefined {
    if (this.#claiming.has(workflowId)) return undefined
    this.#claiming.add(workflowId)
    return () => { this.#claiming.delete(workflowId) }
  }
}
