// Contender "ceiling": what the server does with plain single-row INSERTs from
// postgres.js, one per round trip and one commit each. A 3-step workflow needs
// at least 5 durable writes (start, 3 steps, outcome) if it batches nothing.
import postgres from 'postgres'

export const name = 'ceiling'

export async function open (databaseUrl) {
  // One connection per concurrent client at 64 in flight.
  const sql = postgres(databaseUrl, { max: 64, onnotice: () => {} })
  await sql`CREATE TABLE IF NOT EXISTS ceiling (id bigserial PRIMARY KEY, v text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())`
  return {
    async runOne (i) {
      await sql`INSERT INTO ceiling (v) VALUES (${`row:${i}`})`
    },
    app: undefined,
    close: () => sql.end({ timeout: 5 })
  }
}
