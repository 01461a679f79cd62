/**
 * The database's clock, as seen from this process. Leases and wake-up times
 * are judged by one clock for every instance, the database's, never by
 * comparing two machines' clocks: each heartbeat reads it (clock_timestamp())
 * and this keeps the offset, so that reading it costs no query.
 */
export class Clock {
  /** Database time minus local time, in ms, from the latest reading. */
  #offset = 0

  /** Milliseconds since the epoch by the database's clock (as of the latest reading). */
  now (): number {
    return Date.now() + this.#offset
  }

  /**
   * A reading: the database said `dbNow` for a query sent at local time
   * `sentAt` and answered at `receivedAt`. Its clock was read about half way.
   */
  observe (dbNow: number, sentAt: number, receivedAt: number): void {
    this.#offset = dbNow - (sentAt + receivedAt) / 2
  }
}
