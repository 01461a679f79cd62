/**
 * Group commit for checkpoint writes. Callers push one item and await its own
 * result; items pushed while earlier flushes are in flight are sent together
 * in the next one. One at a time this adds no wait (an idle batcher flushes on
 * the next turn of the event loop); under load, many workflows share one
 * statement and one commit instead of each paying for its own.
 */

export interface BatcherOptions<T = unknown> {
  /** Flushes allowed in flight at once; more queue up and batch. */
  maxInFlight: number
  /** Upper bound on items per flush. */
  maxBatch: number
  /**
   * Whether a failed multi-item flush is retried item by item. Say no for
   * errors that would fail every item anyway (the database being down).
   */
  isolateOnError?: (err: unknown) => boolean
  /**
   * While a failed flush is retried item by item: whether `later` depends on
   * `earlier`, pushed before it. If `earlier` fails alone, `later` is not sent
   * and rejects with the same error (a workflow's completion after its own
   * step checkpoint, say: alone, it would commit without the step).
   */
  dependsOn?: (later: T, earlier: T) => boolean
}

interface Pending<T, R> {
  item: T
  resolve: (r: R) => void
  reject: (err: unknown) => void
}

/**
 * `flush` receives items and must return one result per item, in order. If a
 * multi-item flush throws, each item is retried alone, so one bad row cannot
 * fail its neighbours; a single-item failure rejects that item's caller.
 */
export class Batcher<T, R> {
  readonly #flush: (items: T[]) => Promise<R[]>
  readonly #options: BatcherOptions<T>
  #queue: Pending<T, R>[] = []
  #inFlight = 0
  #scheduled = false
  #idle: (() => void)[] = []

  constructor (flush: (items: T[]) => Promise<R[]>, options: BatcherOptions<T>) {
    this.#flush = flush
    this.#options = options
  }

  push (item: T): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.#queue.push({ item, resolve, reject })
      this.#schedule()
    })
  }

  /** Nothing queued or in flight. */
  get idle (): boolean { return this.#queue.length === 0 && this.#inFlight === 0 }

  /** Resolves once nothing is queued or in flight. */
  drained (): Promise<void> {
    if (this.#queue.length === 0 && this.#inFlight === 0) return Promise.resolve()
    return new Promise((resolve) => this.#idle.push(resolve))
  }

  #schedule (): void {
    if (this.#scheduled || this.#inFlight >= this.#options.maxInFlight || this.#queue.length === 0) return
    this.#scheduled = true
    // setImmediate, not a microtask: it lets every workflow woken in this turn
    // (say, by the previous flush's results) push its next write first.
    setImmediate(() => {
      this.#scheduled = false
      this.#run()
    })
  }

  #run (): void {
    while (this.#inFlight < this.#options.maxInFlight && this.#queue.length > 0) {
      const batch = this.#queue.splice(0, this.#options.maxBatch)
      this.#inFlight++
      this.#send(batch).finally(() => {
        this.#inFlight--
        this.#schedule()
        if (this.#queue.length === 0 && this.#inFlight === 0) this.#idle.splice(0).forEach((f) => f())
      })
    }
  }

  async #send (batch: Pending<T, R>[]): Promise<void> {
    try {
      const results = await this.#flush(batch.map((p) => p.item))
      batch.forEach((p, i) => p.resolve(results[i]!))
    } catch (err) {
      if (batch.length === 1 || this.#options.isolateOnError?.(err) === false) {
        for (const p of batch) p.reject(err)
        return
      }
      // One at a time, in order: the caller relies on batches committing in push order.
      const failed: { item: T, err: unknown }[] = []
      for (const p of batch) {
        const blocker = this.#options.dependsOn === undefined ? undefined : failed.find((f) => this.#options.dependsOn!(p.item, f.item))
        if (blocker !== undefined) {
          p.reject(blocker.err)
          failed.push({ item: p.item, err: blocker.err })
          continue
        }
        const err = await this.#sendAlone(p)
        if (err !== undefined) failed.push({ item: p.item, err: err.error })
      }
    }
  }

  /** Sends one item; returns its error, if it failed. */
  async #sendAlone (p: Pending<T, R>): Promise<{ error: unknown } | undefined> {
    try {
      const [result] = await this.#flush([p.item])
      p.resolve(result!)
      return undefined
    } catch (error) {
      p.reject(error)
      return { error }
    }
  }
}
