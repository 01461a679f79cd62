/** SQL for queues: enqueueing, and taking queued workflows within the queue's limits. */
import type postgres from 'postgres'
import type { Sql, Tables } from './connect.js'
import { UNOWNED } from './executors.js'
import type { ClaimedRow, NewWorkflowRow } from './rows.js'

export interface QueuedRow extends NewWorkflowRow {
  queue: string
  priority: number
  delayMs: number
  partitionKey: string | null
  deduplicationId: string | null
  debounceKey: string | null
}

export type EnqueueResult =
  | { enqueued: true, workflowId: string }
  /** The id exists: the caller compares definition and input (idempotent repeat, or 422). */
  | { enqueued: false, existing: { name: string, inputHash: string } }
  /** Another workflow with this deduplicationId is ENQUEUED or PENDING in the queue. */
  | { enqueued: false, deduplicated: true }
  /** A workflow (of definition `name`) with this debounce key is ENQUEUED in the queue. */
  | { enqueued: false, debouncing: { name: string } }

/**
 * Runs SQL on our pool or on the caller's own postgres.js transaction, which
 * may come from another postgres.js instance (the app's): so as text with
 * positional parameters, the one interface every instance shares. The text
 * holds no caller input; the schema name is a validated identifier.
 */
export type Runner = Pick<Sql, 'unsafe'> | Pick<postgres.TransactionSql, 'unsafe'>

/**
 * Inserts an ENQUEUED workflow (owned by nobody) and announces it on the
 * queue channel. `sql` may be the caller's own transaction: then the
 * workflow exists if and only if that transaction commits, and the
 * announcement is delivered at its commit. ON CONFLICT DO NOTHING covers the
 * id, the deduplication id and the debounce key at once, so no unique
 * violation ever aborts the caller's transaction.
 *
 * What was in the way is read by a second statement: ON CONFLICT waits for
 * a concurrent insert of the same key and then meets its row, but the
 * INSERT's own snapshot (taken before that insert committed) does not show
 * it; the next statement's snapshot (READ COMMITTED) does. Found nothing (the
 * row left the queue's ENQUEUED or PENDING states meanwhile): try again.
 */
export async function enqueueWorkflow (sql: Runner, t: Tables, r: QueuedRow): Promise<EnqueueResult> {
  const w = `${t.schema}.workflows`
  for (;;) {
    const inserted = await sql.unsafe(`
      WITH ins AS (
        INSERT INTO ${w} (workflow_id, name, status, input, input_hash, request_id, executor_id, app_version, epoch,
                          parent_id, timeout_ms, queue_name, priority, queue_seq, visible_at, partition_key,
                          deduplication_id, debounce_key)
        VALUES ($1, $2, 'ENQUEUED', $3, $4, $5, '${UNOWNED}', $6::text, 1,
                $7::text, $8::float8, $9, $10::int, nextval('${t.schema}.queue_seq'),
                clock_timestamp() + $11::float8 * interval '1 millisecond', $12::text, $13::text, $14::text)
        ON CONFLICT DO NOTHING
        RETURNING workflow_id)
      SELECT workflow_id, pg_notify($15, $9) FROM ins`,
    [r.workflowId, r.name, r.input, r.inputHash, r.requestId, r.appVersion, r.parentId, r.timeoutMs, r.queue, r.priority,
      r.delayMs, r.partitionKey, r.deduplicationId, r.debounceKey, t.queueChannel]) as unknown as { workflow_id: string }[]
    if (inserted[0] !== undefined) return { enqueued: true, workflowId: inserted[0].workflow_id }
    const [row] = await sql.unsafe(`
      SELECT (SELECT name FROM ${w} WHERE workflow_id = $1) AS name,
             (SELECT input_hash FROM ${w} WHERE workflow_id = $1) AS input_hash,
             EXISTS (SELECT 1 FROM ${w} WHERE queue_name = $2 AND deduplication_id = $3::text
                     AND status IN ('ENQUEUED', 'PENDING')) AS dedup,
             (SELECT name FROM ${w} WHERE queue_name = $2 AND debounce_key = $4::text AND status = 'ENQUEUED') AS debouncing`,
    [r.workflowId, r.queue, r.deduplicationId, r.debounceKey]) as unknown as { name: string | null, input_hash: string | null, dedup: boolean, debouncing: string | null }[]
    if (row!.name !== null) return { enqueued: false, existing: { name: row!.name, inputHash: row!.input_hash! } }
    if (row!.dedup) return { enqueued: false, deduplicated: true }
    if (row!.debouncing !== null) return { enqueued: false, debouncing: { name: row!.debouncing } }
  }
}

