// The Postgres server every contender shares: DATABASE_URL when set, else an
// embedded one with its own data directory, .dbos/bench-pgdata (not the tests'
// .dbos/test-pgdata; both move under /var/tmp/fastify-dbos when run as root
// from a directory the postgres user cannot enter, see defaultDataDir).
// Each contender gets a fresh database on it; statements are counted
// server-side with pg_stat_statements when the server has it loaded.
import postgres from 'postgres'
import { defaultDataDir, startEmbeddedPostgres } from '../../dist/lib/embedded/postgres.js'

const quiet = { debug () {}, info () {}, warn: console.warn, error: console.error }
const SETTINGS = ['server_version', 'shared_buffers', 'synchronous_commit', 'fsync', 'wal_sync_method',
  'full_page_writes', 'commit_delay', 'max_connections', 'shared_preload_libraries']

export async function openServer () {
  let embedded
  let url = process.env.DATABASE_URL || undefined
  if (url === undefined) {
    const dataDir = await defaultDataDir(process.cwd(), 'bench-pgdata')
    embedded = await startEmbeddedPostgres(dataDir, quiet)
    if (!await hasPgss(embedded.url)) {
      // startEmbeddedPostgres takes no extra flags; ALTER SYSTEM persists in the
      // data directory, so only the first run pays for this restart.
      await withSql(embedded.url, (sql) => sql`ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'`)
      await embedded.stop()
      embedded = await startEmbeddedPostgres(dataDir, quiet)
    }
    url = embedded.url
  }
  const admin = postgres(url, { max: 2, onnotice: () => {} })
  let pgss = await hasPgss(url)
  if (pgss) {
    pgss = await admin`CREATE EXTENSION IF NOT EXISTS pg_stat_statements`.then(() => true, () => false)
  }
  const settings = Object.fromEntries(await Promise.all(SETTINGS.map(async (name) =>
    [name, (await admin.unsafe(`SHOW ${name}`))[0][name]])))

  return {
    embedded: embedded !== undefined,
    dataDir: embedded?.dataDir,
    pgss,
    settings,
    /** The same server, another database. */
    urlFor (database) {
      const u = new URL(url)
      u.pathname = `/${database}`
      return u.toString()
    },
    async recreateDatabase (database) {
      await admin`DROP DATABASE IF EXISTS ${admin(database)} WITH (FORCE)`
      await admin`CREATE DATABASE ${admin(database)}`
    },
    /** Statement calls per query in `database` so far, or undefined without pg_stat_statements. */
    async statements (database) {
      if (!pgss) return undefined
      const rows = await admin`
        SELECT queryid::text AS id, calls::int AS calls, wal_bytes::float8 AS wal, left(regexp_replace(query, '\\s+', ' ', 'g'), 120) AS query
        FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = ${database})`
      return new Map(rows.map((r) => [r.id, r]))
    },
    async close () {
      await admin.end({ timeout: 5 })
      await embedded?.stop()
    }
  }
}

/** Calls per statement between two snapshots, most frequent first, and the WAL they wrote. */
export function statementDelta (before, after) {
  if (before === undefined || after === undefined) return undefined
  const rows = []
  let walBytes = 0
  for (const [id, r] of after) {
    const calls = r.calls - (before.get(id)?.calls ?? 0)
    walBytes += r.wal - (before.get(id)?.wal ?? 0)
    if (calls > 0) rows.push({ calls, query: r.query })
  }
  rows.sort((a, b) => b.calls - a.calls)
  return { total: rows.reduce((n, r) => n + r.calls, 0), walBytes, rows }
}

async function hasPgss (url) {
  return withSql(url, async (sql) => (await sql`SHOW shared_preload_libraries`)[0].shared_preload_libraries
    .split(',').map((s) => s.trim()).includes('pg_stat_statements'))
}

async function withSql (url, fn) {
  const sql = postgres(url, { max: 1, onnotice: () => {} })
  try {
    return await fn(sql)
  } finally {
    await sql.end({ timeout: 5 })
  }
}
