/**
 * The one statement that records progress of running workflows: new step
 * checkpoints, final outcomes, and new workflows with their first checkpoint,
 * for many workflows at once. Putting them in one statement lets a workflow's
 * last step and its completion share a round trip and a commit, lets a start
 * share one with its first step, and lets concurrent workflows share them
 * too; and a batch commits all or nothing.
 */
import type postgres from 'postgres'
import type { Sql, Tables } from './connect.js'
import { newWorkflows } from './workflows.js'
import type { Completion, StartWithStep, StepWrite } from './rows.js'

export interface CheckpointsWritten {
  /** `${stepId}:${workflowId}` of each step row inserted. */
  steps: Set<string>
  /** Ids of workflows whose outcome was recorded. */
  completed: Set<string>
}

export const stepKey = (workflowId: string, stepId: number): string => `${stepId}:${workflowId}`

/**
 * Step rows are written only while their workflow is PENDING under the
 * writer's epoch; outcomes likewise. Neither touches a row it does not own, so
 * a fenced-off runner changes nothing. A step key already present is left as it
 * is (first writer wins), so a replay always sees one outcome per step.
 *
 * Concurrency: the step insert's epoch join takes no row lock on purpose. A
 * stale owner racing an epoch bump can at worst record a step the new owner
 * then reads back instead of running (identical to a replay); the completion
 * UPDATE locks the row and re-checks the epoch, so a stale owner can never
 * record an outcome. Both sub-statements see one snapshot, so a step and its
 * workflow's completion in the same batch both apply.
 *
 * Completions are announced with pg_notify for getResult waiters elsewhere.
 *
 * A batch of one (every write when workflows run one at a time) uses plain
 * parameters instead of unnest: the array forms cost Postgres a fresh custom
 * plan and array parsing on every execution, about 0.15 ms per statement,
 * which is a quarter of a commit on a fast disk.
 */
export async function writeCheckpoints (sql: Sql, t: Tables, steps: StepWrite[], completions: Completion[], openings: StartWithStep[] = []): Promise<CheckpointsWritten> {
  // Only the parts that have rows: a combined statement plans and runs its
  // empty parts too, which costs about as much as a round trip. The shapes
  // one workflow at a time produces (opening; step; last step + completion)
  // are written out: building statements from parts costs time on every write.
  const rows = openings.length > 0
    ? await sql<Written[]>`${withOpenings(sql, t, steps, completions, openings)}`
    : completions.length === 0
      ? await sql<Written[]>`${insertSteps(sql, t, steps)}`
      : steps.length === 0
        ? await sql<Written[]>`${completeWorkflows(sql, t, completions)}`
        : await sql<Written[]>`
          WITH new_steps AS (${insertSteps(sql, t, steps)}), done AS (${completeWorkflows(sql, t, completions)})
          SELECT * FROM new_steps UNION ALL SELECT * FROM done`
  const written: CheckpointsWritten = { steps: new Set(), completed: new Set() }
  for (const r of rows) {
    if (r.step_id !== null) written.steps.add(stepKey(r.workflow_id, r.step_id))
    else written.completed.add(r.workflow_id)
  }
  return written
}

/** Openings, with whatever else the batch holds, in one statement. */
function withOpenings (sql: Sql, t: Tables, steps: StepWrite[], completions: Completion[], openings: StartWithStep[]): postgres.PendingQuery<postgres.Row[]> {
  const started = newWorkflows(sql, t, openings.map((o) => o.start))
  const opened = insertOpeningSteps(sql, t, openings.map((o) => o.step))
  // Openings alone: the step INSERT is the main statement, reading the workflow INSERT's rows.
  if (steps.length === 0 && completions.length === 0) return sql`WITH started AS (${started}) ${opened}`
  const parts = [sql`started AS (${started}), opened AS (${opened})`]
  const selects = [sql`SELECT * FROM opened`]
  if (steps.length > 0) {
    parts.push(sql`new_steps AS (${insertSteps(sql, t, steps)})`)
    selects.push(sql`SELECT * FROM new_steps`)
  }
  if (completions.length > 0) {
    parts.push(sql`done AS (${completeWorkflows(sql, t, completions)})`)
    selects.push(sql`SELECT * FROM done`)
  }
  return sql`WITH ${parts.reduce((a, b) => sql`${a}, ${b}`)} ${selects.reduce((a, b) => sql`${a} UNION ALL ${b}`)}`
}

/**
 * The first checkpoints of workflows this very statement inserts (the
 * `started` part: newWorkflows, with its RETURNING). They join those rows,
 * not the table, which a sibling sub-statement cannot see: so a start whose id
 * is taken writes no step either. No epoch check: the row was just inserted
 * with FIRST_EPOCH by this statement, and nothing else can hold it yet.
 *
 * A completion never shares a statement with its own workflow's opening: a
 * run records its outcome only once its start is durable (LocalRuns#execute).
 */
