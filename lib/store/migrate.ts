/**
 * Forward-only migrations from lib/migrations/NNNN_name.sql. All of them run in
 * one transaction under an advisory lock keyed by the schema, so processes
 * starting at once serialise here and each migration is applied exactly once.
 */
import { readdir, readFile } from 'node:fs/promises'
import { MigrationError } from '../errors.js'
import type { Sql, Tables } from './connect.js'

const MIGRATIONS_DIR = new URL('../migrations/', import.meta.url)
const FILE_NAME = /^(\d{4})_[\w-]+\.sql$/

interface Migration { id: number, name: string, text: string }

async function loadMigrations (): Promise<Migration[]> {
  const files = (await readdir(MIGRATIONS_DIR)).filter((f) => FILE_NAME.test(f)).sort()
  return Promise.all(files.map(async (name) => ({
    id: Number(FILE_NAME.exec(name)![1]),
    name,
    text: await readFile(new URL(name, MIGRATIONS_DIR), 'utf8')
  })))
}

/** Applies pending migrations; returns the names applied by this call. */
export async function migrate (sql: Sql, t: Tables): Promise<string[]> {
  const migrations = await loadMigrations()
  return sql.begin(async (tx) => {
    // Held until commit: a second process blocks here, then sees the rows this one inserted.
    await tx`SELECT pg_advisory_xact_lock(hashtext(${'fastify-dbos:migrate:' + t.schema}))`
    // Checked first because CREATE SCHEMA IF NOT EXISTS needs the database's
    // CREATE privilege even when the schema exists.
    const [schema] = await tx`SELECT 1 FROM pg_namespace WHERE nspname = ${t.schema}`
    if (schema === undefined) await tx`CREATE SCHEMA ${tx(t.schema)}`
    await tx`CREATE TABLE IF NOT EXISTS ${t.migrations} (
      id integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`
    const done = new Set((await tx<{ id: number }[]>`SELECT id FROM ${t.migrations}`).map((r) => r.id))
    const applied: string[] = []
    for (const m of migrations) {
      if (done.has(m.id)) continue
      await tx`INSERT INTO ${t.migrations} (id, name) VALUES (${m.id}, ${m.name})`
      await tx`SET LOCAL search_path TO ${tx(t.schema)}`
      try {
        // Trusted text shipped with the package, never user input.
        await tx.unsafe(m.text)
      } catch (err) {
        throw new MigrationError(m.name, { cause: err })
      }
      applied.push(m.name)
    }
    return applied
  })
}
