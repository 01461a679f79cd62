/**
 * The engine's one LISTEN connection, for every channel it listens on
 * (completions, executors; later messages and queues). It subscribes again
 * after every drop (a Postgres restart, a killed backend) until closed, and
 * tells each channel's handler that notifications sent meanwhile were lost.
 * postgres.js's own sql.listen re-subscribes once and gives up for good if
 * the database is still down at that moment.
 */
import postgres from 'postgres'
import type { Logger } from '../core/logger.js'
import { untilReachable } from '../core/retry.js'
import { CONNECT_TIMEOUT_S, reconnectDelay, type Sql } from './connect.js'

export interface ChannelHandler {
  /** A NOTIFY payload on the channel. */
  notify (payload: string): void
  /** Subscribed again after a drop: notifications sent meanwhile were lost. */
  resubscribed (): void
}

export class Notifications {
  readonly #logger: Logger
  readonly #sql: Sql
  readonly #handlers = new Map<string, ChannelHandler>()
  readonly #closing = new AbortController()
  /** Channels subscribed on the current connection. */
  readonly #subscribed = new Set<string>()
  #resubscribing = false
  readonly #enabled: boolean

  /**
   * With `enabled: false` (a transaction-mode pooler, which cannot hold a
   * LISTEN across transactions) nothing is subscribed and every waiter relies
   * on polling.
   */
  constructor (url: string, logger: Logger, { enabled = true } = {}) {
    this.#logger = logger
    this.#enabled = enabled
    this.#sql = postgres(url, {
      max: 1,
      // 0 turns both timers off: this connection is meant to stay.
      idle_timeout: 0,
      max_lifetime: 0,
      fetch_types: false,
      connect_timeout: CONNECT_TIMEOUT_S,
      backoff: reconnectDelay,
      onnotice: () => {},
      connection: { application_name: 'fastify-dbos listener' },
      onnotify: (channel: string, payload: string) => this.#handlers.get(channel)?.notify(payload),
      onclose: () => {
        this.#subscribed.clear()
        void this.#resubscribe()
      }
    } as postgres.Options<{}> & { onnotify (channel: string, payload: string): void })
  }

  /**
   * Listens on `channel` from now on. Never rejects: if the database cannot
   * be reached now, the subscription is retried in the background (and the
   * handler told once it is made), while callers rely on polling.
   */
  async listen (channel: string, handler: ChannelHandler): Promise<void> {
    if (!this.#enabled) return
    this.#handlers.set(channel, handler)
    try {
      await this.#subscribe([channel])
    } catch (err) {
      this.#logger.warn({ event: 'listener.failed', err, channel }, 'could not LISTEN; polling until it can')
      void this.#resubscribe()
    }
  }

  async #subscribe (channels: string[]): Promise<void> {
    const missing = channels.filter((c) => !this.#subscribed.has(c))
    if (missing.length === 0) return
    for (const channel of missing) await this.#sql`LISTEN ${this.#sql(channel)}`
    for (const channel of missing) this.#subscribed.add(channel)
  }

  async #resubscribe (): Promise<void> {
    if (this.#resubscribing || this.#closing.signal.aborted || this.#handlers.size === 0) return
    this.#resubscribing = true
    try {
      const closing = this.#closing.signal
      const closed = Symbol('closed')
      const subscribed = await untilReachable(() => this.#subscribe([...this.#handlers.keys()]), {
        signal: closing,
        stopped: () => closed,
        // Subscribing is harmless to repeat: whatever the failure, try again until closed.
        unreachable: () => true,
        onRetry: (err, attempt) => {
          if (attempt === 1) this.#logger.warn({ event: 'listener.lost', err }, 'lost the LISTEN connection; subscribing again')
        }
      }).then(() => true, () => false)
      if (subscribed) for (const handler of this.#handlers.values()) handler.resubscribed()
    } finally {
      this.#resubscribing = false
    }
  }

  async close (): Promise<void> {
    this.#closing.abort()
    await this.#sql.end({ timeout: 5 })
  }
}
