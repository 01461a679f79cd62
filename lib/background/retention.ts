/**
 * Retention: with the `retention` option, every `intervalMs` this instance
 * deletes workflows that finished longer than `finishedOlderThanMs` ago, with
 * everything that belongs to them (steps, messages, events, streams), in
 * bounded batches (store/control.ts: SKIP LOCKED, no long locks; several
 * instances deleting at once share the work). PENDING work is never touched.
 */
import type { Logger } from '../core/logger.js'

export interface RetentionDeps {
  logger: Logger
  finishedOlderThanMs: number
  intervalMs: number
  deleteFinished (olderThanMs: number): Promise<number>
}

export class Retention {
  readonly #deps: RetentionDeps
  #timer: NodeJS.Timeout | undefined
  #pass: Promise<void> | undefined
  #stopped = false

  constructor (deps: RetentionDeps) {
    this.#deps = deps
  }

  start (): void {
    this.#schedule()
  }

  #schedule (): void {
    if (this.#stopped) return
    this.#timer = setTimeout(() => {
      this.#pass = this.#run().finally(() => {
        this.#pass = undefined
        this.#schedule()
      })
    }, this.#deps.intervalMs)
    // An idle app is not kept alive for housekeeping.
    this.#timer.unref()
  }

  async #run (): Promise<void> {
    try {
      const deleted = await this.#deps.deleteFinished(this.#deps.finishedOlderThanMs)
      if (deleted > 0) this.#deps.logger.info({ event: 'retention.deleted', count: deleted }, 'deleted finished workflows past the retention period')
    } catch (err) {
      this.#deps.logger.warn({ event: 'retention.failed', err }, 'could not delete old finished workflows; trying again later')
    }
  }

  async stop (): Promise<void> {
    this.#stopped = true
    clearTimeout(this.#timer)
    await this.#pass
  }
}