/**
 * Many enqueues in one statement and one commit (the Enqueuer batches those
 * made on our own pool at once): each row is inserted as enqueueWorkflow
 * would, in the order given (their queue_seq, so first in first out), and
 * each queue they went on is announced once. Returns the ids inserted; a row
 * that met a conflict (its id, deduplication id) is not among them, and the
 * caller sends it through enqueueWorkflow to learn what was in the way.
 */
export async function enqueueWorkflows (sql: Sql, t: Tables, rows: QueuedRow[]): Promise<Set<string>> {
  const col = <K extends keyof QueuedRow>(k: K): QueuedRow[K][] => rows.map((r) => r[k])
  const inserted = await sql<{ workflow_id: string }[]>`
    WITH ins AS (
      INSERT INTO ${t.workflows} (workflow_id, name, status, input, input_hash, request_id, executor_id, app_version, epoch,
                                  parent_id, timeout_ms, queue_name, priority, queue_seq, visible_at, partition_key, deduplication_id)
      SELECT v.workflow_id, v.name, 'ENQUEUED', v.input, v.input_hash, v.request_id, ${UNOWNED}, v.app_version, 1,
             v.parent_id, v.timeout_ms, v.queue_name, v.priority, nextval(${t.schema + '.queue_seq'}::regclass),
             clock_timestamp() + v.delay_ms * interval '1 millisecond', v.partition_key, v.deduplication_id
      FROM unnest(${col('workflowId')}::text[], ${col('name')}::text[], ${col('input')}::text[], ${col('inputHash')}::text[],
                  ${col('requestId')}::text[], ${col('appVersion')}::text[], ${col('parentId')}::text[], ${col('timeoutMs')}::float8[],
                  ${col('queue')}::text[], ${col('priority')}::int[], ${col('delayMs')}::float8[], ${col('partitionKey')}::text[],
                  ${col('deduplicationId')}::text[])
           WITH ORDINALITY AS v(workflow_id, name, input, input_hash, request_id, app_version, parent_id, timeout_ms,
                                queue_name, priority, delay_ms, partition_key, deduplication_id, ord)
      ORDER BY v.ord
      ON CONFLICT DO NOTHING
      RETURNING workflow_id, queue_name),
    note AS (SELECT pg_notify(${t.queueChannel}, q.queue_name) FROM (SELECT DISTINCT queue_name FROM ins) q)
    SELECT workflow_id, (SELECT count(*) FROM note) AS notified FROM ins`
  return new Set(inserted.map((r) => r.workflow_id))
}

/**
 * A debounced enqueue: while a workflow of this queue with `key` is still
 * ENQUEUED, it takes the new input and waits `periodMs` more (a burst
 * collapses into one workflow, started with the last input); otherwise a
 * new one is enqueued, visible after `periodMs`. Returns the workflow's id,
 * or the definition of another workflow that holds the key (nothing done).
 * The UPDATE locks the waiting row, so two debounced enqueues of one key
 * serialise; one that races an insert of the same key finds it next time.
 */
export async function debounce (sql: Runner, t: Tables, r: QueuedRow, periodMs: number): Promise<{ workflowId: string } | { heldBy: string }> {
  for (;;) {
    const updated = await sql.unsafe(`
      UPDATE ${t.schema}.workflows
      SET input = $1, input_hash = $2, visible_at = clock_timestamp() + $3::float8 * interval '1 millisecond', updated_at = now()
      WHERE queue_name = $4 AND debounce_key = $5 AND status = 'ENQUEUED' AND name = $6
      RETURNING workflow_id`, [r.input, r.inputHash, periodMs, r.queue, r.debounceKey, r.name]) as unknown as { workflow_id: string }[]
    if (updated[0] !== undefined) return { workflowId: updated[0].workflow_id }
    const result = await enqueueWorkflow(sql, t, { ...r, delayMs: periodMs })
    if (result.enqueued) return { workflowId: result.workflowId }
    // A workflow of another definition waits with the key: its input cannot be ours.
    if ('debouncing' in result && result.debouncing.name !== r.name) return { heldBy: result.debouncing.name }
    // Otherwise a concurrent enqueue of the same key got in first: it is
    // ENQUEUED now (or already taken), and the UPDATE finds it (or the
    // insert succeeds) next time round. The id is generated: it never exists.
  }
}

export interface QueueLimits {
  concurrency: number | null
  workerConcurrency: number | null
  rateLimit: { limit: number, periodMs: number } | null
  partitioned: boolean
}

export interface DispatchScope {
  queue: string
  executorId: string
  names: string[]
  /** Definitions' default timeouts, for workflows enqueued without one by a process that lacks the definition (a WorkflowClient). */
  defaultTimeouts: { names: string[], timeoutsMs: number[] }
  appVersion: string | null
  limits: QueueLimits
  /** Most workflows one dispatch takes. */
  batch: number
}

