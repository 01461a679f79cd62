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

/** Exponential backoff for the engine's own waits (outages, conflicts): base·2^attempt, capped. */
export function backoff (attempt: number, baseMs: number, capMs: number): number {
  return Math.min(baseMs * 2 ** attempt, capMs)
}
