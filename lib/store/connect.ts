/** Opens the engine's postgres.js pool. */
import postgres from 'postgres'

export type Sql = postgres.Sql
export type TransactionSql = postgres.TransactionSql

export function connect (url: string, poolSize: number): Sql {
  return postgres(url, {
    max: poolSize,
    onnotice: () => {},
    // Connections that die while Postgres restarts are replaced on next use;
    // a short connect timeout makes an outage surface as a fast 503.
    connect_timeout: 5,
    idle_timeout: 60,
    connection: { application_name: 'fastify-dbos' }
  })
}

/** Identifiers of the engine's tables within its schema, built once. */
export interface Tables {
  schema: string
  workflows: postgres.Helper<string>
  steps: postgres.Helper<string>
  migrations: postgres.Helper<string>
  /** NOTIFY channel on which completions are announced to other processes. */
  channel: string
}

export function tables (sql: Sql, schema: string): Tables {
  return {
    schema,
    workflows: sql(`${schema}.workflows`),
    steps: sql(`${schema}.steps`),
    migrations: sql(`${schema}.migrations`),
    channel: `fastify_dbos_done:${schema}`
  }
}
