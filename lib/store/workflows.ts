/**
 * SQL for the workflows table. Writes take arrays and move many rows per
 * statement (unnest), so concurrent workflows share round trips and commits.
 * Every write made on behalf of a running workflow is conditioned on its epoch
 * (the fencing token), so a runner that lost ownership changes nothing.
 */
import type postgres from 'postgres'
import type { Sql, Tables } from './connect.js'
import { DEFAULT_LIST_LIMIT, type ListFilter } from '../list-filter.js'
import type { ClaimedRow, ExistingWorkflow, InsertedWorkflow, NewWorkflowRow, PendingRow, WorkflowRow } from './rows.js'

/**
 * A new workflow's epoch, written by every start (newWorkflows). A run
 * launched before its start row is written (writes/opening.ts) holds it.
 */
export const FIRST_EPOCH = '1'

/**
 * Inserts new PENDING workflows. Ids that already exist are left untouched and
 * not returned; the caller looks them up (findExisting) to compare.
 * Concurrency: ON CONFLICT waits for a concurrent uncommitted insert of the
 * same id to commit or abort, so exactly one inserter wins and the others
 * then find its row.
 */
export async function insertWorkflows (sql: Sql, t: Tables, rows: NewWorkflowRow[]): Promise<InsertedWorkflow[]> {
  return sql<InsertedWorkflow[]>`${newWorkflows(sql, t, rows)}`
}

/** insertWorkflows's statement; writeCheckpoints also inserts workflows with it, with their first step (openings). */
export function newWorkflows (sql: Sql, t: Tables, rows: NewWorkflowRow[]): postgres.PendingQuery<postgres.Row[]> {
  // One row (one start at a time): plain parameters plan and parse faster than unnest.
  if (rows.length === 1) {
    const r = rows[0]!
    return sql`
    INSERT INTO ${t.workflows} (workflow_id, name, status, input, input_hash, request_id, executor_id, app_version, epoch, parent_id, deadline_at)
    VALUES (${r.workflowId}, ${r.name}, 'PENDING', ${r.input}, ${r.inputHash}, ${r.requestId}, ${r.executorId}, ${r.appVersion}::text, ${FIRST_EPOCH}::bigint,
            ${r.parentId}::text, ${deadline(sql, t, r.timeoutMs, r.parentId)})
    ON CONFLICT (workflow_id) DO NOTHING
    RETURNING workflow_id, epoch::text AS epoch, deadline_at`
  }
  return sql`
    INSERT INTO ${t.workflows} (workflow_id, name, status, input, input_hash, request_id, executor_id, app_version, epoch, parent_id, deadline_at)
    SELECT v.workflow_id, v.name, 'PENDING', v.input, v.input_hash, v.request_id, v.executor_id, v.app_version, ${FIRST_EPOCH}::bigint,
           v.parent_id,
           least(clock_timestamp() + v.timeout_ms * interval '1 millisecond',
                 (SELECT p.deadline_at FROM ${t.workflows} p WHERE p.workflow_id = v.parent_id))
    FROM unnest(${rows.map((r) => r.workflowId)}::text[], ${rows.map((r) => r.name)}::text[],
                ${rows.map((r) => r.input)}::text[], ${rows.map((r) => r.inputHash)}::text[],
                ${rows.map((r) => r.requestId)}::text[], ${rows.map((r) => r.executorId)}::text[],
                ${rows.map((r) => r.appVersion)}::text[], ${rows.map((r) => r.parentId)}::text[],
                ${rows.map((r) => r.timeoutMs)}::float8[])
         AS v(workflow_id, name, input, input_hash, request_id, executor_id, app_version, parent_id, timeout_ms)
    ON CONFLICT (workflow_id) DO NOTHING
    RETURNING workflow_id, epoch::text AS epoch, deadline_at`
}

/**
 * A new workflow's deadline: now plus its timeout, by the database's clock,
 * and never later than its parent's (a child lives no longer than its
 * parent may). NULL when neither has one. Without either (the common case)
 * the statement carries no subquery.
 */
