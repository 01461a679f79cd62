// The test command (`npm test`): runs tap against DATABASE_URL when set, and
// otherwise against an embedded Postgres started here for the whole run (data
// in .dbos/test-pgdata, see defaultDataDir). Prints tap's TAP stream, then one summary line
// `N passed, N failed` counted over every assertion (failing todo assertions are reported on a line before it).
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { Parser } from 'tap-parser'
import { defaultDataDir, startEmbeddedPostgres } from '../dist/lib/embedded/postgres.js'

const quiet = { debug () {}, info () {}, warn: console.warn, error: console.error }
const env = { ...process.env }
let embedded
if (!env.DATABASE_URL) {
  const fail = (err) => {
    // The message says what failed and what to do; a stack would only bury it.
    console.error(`npm test: ${err.message} [${err.code}]`)
    process.exit(1)
  }
  const usual = await defaultDataDir(process.cwd(), 'test-pgdata')
  embedded = await startEmbeddedPostgres(usual, quiet).catch(async (err) => {
    // Another `npm test` in this clone holds the usual directory: test data
    // need not last, so this run gets a throwaway one of its own.
    if (err.reason !== 'in-use') return fail(err)
    const dataDir = await defaultDataDir(process.cwd(), `test-pgdata-${process.pid}`)
    console.log(`# ${usual} is in use by another run; this run uses ${dataDir}, removed at the end`)
    const own = await startEmbeddedPostgres(dataDir, quiet).catch(fail)
    const { rm } = await import('node:fs/promises')
    return { ...own, stop: async () => { await own.stop(); await rm(dataDir, { recursive: true, force: true }); await rm(`${dataDir}.log`, { force: true }) } }
  })
  env.DATABASE_URL = embedded.url
  console.log(`# tests use an embedded Postgres at ${embedded.url}`)
} else {
  console.log(`# tests use DATABASE_URL=${env.DATABASE_URL.replace(/:[^:@/]*@/, ':***@')}`)
}

const tapBin = fileURLToPath(new URL('../node_modules/.bin/tap', import.meta.url))
const child = spawn(process.execPath, [tapBin, '-R', 'tap', ...process.argv.slice(2)], { env, stdio: ['ignore', 'pipe', 'inherit'] })
// Count leaf assertions at every depth: each subtest also reports one summary
// assertion in its parent, which is taken back out when the subtest completes.
const parser = new Parser()
// A failing assertion marked todo (a known bug) is counted apart: tap does not fail on it.
const summary = { pass: 0, fail: 0, todo: 0, skip: 0 }
function track (p) {
  // A skipped test (say, pgbouncer not installed) proves nothing: not counted as passed.
  p.on('assert', (a) => { if (a.skip) summary.skip++; else if (a.ok) summary.pass++; else if (a.todo) summary.todo++; else summary.fail++ })
  p.on('child', (child) => {
    track(child)
    child.on('complete', (r) => { if (r.ok) summary.pass--; else summary.fail-- })
  })
}
track(parser)
const parsed = new Promise((resolve) => parser.on('complete', resolve))
child.stdout.pipe(parser)
child.stdout.pipe(process.stdout)

const stopDatabase = () => embedded?.stop()
process.once('SIGINT', () => child.kill('SIGINT'))
process.once('SIGTERM', () => child.kill('SIGTERM'))
const code = await new Promise((resolve) => child.on('close', (c, signal) => resolve(c ?? (signal ? 1 : 0))))
await parsed
await stopDatabase()
const failed = summary.fail + (code !== 0 && summary.fail === 0 ? 1 : 0)
if (summary.todo > 0) console.log(`# ${summary.todo} failing todo assertions (known bugs, not counted as failures)`)
if (summary.skip > 0) console.log(`# ${summary.skip} skipped (not counted as passed)`)
console.log(`${summary.pass} passed, ${failed} failed`)
process.exit(code)
