/** Waiting and backoff helpers shared by steps and the engine's own writes. */

export function sleep (ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve()
    const timer = setTimeout(done, ms)
    signal?.addEventListener('abort', done, { once: true })
    function done (): void {
      clearTimeout(timer)
      signal?.removeEventListener('abort', done)
      resolve()
    }
  })
}

export interface RetryPolicy {
  /** Total attempts, including the first. */
  maxAttempts?: number
  /** Delay before the second attempt. */
  intervalMs?: number
  /** Multiplier applied to the delay after each failed attempt. */
  backoffRate?: number
  /** Upper bound on any one delay. */
  maxIntervalMs?: number
}

export function retryDelay (policy: RetryPolicy, failedAttempts: number): number {
  const base = (policy.intervalMs ?? 1000) * Math.pow(policy.backoffRate ?? 2, failedAttempts - 1)
  return Math.min(base, policy.maxIntervalMs ?? 3_600_000)
}

/** First wait after a failed try against the database. */
const RETRY_BASE_MS = 50
/**
 * Longest wait between tries. With postgres.js's own reconnect wait capped at
 * half a second (store/connect.ts), work resumes within about 1.5 s of the
 * database answering again.
 */
const RETRY_CAP_MS = 1000

/**
 * How long to wait before try `attempt + 1` after `attempt` failed: doubling
 * from 50 ms to at most 1 s, each wait drawn between half and all of that, so
 * that many workflows (and many instances) waiting out one outage do not all
 * try again at the same moment.
 */
export function retryWait (attempt: number): number {
  const ceiling = Math.min(RETRY_CAP_MS, RETRY_BASE_MS * 2 ** Math.max(0, attempt - 1))
  return ceiling / 2 + Math.random() * (ceiling / 2)
}

export interface UntilReachableOptions {
  /** Aborted when the caller gives up (the engine stops): then `stopped()` is thrown. */
  signal: AbortSignal
  stopped: () => unknown
  /** Whether an error means the database could not be reached: those are retried, any other is thrown. */
  unreachable: (err: unknown) => boolean
  /** Called after each failed try (1 for the first), say to log the first one. */
  onRetry?: (err: unknown, attempt: number) => void
}

/**
 * The engine's one "wait until the database answers" loop: runs `fn` until it
 * succeeds, waiting retryWait() between tries while it fails for want of a
 * database. Every write `fn` makes must be safe to repeat, since a try whose
 * answer was lost may have committed.
 */
export async function untilReachable<T> (fn: () => Promise<T>, o: UntilReachableOptions): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    if (o.signal.aborted) throw o.stopped()
    try {
      return await fn()
    } catch (err) {
      if (!o.unreachable(err)) throw err
      if (o.signal.aborted) throw o.stopped()
      o.onRetry?.(err, attempt)
      await sleep(retryWait(attempt), o.signal)
    }
  }
}