function insertOpeningSteps (sql: Sql, t: Tables, steps: StepWrite[]): postgres.PendingQuery<postgres.Row[]> {
  if (steps.length === 1) {
    const s = steps[0]!
    return sql`
    INSERT INTO ${t.steps} (workflow_id, step_id, name, output, error, started_at)
    SELECT s.workflow_id, ${s.stepId}::int, ${s.name}::text, ${s.output}::text, ${s.error}::text, ${s.startedAt}::timestamptz
    FROM started s
    RETURNING workflow_id, step_id`
  }
  return sql`
    INSERT INTO ${t.steps} (workflow_id, step_id, name, output, error, started_at)
    SELECT v.workflow_id, v.step_id, v.name, v.output, v.error, v.started_at
    FROM unnest(${steps.map((r) => r.workflowId)}::text[], ${steps.map((r) => r.stepId)}::int[],
                ${steps.map((r) => r.name)}::text[], ${steps.map((r) => r.output)}::text[], ${steps.map((r) => r.error)}::text[],
                ${steps.map((r) => r.startedAt?.toISOString() ?? null)}::timestamptz[])
         AS v(workflow_id, step_id, name, output, error, started_at)
    JOIN started s ON s.workflow_id = v.workflow_id
    RETURNING workflow_id, step_id`
}

type Written = { workflow_id: string, step_id: number | null }

function insertSteps (sql: Sql, t: Tables, steps: StepWrite[]): postgres.PendingQuery<postgres.Row[]> {
  if (steps.length === 1) {
    const s = steps[0]!
    return sql`
    INSERT INTO ${t.steps} (workflow_id, step_id, name, output, error, started_at)
    SELECT w.workflow_id, ${s.stepId}::int, ${s.name}::text, ${s.output}::text, ${s.error}::text, ${s.startedAt}::timestamptz
    FROM ${t.workflows} w
    WHERE w.workflow_id = ${s.workflowId} AND w.epoch = ${s.epoch}::bigint AND w.status = 'PENDING'
    ON CONFLICT (workflow_id, step_id) DO NOTHING
    RETURNING workflow_id, step_id`
  }
  return sql`
    INSERT INTO ${t.steps} (workflow_id, step_id, name, output, error, started_at)
    SELECT v.workflow_id, v.step_id, v.name, v.output, v.error, v.started_at
    FROM unnest(${steps.map((r) => r.workflowId)}::text[], ${steps.map((r) => r.epoch)}::bigint[],
                ${steps.map((r) => r.stepId)}::int[], ${steps.map((r) => r.name)}::text[],
                ${steps.map((r) => r.output)}::text[], ${steps.map((r) => r.error)}::text[],
                ${steps.map((r) => r.startedAt?.toISOString() ?? null)}::timestamptz[])
         AS v(workflow_id, epoch, step_id, name, output, error, started_at)
    JOIN ${t.workflows} w ON w.workflow_id = v.workflow_id AND w.epoch = v.epoch AND w.status = 'PENDING'
    ON CONFLICT (workflow_id, step_id) DO NOTHING
    RETURNING workflow_id, step_id`
}

function completeWorkflows (sql: Sql, t: Tables, completions: Completion[]): postgres.PendingQuery<postgres.Row[]> {
  if (completions.length === 1) {
    const c = completions[0]!
    return sql`
    UPDATE ${t.workflows} AS w
    SET status = ${c.status}, output = ${c.output}, error = ${c.error}, updated_at = now(), completed_at = now()
    WHERE w.workflow_id = ${c.workflowId} AND w.epoch = ${c.epoch}::bigint AND w.status = 'PENDING'
    RETURNING w.workflow_id, ${announceCompletion(sql, t)} AS step_id`
  }
  return sql`
    UPDATE ${t.workflows} AS w
    SET status = v.status, output = v.output, error = v.error, updated_at = now(), completed_at = now()
    FROM unnest(${completions.map((r) => r.workflowId)}::text[], ${completions.map((r) => r.epoch)}::bigint[],
                ${completions.map((r) => r.status)}::text[], ${completions.map((r) => r.output)}::text[],
                ${completions.map((r) => r.error)}::text[]) AS v(workflow_id, epoch, status, output, error)
    WHERE w.workflow_id = v.workflow_id AND w.epoch = v.epoch AND w.status = 'PENDING'
    RETURNING w.workflow_id, ${announceCompletion(sql, t)} AS step_id`
}

/**
 * A completion's announcements, as the RETURNING expression of its UPDATE
 * (always NULL): on the done channel for result waiters, and, for a queued
 * workflow, on the queue channel, since its slot is free now. coalesce runs
 * its second argument only when the first is NULL, which it always is.
 */
function announceCompletion (sql: Sql, t: Tables): postgres.PendingQuery<postgres.Row[]> {
  return sql`coalesce((SELECT NULL::int FROM pg_notify(${t.channel}, w.workflow_id)),
    CASE WHEN w.queue_name IS NOT NULL THEN (SELECT NULL::int FROM pg_notify(${t.queueChannel}, w.queue_name)) END)`
}
