/**
 * Shared test setup. Every test talks to a real Postgres: the one in
 * DATABASE_URL, which `npm test` (test/run.js) points at an embedded server
 * unless the caller set it. Each app or engine gets its own schema, dropped at
 * teardown, so test files run in parallel without seeing each other.
 */
import Fastify, { type FastifyInstance } from 'fastify'
import { customAlphabet } from 'nanoid'
import postgres from 'postgres'
import type { Test } from 'tap'
import dbosPlugin, { type FastifyDbosOptions } from '../../plugins/index.js'
import { Engine, type EngineOptions } from '../../lib/index.js'

export const databaseUrl: string = process.env.DATABASE_URL ?? (() => {
  throw new Error('DATABASE_URL is not set: run the tests with `npm test` (it starts an embedded Postgres) or set DATABASE_URL')
})()

const suffix = customAlphabet('abcdefghijklmnopqrstuvwxyz0123456789', 10)

/** A fresh schema name; drop it with dropSchema (buildApp and buildEngine do). */
export function uniqueSchema (prefix = 't'): string {
  return `${prefix}_${suffix()}`
}

/** A small admin connection for assertions; closed at teardown. */
export function adminSql (t: Test): postgres.Sql {
  const sql = postgres(databaseUrl, { max: 2, onnotice: () => {} })
  t.teardown(() => sql.end({ timeout: 5 }))
  return sql
}

export async function dropSchema (schema: string): Promise<void> {
  const sql = postgres(databaseUrl, { max: 1, onnotice: () => {} })
  try {
    await sql`DROP SCHEMA IF EXISTS ${sql(schema)} CASCADE`
  } finally {
    await sql.end({ timeout: 5 })
  }
}

export const silentLogger = { debug () {}, info () {}, warn () {}, error () {} }

/**
 * A Fastify app with the plugin registered on its own schema, not yet ready.
 * Closed and its schema dropped at teardown (unless keepSchema).
 */
export async function buildApp (t: Test, options: FastifyDbosOptions = {}, { keepSchema = false } = {}): Promise<FastifyInstance> {
  const schema = options.schema ?? uniqueSchema()
  const app = Fastify({ logger: false })
  await app.register(dbosPlugin, { databaseUrl, logger: silentLogger, ...options, schema })
  t.teardown(async () => {
    await app.close()
    if (!keepSchema) await dropSchema(schema)
  })
  return app
}

/** An engine on its own schema, started; stopped and its schema dropped at teardown. */
export async function buildEngine (t: Test, options: EngineOptions = {}): Promise<Engine> {
  const schema = options.schema ?? uniqueSchema()
  const engine = new Engine({ databaseUrl, logger: silentLogger, ...options, schema })
  await engine.start()
  t.teardown(async () => {
    await engine.stop()
    await dropSchema(schema)
  })
  return engine
}

type Truthy<T> = Exclude<T, undefined | null | false | 0 | ''>

/** Polls `check` until it returns a truthy value (and returns that), or fails after `timeoutMs`. */
export async function pollUntil<T> (check: () => T | Promise<T>, { timeoutMs = 20_000, intervalMs = 25, what = 'condition' } = {}): Promise<Truthy<T>> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await check()
    if (value) return value as Truthy<T>
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, intervalMs))
  }
}
