// Every error code is public API: each one lib/errors.ts defines is documented
// in docs/Reference/errors.md with its status and class, and every documented
// code exists (as fastify's test/internals/errors.test.js does for its own).
import { readFile } from 'node:fs/promises'
import t from 'tap'
import * as errors from '../lib/errors.js'
import * as engineEntry from '../lib/index.js'
import * as pluginEntry from '../plugins/index.js'

interface ErrorClass { name: string, code: string, statusCode: number }

const defined = new Map<string, ErrorClass>()
const unexpected: string[] = []
for (const [exportName, value] of Object.entries(errors)) {
  if (value === errors.DBOSError) continue
  const cls = value as unknown as Partial<ErrorClass>
  if (typeof value === 'function' && typeof cls.code === 'string' && typeof cls.statusCode === 'number') {
    defined.set(exportName, { name: exportName, code: cls.code, statusCode: cls.statusCode })
  } else {
    unexpected.push(exportName)
  }
}

interface Documented { code: string, statusCode: number, className: string, line: number }

/** The rows of every table in errors.md whose header starts `| Code | Status | Class |`. */
async function documentedErrors (): Promise<{ rows: Documented[], malformed: string[] }> {
  const text = await readFile(new URL('../docs/Reference/errors.md', import.meta.url), 'utf8')
  const rows: Documented[] = []
  const malformed: string[] = []
  let inTable = false
  for (const [i, line] of text.split('\n').entries()) {
    if (/^\|\s*Code\s*\|\s*Status\s*\|\s*Class\s*\|/.test(line)) { inTable = true; continue }
    if (!line.startsWith('|')) { inTable = false; continue }
    if (!inTable || /^\|\s*-/.test(line)) continue
    const m = /^\|\s*`([A-Z0-9_]+)`\s*\|\s*(\d{3})\s*\|\s*`(\w+)`\s*\|/.exec(line)
    if (m === null) malformed.push(`line ${i + 1}: ${line.slice(0, 80)}`)
    else rows.push({ code: m[1]!, statusCode: Number(m[2]), className: m[3]!, line: i + 1 })
  }
  return { rows, malformed }
}

const { rows: documented, malformed } = await documentedErrors()

t.test('lib/errors.ts exports DBOSError and error classes with a static code and statusCode, nothing else', async (t) => {
  t.same(unexpected, [], 'exports that are neither')
})

t.test('every row of the errors tables reads `CODE` | status | `Class`', async (t) => {
  t.same(malformed, [], 'rows of an errors table that do not parse')
})

t.test('every error code is documented, with its status and class', async (t) => {
  const byCode = new Map(documented.map((d) => [d.code, d]))
  for (const cls of defined.values()) {
    const doc = byCode.get(cls.code)
    t.ok(doc, `${cls.code} (${cls.name}) is in docs/Reference/errors.md`)
    if (doc === undefined) continue
    t.equal(doc.statusCode, cls.statusCode, `${cls.code}: documented status`)
    t.equal(doc.className, cls.name, `${cls.code}: documented class`)
  }
})

t.test('every documented code exists, once, with the class named', async (t) => {
  const byCode = new Map([...defined.values()].map((c) => [c.code, c]))
  for (const doc of documented) {
    const cls = byCode.get(doc.code)
    t.ok(cls, `${doc.code} (errors.md line ${doc.line}) is defined in lib/errors.ts`)
    if (cls === undefined) continue
    t.equal(cls.name, doc.className, `${doc.code}: the class errors.md names`)
  }
  const codes = documented.map((d) => d.code)
  t.same(codes.filter((c, i) => codes.indexOf(c) !== i), [], 'no code documented twice')
  const names = [...defined.values()].map((c) => c.code)
  t.same(names.filter((c, i) => names.indexOf(c) !== i), [], 'no code defined by two classes')
})

t.test('every error class is exported from both entry points', async (t) => {
  const entries: Record<string, Record<string, unknown>> = { 'fastify-dbos': pluginEntry, 'fastify-dbos/engine': engineEntry }
  for (const [entry, exported] of Object.entries(entries)) {
    const missing = [...defined.keys(), 'DBOSError'].filter((name) => exported[name] !== (errors as Record<string, unknown>)[name])
    t.same(missing, [], `all of them from ${entry}`)
  }
})
