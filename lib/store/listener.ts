/**
 * A connection of its own that LISTENs on one channel and subscribes again
 * after every drop (a Postgres restart, a killed backend), until closed.
 * postgres.js's own sql.listen re-subscribes once and gives up for good if
 * the database is still down at that moment.
 */
import postgres from 'postgres'
import type { Logger } from '../logger.js'
import { backoff, sleep } from '../retry.js'
import type { Sql } from './connect.js'

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
      for (let attempt = 1; !this.#closing.signal.aborted; attempt++) {
        try {
          await this.listen()
          this.#events.resubscribed()
          return
        } catch (err) {
          if (attempt === 1) this.#logger.warn({ err }, 'lost the LISTEN connection for workflow results; subscribing again')
          await sleep(backoff(attempt, 100, 2000), this.#closing.signal)
        }
      }
    } finally {
      this.#resubscribing = false
    }
  }

  async close (): Promise<void> {
    this.#closing.abort()
    await this.#sql.end({ timeout: 5 })
  }
}
