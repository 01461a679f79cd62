/**
 * In-process announcements by key (a workflow id, `<workflow id>\n<event key>`):
 * LISTEN/NOTIFY payloads fanned out to the waits of this process. One Set of
 * listeners per key, gone when empty.
 */

/**
 * Announcements of one key, from the moment it is made: next() resolves at
 * once for one that came since the previous next() (say, while the caller's
 * read was running), else on the next one or after `ms`. Make it before the
 * read it guards, or an announcement during the read reaches nobody and the
 * caller waits for its poll.
 */
export interface AnnouncementWatch {
  next (ms: number): Promise<void>
  close (): void
}

export class Announcements {
  readonly #waiters = new Map<string, Set<() => void>>()

  watch (key: string): AnnouncementWatch {
    let announced = false
    let wake: (() => void) | undefined
    let set = this.#waiters.get(key)
    if (set === undefined) this.#waiters.set(key, set = new Set())
    const listener = (): void => {
      announced = true
      wake?.()
    }
    set.add(listener)
    return {
      next: (ms) => new Promise<void>((resolve) => {
        if (announced) {
          announced = false
          return resolve()
        }
        const timer = setTimeout(() => { wake = undefined; resolve() }, ms)
        wake = () => {
          clearTimeout(timer)
          wake = undefined
          announced = false
          resolve()
        }
      }),
      close: () => {
        wake?.()
        const current = this.#waiters.get(key)
        current?.delete(listener)
        if (current?.size === 0) this.#waiters.delete(key)
      }
    }
  }

  announce (key: string): void {
    const set = this.#waiters.get(key)
    if (set !== undefined) for (const done of [...set]) done()
  }

  /** Everyone looks again (notifications may have been lost). */
  announceAll (): void {
    for (const key of [...this.#waiters.keys()]) this.announce(key)
  }
}
