/**
 * Rules for workflow ids and the header values they come from, and how the
 * plugin turns an idempotency key into workflow ids.
 *
 * Ids derived from a key `K` (scoped or not, see scopedKey):
 *   first distinct workflow of a request   K
 *   n-th distinct workflow (n >= 2)        K::n
 * A key may not contain `::` (invalidKeyReason), which is what keeps the two forms
 * apart: a client key never contains `::`, so it is never a derived id, and a
 * derived id splits back into one (K, n) only, at its last `::` (n is digits,
 * with no ':'). Under a scope the id is `<encoded scope>:<rest>`: the encoded
 * scope has no ':', so the first ':' ends it, and the rest is K or K::n by the
 * same argument, a key starting or ending with ':' included.
 */

/** Longest id or key a caller may give. */
export const MAX_ID_LENGTH = 256
/** Longest id the engine derives from a key (scope prefix and `::n` suffix added). */
export const MAX_DERIVED_ID_LENGTH = 1024
/** Separates a key from the number of a request's n-th workflow; never inside a key. */
export const DERIVED_ID_SEPARATOR = '::'
// C0 and C1 control characters, DEL.
const CONTROL_CHARS = /[\u0000-\u001f\u007f-\u009f]/
const PRINTABLE_ASCII = /^[\x20-\x7e]*$/

/** Why `id` is not usable as a workflow id given by app code, or undefined if it is. */
export function invalidIdReason (id: unknown, maxLength = MAX_ID_LENGTH): string | undefined {
  if (typeof id !== 'string') return 'must be a string'
  if (id.length === 0) return 'must not be empty'
  if (id.length > maxLength) return `must be at most ${maxLength} characters`
  if (CONTROL_CHARS.test(id)) return 'must not contain control characters'
  return undefined
}

/**
 * Why a `dbos-request-id` header value is refused, or undefined: 1 to 256
 * printable ASCII characters (0x20 to 0x7E), no space first or last. Node
 * reads header bytes as Latin-1, so UTF-8 text would arrive mangled (`café`
 * as `cafÃ©`): refused rather than stored under a value the client never sent.
 */
export function invalidRequestIdReason (value: string): string | undefined {
  if (value.length === 0) return 'must not be empty'
  if (value.length > MAX_ID_LENGTH) return `must be at most ${MAX_ID_LENGTH} characters`
  if (!PRINTABLE_ASCII.test(value)) return 'must contain only printable ASCII characters (0x20 to 0x7E); encode other text, such as UTF-8, first'
  // HTTP drops spaces at either end of a header value, so such a value could not be sent again as it is.
  if (value.startsWith(' ') || value.endsWith(' ')) return 'must not start or end with a space'
  return undefined
}

/** Why a `dbos-idempotency-key` header value is refused, or undefined: as a request id, and without `::`. */
export function invalidKeyReason (value: string): string | undefined {
  const bad = invalidRequestIdReason(value)
  if (bad !== undefined) return bad
  if (value.includes(DERIVED_ID_SEPARATOR)) return `must not contain "${DERIVED_ID_SEPARATOR}", which is reserved for the ids of a request's later workflows`
  return undefined
}

/**
 * The key under a scope: `<encodeURIComponent(scope)>:<key>`, with an empty
 * prefix for an undefined scope, so an anonymous key like `alice:k1` becomes
 * `:alice:k1` and never equals alice's `alice:k1`.
 */
export function scopedKey (scope: string | undefined, key: string): string {
  return `${encodeURIComponent(scope ?? '')}:${key}`
}

/** The id of a request's n-th distinct workflow (n from 1) under its (scoped) key. */
export function derivedWorkflowId (key: string, n: number): string {
  return n === 1 ? key : `${key}${DERIVED_ID_SEPARATOR}${n}`
}
