// Statements counted at the driver, by SQL text: the fallback when the server
// has no pg_stat_statements, and a cross-check when it has. Lives on
// globalThis so the postgres.js wrapper and the child share one tally.
const KEY = Symbol.for('fastify-dbos.bench.queries')
const counts = (globalThis[KEY] ??= new Map())

export function countQuery (text) {
  const key = String(text).replace(/\s+/g, ' ').trim().slice(0, 120)
  // The bench's own probes (a count AS bench_probe) are not the library's statements.
  if (key.includes('bench_probe')) return
  counts.set(key, (counts.get(key) ?? 0) + 1)
}

/** Total statements sent so far, and the tally by statement text. */
export function queryCounts () {
  let total = 0
  for (const n of counts.values()) total += n
  return { total, byText: Object.fromEntries(counts) }
}

/** Counts node-postgres queries (DBOS's driver) by patching its Client. */
export function countPgQueries (pg) {
  const query = pg.Client.prototype.query
  pg.Client.prototype.query = function (config, ...rest) {
    countQuery(typeof config === 'string' ? config : config?.text ?? config?.name ?? '?')
    return query.call(this, config, ...rest)
  }
}