export interface Dispatched {
  claimed: ClaimedRow[]
  /** Whether ready work was left behind (a limit was reached, or the batch was full). */
  more: boolean
  /** The earliest visible_at of waiting work still in the future (ms since the epoch), or null. */
  nextVisibleAt: number | null
}

/**
 * Takes ready workflows of a queue for this executor, within its limits: in
 * one transaction that first locks the queue's row, so that dispatchers of
 * one queue on every instance take turns and the global limits (counted
 * from the rows: PENDING ones hold a slot until they finish, whoever runs
 * them; dequeued_at within the rate period) hold. Taken ones become PENDING,
 * owned by this executor, with a new epoch; attempts stays 1 (their first
 * run). In priority, then first-in-first-out order; per partition key when
 * the queue is partitioned. `sql` carries nothing but transactions.
 */
export async function dispatch (sql: Sql, t: Tables, s: DispatchScope): Promise<Dispatched> {
  return sql.begin(async (tx) => {
    const defaultTimeout = tx`(SELECT d.ms FROM unnest(${s.defaultTimeouts.names}::text[], ${s.defaultTimeouts.timeoutsMs}::float8[]) AS d(name, ms) WHERE d.name = w.name)`
    const free = await freeSlots(tx, t, s, tx`SELECT 1 FROM ${t.queues} WHERE name = ${s.queue} FOR UPDATE`.execute())
    const candidates = free === 0 ? [] : s.limits.partitioned ? await partitionedCandidates(tx, t, s, free) : await readyCandidates(tx, t, s, free)
    // The claim and the look for more, in one round trip (as the counts above).
    const claiming = candidates.length === 0 ? [] : tx<ClaimedRow[]>`
      UPDATE ${t.workflows} AS w
      SET status = 'PENDING', executor_id = ${s.executorId}, epoch = epoch + 1, dequeued_at = clock_timestamp(), updated_at = now(),
          -- A queued workflow's timeout counts from now, when it starts;
          -- without one of its own, its definition's default applies.
          timeout_ms = coalesce(timeout_ms, ${defaultTimeout}),
          deadline_at = clock_timestamp() + coalesce(timeout_ms, ${defaultTimeout}) * interval '1 millisecond'
      WHERE workflow_id = ANY(${candidates}::text[]) AND status = 'ENQUEUED'
      RETURNING workflow_id, name, input, request_id, epoch::text AS epoch, attempts, deadline_at`.execute()
    const looking = tx<{ ready: boolean, next: number | null }[]>`
      SELECT EXISTS (SELECT 1 FROM ${t.workflows} WHERE queue_name = ${s.queue} AND status = 'ENQUEUED' AND visible_at <= clock_timestamp()) AS ready,
             (SELECT (extract(epoch FROM min(visible_at)) * 1000)::float8 FROM ${t.workflows}
              WHERE queue_name = ${s.queue} AND status = 'ENQUEUED' AND visible_at > clock_timestamp()) AS next`.execute()
    const [claimed, [next]] = await Promise.all([claiming, looking])
    return { claimed, more: next!.ready, nextVisibleAt: next!.next }
  }) as Promise<Dispatched>
}

/**
 * How many this executor may take now (non-partitioned limits; a
 * partitioned queue's per-key limits are applied later). Its counts are sent
 * at once, behind the queue's lock in the same pipeline: postgres.js sends
 * queries made without waiting back to back on the transaction's
 * connection, and Postgres runs them in order, so the counts still see what
 * the lock protects, for one round trip instead of three.
 */
async function freeSlots (tx: postgres.TransactionSql, t: Tables, s: DispatchScope, locked: Promise<unknown>): Promise<number> {
  const { concurrency, workerConcurrency, rateLimit, partitioned } = s.limits
  const counting = workerConcurrency !== null || (!partitioned && concurrency !== null)
  const running = counting
    ? tx<{ total: number, mine: number }[]>`
      SELECT count(*)::int AS total, count(*) FILTER (WHERE executor_id = ${s.executorId})::int AS mine
      FROM ${t.workflows} WHERE queue_name = ${s.queue} AND status = 'PENDING'`
    : undefined
  const recent = !partitioned && rateLimit !== null
    ? tx<{ n: number }[]>`
      SELECT count(*)::int AS n FROM ${t.workflows}
      WHERE queue_name = ${s.queue} AND dequeued_at > clock_timestamp() - ${rateLimit.periodMs}::float8 * interval '1 millisecond'`
    : undefined
  const [, run, rate] = await Promise.all([locked, running, recent])
  let free = s.batch
  if (run !== undefined) {
    if (workerConcurrency !== null) free = Math.min(free, workerConcurrency - run[0]!.mine)
    if (!partitioned && concurrency !== null) free = Math.min(free, concurrency - run[0]!.total)
  }
  if (rate !== undefined) free = Math.min(free, rateLimit!.limit - rate[0]!.n)
  return Math.max(0, free)
}

