/**
 * Waking getResult callers. In this process a finished run wakes its waiters
 * directly; a workflow finished by another process is announced with NOTIFY
 * (see writeCheckpoints), which we LISTEN for only once somebody waits on a
 * workflow not running here. A slow poll covers notifications lost while the
 * listening connection was down.
 */
import type { Logger } from './logger.js'
import type { Sql } from './store/connect.js'

export class ResultWaiters {
  readonly #sql: Sql
  readonly #channel: string
  readonly #logger: Logger
  readonly #waiters = new Map<string, Set<() => void>>()
  #listening: Promise<{ unlisten (): Promise<void> } | undefined> | undefined

  constructor (sql: Sql, channel: string, logger: Logger) {
    this.#sql = sql
    this.#channel = channel
    this.#logger = logger
  }

  /** Starts listening for completions from other processes; never throws (the poll is the fallback). */
  listen (): Promise<unknown> {
    this.#listening ??= this.#sql.listen(this.#channel, (id) => this.wake(id)).catch((err) => {
      this.#logger.warn({ err }, 'could not LISTEN for workflow completions; falling back to polling')
      this.#listening = undefined
      return undefined
    })
    return this.#listening
  }

  /** A promise that resolves on the next wake(workflowId), and a function to stop waiting. */
  wait (workflowId: string): { woken: Promise<void>, cancel (): void } {
    let set = this.#waiters.get(workflowId)
    if (set === undefined) this.#waiters.set(workflowId, set = new Set())
    let wake!: () => void
    const woken = new Promise<void>((resolve) => { wake = resolve })
    set.add(wake)
    const cancel = (): void => {
      set.delete(wake)
      if (set.size === 0 && this.#waiters.get(workflowId) === set) this.#waiters.delete(workflowId)
    }
    return { woken, cancel }
  }

  wake (workflowId: string): void {
    const set = this.#waiters.get(workflowId)
    if (set === undefined) return
    this.#waiters.delete(workflowId)
    for (const wake of set) wake()
  }

  async close (): Promise<void> {
    const listening = await this.#listening
    this.#listening = undefined
    await listening?.unlisten().catch(() => {})
  }
}
