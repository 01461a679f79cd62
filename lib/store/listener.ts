/**
 * A connection of its own that LISTENs on one channel and subscribes again
 * after every drop (a Postgres restart, a killed backend), until closed.
 * postgres.js's own sql.listen re-subscribes once and gives up for good if
 * the database is still down at that moment.
 */
import postgres from 'postgres'
import type { Logger } from '../core/logger.js'
import { untilReachable } from '../core/retry.js'
import { CONNECT_TIMEOUT_S, reconnectDelay, type Sql } from './connect.js'

export interface ListenerEvents {
  /** A NOTIFY payload on the channel. */
  notify (payload: string): void
  /** Subscribed again after a drop: notifications sent meanwhile were lost. */
  resubscribed (): void
}

export class ChannelListener {
  readonly #channel: string
  readonly #events: ListenerEvents
  readonly #logger: Logger
  readonly #sql: Sql
  readonly #closing = new AbortController()
  #resubscribing = false

  constructor (url: string, channel: string, events: ListenerEvents, logger: Logger) {
    this.#channel = channel
    this.#events = events
    this.#logger = logger
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
      onnotify: (ch: string, payload: string) => { if (ch === this.#channel) this.#events.notify(payload) },
      onclose: () => { void this.#resubscribe() }
    } as postgres.Options<{}> & { onnotify (channel: string, payload: string): void })
  }

  /** The first subscription; rejects if the database cannot be reached. */
  async listen (): Promise<void> {
    await this.#sql`LISTEN ${this.#sql(this.#channel)}`
  }

  async #resubscribe (): Promise<void> {
    if (this.#resubscribing || this.#closing.signal.aborted) return
    this.#resubscribing = true
    try {
      const closing = this.#closing.signal
      const closed = Symbol('closed')
      const subscribed = await untilReachable(() => this.listen(), {
        signal: closing,
        stopped: () => closed,
        // Subscribing is harmless to repeat: whatever the failure, try again until closed.
        unreachable: () => true,
        onRetry: (err, attempt) => {
          if (attempt === 1) this.#logger.warn({ event: 'listener.lost', err }, 'lost the LISTEN connection for workflow results; subscribing again')
        }
      }).then(() => true, () => false)
      if (subscribed) this.#events.resubscribed()
    } finally {
      this.#resubscribing = false
    }
  }

  async close (): Promise<void> {
    this.#closing.abort()
    await this.#sql.end({ timeout: 5 })
  }
}
