/** SQL for messages: sent to a workflow, consumed by its ctx.recv exactly once. */
import type { Sql, Tables } from './connect.js'
import { ownerOf } from './owner.js'
import type { ClaimedRow } from './rows.js'

export type SendResult = 'sent' | 'duplicate' | 'not-found' | 'finished'

/**
 * Delivers a message to a PENDING (or queued) workflow, in send order per
 * topic. With an idempotency key, a repeated send delivers nothing more
 * ('duplicate'), also after the first was consumed. Announces it on the
 * messages channel to the workflow's owner, whose suspended ctx.recv wakes.
 */
export async function sendMessage (sql: Sql, t: Tables, m: { to: string, topic: string, message: string, idempotencyKey: string | null }): Promise<SendResult> {
  const [row] = await sql<{ status: string | null, duplicate: boolean, sent: boolean }[]>`
    WITH target AS (
      SELECT status, executor_id FROM ${t.workflows} WHERE workflow_id = ${m.to}),
    dup AS (
      SELECT 1 FROM ${t.messages} WHERE workflow_id = ${m.to} AND idempotency_key = ${m.idempotencyKey}::text),
    sent AS (
      INSERT INTO ${t.messages} (workflow_id, topic, message, idempotency_key)
      SELECT ${m.to}, ${m.topic}, ${m.message}, ${m.idempotencyKey}::text
      FROM target WHERE status IN ('PENDING', 'ENQUEUED') AND NOT EXISTS (SELECT 1 FROM dup)
      ON CONFLICT (workflow_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
      RETURNING 1),
    note AS (
      SELECT pg_notify(${t.messagesChannel}, (SELECT executor_id FROM target) || E'\\n' || ${m.to}) FROM sent)
    SELECT (SELECT status FROM target) AS status, EXISTS (SELECT 1 FROM dup) AS duplicate,
           (SELECT count(*) FROM note) > 0 AS sent`
  if (row!.status === null) return 'not-found'
  if (row!.sent) return 'sent'
  // The key was taken by a concurrent send of the same message, or earlier.
  if (row!.duplicate || (m.idempotencyKey !== null && ['PENDING', 'ENQUEUED'].includes(row!.status))) return 'duplicate'
  return 'finished'
}

/**
 * Many sends without an idempotency key in one statement and one commit
 * (the Messaging class batches those made at once): each as sendMessage
 * would, in the order given, each waiter's owner told once. Returns each
 * target's status when the message was sent (PENDING or ENQUEUED: sent;
 * another: finished, nothing sent), or null for an unknown workflow.
 */
export async function sendMessages (sql: Sql, t: Tables, rows: { to: string, topic: string, message: string }[]): Promise<(string | null)[]> {
  const result = await sql<{ ord: string, status: string | null }[]>`
    WITH v AS (
      SELECT * FROM unnest(${rows.map((r) => r.to)}::text[], ${rows.map((r) => r.topic)}::text[], ${rows.map((r) => r.message)}::text[])
        WITH ORDINALITY AS v(workflow_id, topic, message, ord)),
    target AS (
      SELECT v.ord, v.workflow_id, v.topic, v.message, w.status, w.executor_id
      FROM v LEFT JOIN ${t.workflows} w ON w.workflow_id = v.workflow_id),
    sent AS (
      INSERT INTO ${t.messages} (workflow_id, topic, message)
      SELECT workflow_id, topic, message FROM target WHERE status IN ('PENDING', 'ENQUEUED') ORDER BY ord
      RETURNING 1),
    note AS (
      SELECT pg_notify(${t.messagesChannel}, p.payload)
      FROM (SELECT DISTINCT executor_id || E'\\n' || workflow_id AS payload FROM target WHERE status IN ('PENDING', 'ENQUEUED')) p)
    SELECT ord::text, status, (SELECT count(*) FROM note) + (SELECT count(*) FROM sent) AS written FROM target ORDER BY ord`
  const byOrd = new Map(result.map((r) => [Number(r.ord), r.status]))
  return rows.map((_r, i) => byOrd.get(i + 1) ?? null)
}

export type Received = { outcome: 'received', message: string } | { outcome: 'none' | 'recorded' | 'fenced' }

/**
 * ctx.recv: consumes the oldest unconsumed message on `topic` and records it
 * as step `stepId`'s output, in one statement, so a message is consumed if
 * and only if the step that returns it is recorded. Only while the workflow
 * is the run's (ownerOf) and the step is not recorded yet ('recorded': an
 * earlier try did, its answer lost). SKIP LOCKED: two parallel recvs of one
 * run take different messages. `sentBy`: the recv's deadline; a message sent
 * after it (the oldest one, so that order holds) is left for the next recv,
 * also when the run looks only later (woken late, or resumed after a crash).
 */