function deadline (sql: Sql, t: Tables, timeoutMs: number | null, parentId: string | null): postgres.PendingQuery<postgres.Row[]> {
  const own = timeoutMs === null ? sql`NULL::timestamptz` : sql`clock_timestamp() + ${timeoutMs}::float8 * interval '1 millisecond'`
  if (parentId === null) return own
  return sql`least(${own}, (SELECT p.deadline_at FROM ${t.workflows} p WHERE p.workflow_id = ${parentId}))`
}

/** The identity of existing workflows, for idempotency checks after a conflict. */
export async function findExisting (sql: Sql, t: Tables, ids: string[]): Promise<ExistingWorkflow[]> {
  return sql<ExistingWorkflow[]>`
    SELECT workflow_id, name, input_hash, status, executor_id FROM ${t.workflows} WHERE workflow_id = ANY(${ids}::text[])`
}

const COLUMNS = ['workflow_id', 'name', 'status', 'input', 'output', 'error', 'request_id',
  'executor_id', 'app_version', 'attempts', 'created_at', 'updated_at', 'completed_at', 'wake_at', 'parent_id', 'deadline_at', 'queue_name']

export async function getWorkflow (sql: Sql, t: Tables, workflowId: string): Promise<WorkflowRow | undefined> {
  const [row] = await sql<WorkflowRow[]>`
    SELECT ${sql(COLUMNS)}, epoch::text AS epoch FROM ${t.workflows} WHERE workflow_id = ${workflowId}`
  return row
}

/** Only what getResult needs: status and outcome, not the input. */
export async function getOutcome (sql: Sql, t: Tables, workflowId: string): Promise<Pick<WorkflowRow, 'status' | 'output' | 'error'> | undefined> {
  const [row] = await sql<Pick<WorkflowRow, 'status' | 'output' | 'error'>[]>`
    SELECT status, output, error FROM ${t.workflows} WHERE workflow_id = ${workflowId}`
  return row
}

/** A position in a list: where the next page starts (keyset paging). */
export interface ListCursor { createdAt: string, workflowId: string }

/**
 * Workflows matching `f`, ordered by creation time (then id). With `after`,
 * the page after that position: a keyset condition on (created_at,
 * workflow_id), which the (created_at, workflow_id) and (status, created_at,
 * workflow_id) indexes serve without counting the rows before it, however
 * deep the page. Each row carries its cursor (created_at as text: full
 * microsecond precision, which a JS Date would round off).
 */
export async function listWorkflows (sql: Sql, t: Tables, f: ListFilter, after?: ListCursor): Promise<(WorkflowRow & { cursor_at: string })[]> {
  const desc = f.order !== 'asc'
  const conditions = [
    f.parentId !== undefined && sql`parent_id = ${f.parentId}`,
    f.queueName !== undefined && sql`queue_name = ${f.queueName}`,
    // ::text first: a parameter cast straight to timestamptz is typed
    // timestamptz, and postgres.js then sends it through a JS Date, which
    // drops the microseconds (rows of one millisecond were skipped or repeated).
    after !== undefined && (desc
      ? sql`(created_at, workflow_id) < (${after.createdAt}::text::timestamptz, ${after.workflowId}::text)`
      : sql`(created_at, workflow_id) > (${after.createdAt}::text::timestamptz, ${after.workflowId}::text)`),
    f.name !== undefined && sql`name = ${f.name}`,
    f.status !== undefined && sql`status = ${f.status}`,
    f.requestId !== undefined && sql`request_id = ${f.requestId}`,
    f.executorId !== undefined && sql`executor_id = ${f.executorId}`,
    f.appVersion !== undefined && sql`app_version IS NOT DISTINCT FROM ${f.appVersion}::text`,
    f.createdAfter !== undefined && sql`created_at >= ${f.createdAfter}`,
    f.createdBefore !== undefined && sql`created_at < ${f.createdBefore}`
  ].filter((c) => c !== false)
  const where = conditions.reduce((acc, c) => sql`${acc} AND ${c}`, sql`TRUE`)
  const order = desc ? sql`DESC` : sql`ASC`
  return sql<(WorkflowRow & { cursor_at: string })[]>`
    SELECT ${sql(COLUMNS)}, epoch::text AS epoch, created_at::text AS cursor_at FROM ${t.workflows}
    WHERE ${where}
    ORDER BY created_at ${order}, workflow_id ${order}
    LIMIT ${f.limit ?? DEFAULT_LIST_LIMIT} OFFSET ${f.offset ?? 0}`
}

