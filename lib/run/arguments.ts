/** Checks of the arguments ctx operations take: refused at the call, before a position is taken. */
import { unstorableTextReason } from '../core/text.js'
import { InvalidCallError } from '../errors.js'
import { MAX_DURATION_MS } from '../core/timers.js'

/** A topic, event key or stream key: a string Postgres stores as it is. */
export function checkKey (what: string, key: unknown): string {
  if (typeof key !== 'string') throw new InvalidCallError(`${what} must be a string, got ${typeof key}`)
  const bad = unstorableTextReason(key)
  if (bad !== undefined) throw new InvalidCallError(`${what} ${JSON.stringify(key)} ${bad}`)
  return key
}

export const MAX_WAIT_MS = MAX_DURATION_MS

/** A timeout in ms: undefined and Infinity mean none; otherwise 0 to MAX_WAIT_MS. */
export function checkTimeoutMs (timeoutMs: unknown): number {
  if (timeoutMs === undefined || timeoutMs === Infinity) return Infinity
  if (typeof timeoutMs !== 'number' || !(timeoutMs >= 0 && timeoutMs <= MAX_WAIT_MS)) {
    throw new InvalidCallError(`timeoutMs must be a number of milliseconds from 0 to 1e14 (or Infinity), got ${String(timeoutMs)}`)
  }
  return timeoutMs
}