export async function receiveMessage (sql: Sql, t: Tables, r: { workflowId: string, epoch: string, topic: string, stepId: number, name: string, startedAt: Date, sentBy: Date | null }): Promise<Received> {
  const [row] = await sql<{ owned: boolean, done: boolean, message: string | null, got: boolean }[]>`
    WITH owner AS (${ownerOf(sql, t, r.workflowId, r.epoch)}),
    done AS (
      SELECT 1 FROM ${t.steps} WHERE workflow_id = ${r.workflowId} AND step_id = ${r.stepId}),
    m AS (
      UPDATE ${t.messages} SET consumed_step = ${r.stepId}
      WHERE (workflow_id, topic, seq) = (
        SELECT workflow_id, topic, seq FROM ${t.messages}
        WHERE workflow_id = ${r.workflowId} AND topic = ${r.topic} AND consumed_step IS NULL
          AND EXISTS (SELECT 1 FROM owner) AND NOT EXISTS (SELECT 1 FROM done)
        ORDER BY seq LIMIT 1
        FOR UPDATE SKIP LOCKED)
        AND (${r.sentBy}::timestamptz IS NULL OR created_at <= ${r.sentBy}::timestamptz)
      RETURNING message),
    step AS (
      INSERT INTO ${t.steps} (workflow_id, step_id, name, output, error, started_at)
      SELECT ${r.workflowId}, ${r.stepId}, ${r.name}, m.message, NULL, ${r.startedAt} FROM m
      RETURNING 1)
    SELECT EXISTS (SELECT 1 FROM owner) AS owned, EXISTS (SELECT 1 FROM done) AS done,
           (SELECT message FROM m) AS message, EXISTS (SELECT 1 FROM step) AS got`
  if (row!.got) return { outcome: 'received', message: row!.message! }
  if (row!.done) return { outcome: 'recorded' }
  if (!row!.owned) return { outcome: 'fenced' }
  return { outcome: 'none' }
}

/**
 * Of this executor's workflows suspended in ctx.recv (waiting_topic set),
 * those with a message waiting on their topic: claimed for a wake-up (new
 * epoch, wake_at and waiting_topic cleared), as the wake-up scheduler claims
 * due sleepers. `ids` narrows it to workflows a notification named; without
 * it, every one (after the LISTEN connection was re-established, or an
 * adoption). FOR UPDATE SKIP LOCKED, as claimDue. Two statements, not one
 * with `ids IS NULL OR ...`: under a generic plan that one cannot use the
 * primary key, and each claim looked at every waiting workflow's messages.
 */
export async function claimMessaged (sql: Sql, t: Tables, executorId: string, appVersion: string | null, names: string[], ids: string[] | null, limit: number): Promise<ClaimedRow[]> {
  return sql<ClaimedRow[]>`
    UPDATE ${t.workflows}
    SET epoch = epoch + 1, wake_at = NULL, waiting_topic = NULL, updated_at = now()
    WHERE workflow_id IN (
      SELECT w.workflow_id FROM ${t.workflows} w
      WHERE w.executor_id = ${executorId} AND w.status = 'PENDING' AND w.waiting_topic IS NOT NULL
        ${ids === null ? sql`` : sql`AND w.workflow_id = ANY(${ids}::text[])`}
        AND w.name = ANY(${names}::text[]) AND w.app_version IS NOT DISTINCT FROM ${appVersion}::text
        AND EXISTS (
          SELECT 1 FROM ${t.messages} m
          WHERE m.workflow_id = w.workflow_id AND m.topic = w.waiting_topic AND m.consumed_step IS NULL)
      LIMIT ${limit}
      FOR UPDATE OF w SKIP LOCKED)
    RETURNING workflow_id, name, input, request_id, epoch::text AS epoch, attempts, deadline_at`
}

export type Suspended = 'suspended' | 'message-waiting' | 'fenced'

/**
 * A long ctx.recv: suspends the workflow until `wakeAt` (its timeout) or a
 * message on `topic`, under the run's epoch, unless a message is waiting
 * already (then the run receives it instead). A message sent while this
 * statement runs may not be seen by it, and its notification may come before
 * this commits: the run makes one more claim after it (see run/messages.ts).
 * `sentBy` as for receiveMessage: a message the recv would not take is not
 * one waiting for it (the run would only look again and again).
 */
export async function suspendForMessage (sql: Sql, t: Tables, s: { workflowId: string, epoch: string, topic: string, wakeAt: Date, sentBy: Date | null }): Promise<Suspended> {
  const [row] = await sql<{ owned: boolean, waiting: boolean, suspended: boolean }[]>`
    WITH waiting AS (
      SELECT 1 FROM ${t.messages} WHERE workflow_id = ${s.workflowId} AND topic = ${s.topic} AND consumed_step IS NULL
        AND (${s.sentBy}::timestamptz IS NULL OR created_at <= ${s.sentBy}::timestamptz)
      LIMIT 1),
    done AS (
      UPDATE ${t.workflows}
      SET wake_at = least(${s.wakeAt}::timestamptz, deadline_at), waiting_topic = ${s.topic}, updated_at = now()
      WHERE workflow_id = ${s.workflowId} AND epoch = ${s.epoch}::bigint AND status = 'PENDING'
        AND NOT EXISTS (SELECT 1 FROM waiting)
      RETURNING 1)
    SELECT EXISTS (SELECT 1 FROM ${t.workflows} WHERE workflow_id = ${s.workflowId} AND epoch = ${s.epoch}::bigint AND status = 'PENDING') AS owned,
           EXISTS (SELECT 1 FROM waiting) AS waiting, EXISTS (SELECT 1 FROM done) AS suspended`
  if (row!.suspended) return 'suspended'
  if (!row!.owned) return 'fenced'
  return 'message-waiting'
}
