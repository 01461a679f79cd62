/**
 * Reading `dbos-idempotency-key` and `dbos-request-id`. Node joins a header
 * sent twice into one value ("A, B"), which would pass for a new key, so the
 * raw header lines are counted: a header sent more than once is refused,
 * whatever its values. A single value may itself contain ", ".
 */
import type { FastifyRequest } from 'fastify'

/** A header's one value, or why it is refused; neither when the request does not have it. */
export interface IdHeader {
  value?: string
  invalid?: string
}

const ABSENT: IdHeader = {}

/** Reads header `name` (lower case) and checks its value with `check`, which returns why it is refused. */
export function readIdHeader (request: FastifyRequest, name: string, check: (value: string) => string | undefined): IdHeader {
  const value = request.headers[name]
  if (value === undefined) return ABSENT
  // Counted only when present: requests without the header pay nothing.
  if (typeof value !== 'string' || occurrences(request.raw.rawHeaders, name) > 1) {
    return { invalid: 'must be sent once, not repeated' }
  }
  const invalid = check(value)
  return invalid === undefined ? { value } : { invalid }
}

/** How many header lines are named `name`; rawHeaders alternates names (as sent, any case) and values. */
function occurrences (rawHeaders: string[], name: string): number {
  let n = 0
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const field = rawHeaders[i]
    if (field.length === name.length && field.toLowerCase() === name) n++
  }
  return n
}

/**
 * The idempotency key of a request, from whichever of `names` it carries
 * (dbos-idempotency-key, and the IETF draft's Idempotency-Key). The draft's
 * value is a Structured Field string, `"..."`: the quotes (and its \\
 * escapes) are taken off. Several of the headers with different keys are
 * refused: which one would the client mean?
 */
export function readKeyHeaders (request: FastifyRequest, names: string[], check: (value: string) => string | undefined): IdHeader & { header?: string } {
  let found: IdHeader = ABSENT
  for (const name of names) {
    const header = readIdHeader(request, name, (value) => check(unquote(value)))
    if (header.invalid !== undefined) return { ...header, header: name }
    if (header.value === undefined) continue
    const value = unquote(header.value)
    if (found.value !== undefined && found.value !== value) return { invalid: `was sent in two headers (${names.join(', ')}) with different values` }
    found = { value }
  }
  return found
}

/** A Structured Field string without its quotes (`"a\\"b"` is a"b); any other value as it is. */
function unquote (value: string): string {
  if (value.length < 2 || !value.startsWith('"') || !value.endsWith('"')) return value
  return value.slice(1, -1).replace(/\\(["\\])/g, '$1')
}
