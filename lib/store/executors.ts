/**
 * SQL for the executors table: who is alive, judged by the database's clock
 * alone (clock_timestamp()), never by comparing two machines' clocks.
 */
import type { Sql, Tables } from './connect.js'
import type { ExecutorRow } from './rows.js'

/**
 * The owner of a PENDING workflow handed off on purpose, for any live
 * instance that can run it to adopt. No executor can have this id: an
 * executorId must not be empty.
 */
export const UNOWNED = ''

export interface Registration {
  executorId: string
  instance: string
  appVersion: string | null
  leaseMs: number
}

/**
 * Takes the executor id for this process: inserts its row, or takes over one
 * whose holder is dead (stopped, or silent for longer than its lease).
 * False when a live process holds the id. The conflict's WHERE is evaluated
 * on the locked row, so two processes taking one id at once cannot both
 * succeed.
 */
export async function registerExecutor (sql: Sql, t: Tables, r: Registration): Promise<boolean> {
  const rows = await sql`
    INSERT INTO ${t.executors} AS e (executor_id, instance, app_version, lease_ms)
    VALUES (${r.executorId}, ${r.instance}, ${r.appVersion}, ${r.leaseMs})
    ON CONFLICT (executor_id) DO UPDATE
      SET instance = EXCLUDED.instance, app_version = EXCLUDED.app_version, lease_ms = EXCLUDED.lease_ms,
          started_at = clock_timestamp(), heartbeat_at = clock_timestamp(), stopped_at = NULL
      WHERE e.stopped_at IS NOT NULL OR e.heartbeat_at < clock_timestamp() - e.lease_ms * interval '1 millisecond'
    RETURNING 1`
  return rows.length === 1
}

export interface Beat {
  /** The row still names this process: nobody declared it dead and took the id. */
  held: boolean
  /** The database's clock when it answered, in ms since the epoch. */
  dbNow: number
  /** Ids of dead executors other than this one: their PENDING workflows are up for adoption. */
  dead: string[]
  /** Of those, the ones that stopped gracefully (UNOWNED aside): certainly gone, not merely silent. */
  stopped: string[]
}

/**
 * One heartbeat: refreshes this process's row (only if it still holds the
 * id), and in the same statement reads the database's clock and which
 * executors are dead. One statement a beat, so an idle instance costs one
 * statement per heartbeatMs.
 */
export async function beat (sql: Sql, t: Tables, executorId: string, instance: string): Promise<Beat> {
  const [row] = await sql<{ held: boolean, db_now: number, dead: string[], stopped: string[] }[]>`
    WITH beat AS (
      UPDATE ${t.executors} SET heartbeat_at = clock_timestamp()
      WHERE executor_id = ${executorId} AND instance = ${instance}
      RETURNING 1)
    SELECT EXISTS (SELECT 1 FROM beat) AS held,
           (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS db_now,
           ARRAY(SELECT executor_id FROM ${t.executors}
                 WHERE executor_id <> ${executorId}
                   AND (stopped_at IS NOT NULL OR heartbeat_at < clock_timestamp() - lease_ms * interval '1 millisecond')
                 UNION ALL
                 -- Handed off on purpose (setAppVersion, another version's work at start): nobody's.
                 SELECT ${UNOWNED}::text WHERE EXISTS (
                   SELECT 1 FROM ${t.workflows} WHERE executor_id = ${UNOWNED} AND status = 'PENDING')) AS dead,
           ARRAY(SELECT executor_id FROM ${t.executors} WHERE executor_id <> ${executorId} AND stopped_at IS NOT NULL) AS stopped`
  return { held: row!.held, dbNow: row!.db_now, dead: row!.dead, stopped: row!.stopped }
}

/**
 * A graceful stop: marks this process's row stopped, so that the living
 * adopt what it leaves at once instead of after its lease. Only if it still
 * holds the id.
 */
export async function markStopped (sql: Sql, t: Tables, executorId: string, instance: string): Promise<void> {
  await sql`
    UPDATE ${t.executors} SET stopped_at = clock_timestamp()
    WHERE executor_id = ${executorId} AND instance = ${instance}`
}

/**
 * Forgets executors silent for over an hour that own no PENDING workflow any
 * more (all adopted or finished), so that the table does not grow with every
 * container that ever ran. Kept for a while before that, for executors().
 */
export async function forgetDead (sql: Sql, t: Tables, ids: string[]): Promise<void> {
  if (ids.length === 0) return
  await sql`
    DELETE FROM ${t.executors} e
    WHERE e.executor_id = ANY(${ids}::text[])
      AND coalesce(e.stopped_at, e.heartbeat_at) < clock_timestamp() - interval '1 hour'
      AND NOT EXISTS (SELECT 1 FROM ${t.workflows} w WHERE w.executor_id = e.executor_id AND w.status = 'PENDING')`
}

/** Every known executor, with its heartbeat's age by the database's clock and the PENDING workflows it owns. */
export async function listExecutors (sql: Sql, t: Tables): Promise<ExecutorRow[]> {
  return sql<ExecutorRow[]>`
    SELECT e.executor_id, e.app_version, e.lease_ms, e.started_at, e.heartbeat_at, e.stopped_at,
           (extract(epoch FROM clock_timestamp() - e.heartbeat_at) * 1000)::float8 AS heartbeat_age_ms,
           (SELECT count(*)::int FROM ${t.workflows} w WHERE w.executor_id = e.executor_id AND w.status = 'PENDING') AS pending
    FROM ${t.executors} e
    ORDER BY e.executor_id`
}

/** Tells every instance to look for work to adopt now (an executor stopped, or work was handed off). */
export async function announceAdoptable (sql: Sql, t: Tables): Promise<void> {
  await sql`SELECT pg_notify(${t.executorsChannel}, '')`
}
