/**
 * What Postgres's text columns can hold. Strings that go into them as they
 * are (names, ids, filter values) must survive the round trip unchanged: a
 * NUL is refused by Postgres (SQLSTATE 22021), and a lone UTF-16 surrogate
 * is turned into U+FFFD on the way to UTF-8, so the stored string no longer
 * equals the one the code uses (a replayed step name would never match).
 */

/** Why `s` cannot be stored faithfully in a text column, or undefined if it can. */
export function unstorableTextReason (s: string): string | undefined {
  if (s.includes('\u0000')) return 'contains a NUL character'
  if (!s.isWellFormed()) return 'contains a lone UTF-16 surrogate (half of an emoji or other character outside the BMP)'
  return undefined
}
