/** Rules for workflow ids and the header values they come from. */

/** Longest id or key a caller may give. */
export const MAX_ID_LENGTH = 256
/** Longest id the engine derives from a key (scope prefix and `::n` suffix added). */
export const MAX_DERIVED_ID_LENGTH = 1024
// C0 and C1 control characters, DEL.
const CONTROL_CHARS = /[\u0000-\u001f\u007f-\u009f]/

/** Why `id` is not usable as a workflow id or header value, or undefined if it is. */
export function invalidIdReason (id: unknown, maxLength = MAX_ID_LENGTH): string | undefined {
  if (typeof id !== 'string') return 'must be a string'
  if (id.length === 0) return 'must not be empty'
  if (id.length > maxLength) return `must be at most ${maxLength} characters`
  if (CONTROL_CHARS.test(id)) return 'must not contain control characters'
  return undefined
}
