/**
 * Postgres and driver error classification, by SQLSTATE and driver code, never
 * by message text.
 */

export const UNIQUE_VIOLATION = '23505'
export const SERIALIZATION_FAILURE = '40001'
export const DEADLOCK_DETECTED = '40P01'

// Class 08 is "connection exception"; the others are the server going away or
// not being ready yet, all of which end when the database comes back.
const TRANSIENT_SQLSTATES = new Set([
  '57P01', // admin_shutdown
  '57P02', // crash_shutdown
  '57P03', // cannot_connect_now (starting up / shutting down)
  '53300', // too_many_connections
  '58030' // io_error
])

// Codes only postgres.js uses.
const DRIVER_CODES = new Set(['CONNECTION_CLOSED', 'CONNECTION_ENDED', 'CONNECTION_DESTROYED', 'CONNECT_TIMEOUT'])
// Codes Node's net layer puts on errors when a socket fails: any client's.
const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'ENOTFOUND'])

/** True when the error means "the database is (temporarily) unreachable", so retrying later can succeed. */
export function isConnectionError (err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code
  if (typeof code !== 'string') return false
  return isDatabaseConnectionError(err) || NETWORK_CODES.has(code)
}

/**
 * Like isConnectionError, but only for errors that can only have come from a
 * Postgres connection: not ECONNREFUSED, which user code calling some other
 * service inside a transaction can throw too.
 */
export function isDatabaseConnectionError (err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code
  if (typeof code !== 'string') return false
  return (code.startsWith('08') && code.length === 5) || TRANSIENT_SQLSTATES.has(code) || DRIVER_CODES.has(code)
}

/**
 * Errors postgres.js raises about its own state, not about the query: the
 * same statement succeeds when tried again. They must never be recorded as a
 * step's outcome.
 */
const DRIVER_INTERNAL_CODES = new Set(['UNSAFE_TRANSACTION'])

export function isDriverInternalError (err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' && DRIVER_INTERNAL_CODES.has(code)
}

export function sqlState (err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'string' ? code : undefined
}