async function readyCandidates (tx: postgres.TransactionSql, t: Tables, s: DispatchScope, n: number): Promise<string[]> {
  const rows = await tx<{ workflow_id: string }[]>`
    SELECT workflow_id FROM ${t.workflows}
    WHERE queue_name = ${s.queue} AND status = 'ENQUEUED' AND visible_at <= clock_timestamp()
      AND name = ANY(${s.names}::text[]) AND app_version IS NOT DISTINCT FROM ${s.appVersion}::text
    ORDER BY priority, queue_seq
    LIMIT ${n}
    FOR UPDATE SKIP LOCKED`
  return rows.map((r) => r.workflow_id)
}

/** Ready rows a partitioned queue's dispatch looks at: bounds its work under a large backlog. */
const PARTITION_WINDOW = 10_000

/**
 * A partitioned queue: within each partition key, in priority then FIFO
 * order, as many as the key's free concurrency and rate allow; across keys,
 * in the same order, at most `n`. Looks at the first PARTITION_WINDOW ready
 * rows in order, leaving out the keys at their limit (`full`): a key's
 * backlog of more than the window would otherwise fill it, ahead of every
 * other key's work, which then waited until that backlog drained. (Rows of
 * full keys ahead in the order are still read and skipped: the cost of a
 * dispatch grows with the backlog of full keys ahead of the first ready key.)
 */
async function partitionedCandidates (tx: postgres.TransactionSql, t: Tables, s: DispatchScope, n: number): Promise<string[]> {
  const { concurrency, rateLimit } = s.limits
  const period = rateLimit?.periodMs ?? 0
  const rows = await tx<{ workflow_id: string }[]>`
    WITH running AS (
      SELECT partition_key, count(*)::int AS n FROM ${t.workflows}
      WHERE queue_name = ${s.queue} AND status = 'PENDING' GROUP BY partition_key),
    recent AS (
      SELECT partition_key, count(*)::int AS n FROM ${t.workflows}
      WHERE queue_name = ${s.queue} AND ${rateLimit !== null}
        AND dequeued_at > clock_timestamp() - ${period}::float8 * interval '1 millisecond'
      GROUP BY partition_key),
    full_keys AS (
      SELECT partition_key FROM running WHERE n >= coalesce(${concurrency}::int, 2147483647)
      UNION
      SELECT partition_key FROM recent WHERE n >= coalesce(${rateLimit?.limit ?? null}::int, 2147483647)),
    ready AS (
      SELECT workflow_id, partition_key, priority, queue_seq FROM ${t.workflows} w
      WHERE queue_name = ${s.queue} AND status = 'ENQUEUED' AND visible_at <= clock_timestamp()
        AND name = ANY(${s.names}::text[]) AND app_version IS NOT DISTINCT FROM ${s.appVersion}::text
        -- Uncorrelated: the NOT IN is a hashed lookup, the NOT EXISTS runs once.
        AND CASE WHEN w.partition_key IS NULL THEN NOT EXISTS (SELECT 1 FROM full_keys WHERE partition_key IS NULL)
                 ELSE w.partition_key NOT IN (SELECT partition_key FROM full_keys WHERE partition_key IS NOT NULL) END
      ORDER BY priority, queue_seq
      LIMIT ${PARTITION_WINDOW}),
    ranked AS (
      SELECT r.workflow_id, r.priority, r.queue_seq,
             row_number() OVER (PARTITION BY r.partition_key ORDER BY r.priority, r.queue_seq) AS rank,
             coalesce(${concurrency}::int - coalesce(ru.n, 0), 2147483647) AS free_conc,
             coalesce(${rateLimit?.limit ?? null}::int - coalesce(re.n, 0), 2147483647) AS free_rate
      FROM ready r
      LEFT JOIN running ru ON ru.partition_key IS NOT DISTINCT FROM r.partition_key
      LEFT JOIN recent re ON re.partition_key IS NOT DISTINCT FROM r.partition_key)
    SELECT workflow_id FROM ${t.workflows}
    WHERE workflow_id IN (
      SELECT workflow_id FROM ranked WHERE rank <= least(free_conc, free_rate) ORDER BY priority, queue_seq LIMIT ${n})
    FOR UPDATE SKIP LOCKED`
  return rows.map((r) => r.workflow_id)
}

/** Makes sure the queue has its row (dispatchers lock it). */
export async function ensureQueue (sql: Sql, t: Tables, queue: string): Promise<void> {
  await sql`INSERT INTO ${t.queues} (name) VALUES (${queue}) ON CONFLICT (name) DO NOTHING`
}
