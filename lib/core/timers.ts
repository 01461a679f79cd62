/** Timers for delays longer than setTimeout allows. */

/** setTimeout's longest delay: a longer one overflows and fires at once. */
export const MAX_TIMER_MS = 2 ** 31 - 1

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
