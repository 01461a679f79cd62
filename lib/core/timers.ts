/** Timers for delays longer than setTimeout allows, and timeouts callers give. */
import { InvalidTimeoutError } from '../errors.js'

/** setTimeout's longest delay: a longer one overflows and fires at once. */
export const MAX_TIMER_MS = 2 ** 31 - 1

/**
 * The longest duration the engine accepts (sleeps, waits, timeouts, delays),
 * about 3,170 years: keeps every wake-up time within years 0 to 9999 for
 * millennia to come. A valid Date is not enough: postgres.js sends Dates as
 * toISOString(), which writes later years as "+010000-...", and Postgres
 * refuses that text, so a later wake-up time could never be recorded.
 */
export const MAX_DURATION_MS = 1e14

/** Calls `fn` once after `ms` milliseconds, however long that is; clear() cancels it. */
export class LongTimer {
  #timer: NodeJS.Timeout | undefined
  readonly #at: number

  constructor (ms: number, fn: () => void) {
    this.#at = Date.now() + ms
    const arm = (): void => {
      const left = this.#at - Date.now()
      this.#timer = left > MAX_TIMER_MS ? setTimeout(arm, MAX_TIMER_MS) : setTimeout(fn, Math.max(0, left))
    }
    arm()
  }

  clear (): void {
    clearTimeout(this.#timer)
  }
}

/**
 * A timeout in milliseconds: undefined or Infinity waits as long as it takes;
 * otherwise a non-negative number. Anything else is DBOS_ERR_INVALID_TIMEOUT.
 */
export function checkTimeout (timeoutMs: unknown): number {
  if (timeoutMs === undefined) return Infinity
  if (typeof timeoutMs !== 'number' || Number.isNaN(timeoutMs) || timeoutMs < 0) throw new InvalidTimeoutError(String(timeoutMs))
  return timeoutMs
}