/**
 * PENDING workflows owned by an executor: the ones its recovery resumes.
 * Suspended ones (wake_at set) are left to the wake-up scheduler: they did not
 * crash, and replaying them early would only suspend them again.
 */
export async function listPending (sql: Sql, t: Tables, executorId: string, appVersion: string | null): Promise<PendingRow[]> {
  return sql<PendingRow[]>`
    SELECT workflow_id, name, attempts, epoch::text AS epoch FROM ${t.workflows}
    WHERE executor_id = ${executorId} AND status = 'PENDING' AND wake_at IS NULL
      AND app_version IS NOT DISTINCT FROM ${appVersion}::text
    ORDER BY created_at`
}

/**
 * Takes PENDING workflows of this executor for a new run: bumps the epoch,
 * which fences off any runner still holding the old one, and counts the
 * attempt. UPDATE locks each row, so two claimers cannot both get one epoch.
 * Suspended workflows (wake_at set) are not taken: they belong to the wake-up
 * scheduler, and a start retried while one sleeps must not count an attempt.
 * The condition is re-checked on the locked row, so a claim racing the
 * scheduler's takes the workflow at most once.
 */
export async function claimWorkflows (sql: Sql, t: Tables, executorId: string, appVersion: string | null, ids: string[]): Promise<ClaimedRow[]> {
  return sql<ClaimedRow[]>`
    UPDATE ${t.workflows}
    SET epoch = epoch + 1, attempts = attempts + 1, updated_at = now()
    WHERE workflow_id = ANY(${ids}::text[]) AND executor_id = ${executorId} AND status = 'PENDING' AND wake_at IS NULL
      AND app_version IS NOT DISTINCT FROM ${appVersion}::text
    RETURNING workflow_id, name, input, request_id, epoch::text AS epoch, attempts, deadline_at`
}

/**
 * Hands back workflows a graceful shutdown left unfinished: their run does not
 * count as an attempt. The UPDATE locks each row and re-checks the epoch, so a
 * workflow claimed since is left alone; and wake_at, so a run whose suspension
 * was being written when the shutdown listed it is left alone too: it did not
 * stop unfinished, and a wake-up, not a recovery, resumes it (counting nothing).
 */
export async function releaseWorkflows (sql: Sql, t: Tables, rows: { workflowId: string, epoch: string }[]): Promise<void> {
  await sql`
    UPDATE ${t.workflows} AS w SET attempts = greatest(w.attempts - 1, 0), updated_at = now()
    FROM unnest(${rows.map((r) => r.workflowId)}::text[], ${rows.map((r) => r.epoch)}::bigint[]) AS v(workflow_id, epoch)
    WHERE w.workflow_id = v.workflow_id AND w.epoch = v.epoch AND w.status = 'PENDING' AND w.wake_at IS NULL`
}

/** A workflow's definition name and app version, or undefined when there is none with this id. */
export async function identify (sql: Sql, t: Tables, workflowId: string): Promise<{ name: string, appVersion: string | null } | undefined> {
  const [row] = await sql<{ name: string, app_version: string | null }[]>`
    SELECT name, app_version FROM ${t.workflows} WHERE workflow_id = ${workflowId}`
  return row === undefined ? undefined : { name: row.name, appVersion: row.app_version }
}
