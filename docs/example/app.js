// The example app from the README: background jobs, an idempotent payment
// endpoint, a crash-and-recover demo, durable reminders, an expense report
// waiting for a person's approval, progress over Server-Sent Events, cancel,
// resume and fork, an email queue, a cron schedule and a durable route.
// Plain JavaScript on purpose: the library needs no TypeScript. Run it with
// `npm start` (builds first).
//
// Without DATABASE_URL it starts an embedded Postgres with its data in
// .dbos/pgdata, so workflows survive restarts with zero set-up. DBOS_SCHEMA
// picks the schema of its tables (default dbos).
import { randomUUID } from 'node:crypto'
import { mkdirSync, writeFileSync } from 'node:fs'
import { dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'
import Fastify from 'fastify'
import dbosPlugin, { defineQueue, defineSchedule, defineWorkflow, lastEventId, sse } from 'fastify-dbos'

/** Where the app leaves the embedded Postgres's URL for docs/example/client.js. */
const EMBEDDED_URL_FILE = fileURLToPath(new URL('../../.dbos/example-database-url', import.meta.url))

// No genReqId needed for workflows: the plugin records a generated request id
// (unique across restarts) and adds it to req.log as dbosRequestId.
const app = Fastify({ logger: true })

// ---------------------------------------------------------------- workflows

// A background job: one checkpointed step per item. After a crash it resumes
// after the last finished item instead of starting over.
const processJob = defineWorkflow('processJob', async (ctx, { items }) => {
  let processed = 0
  for (let i = 1; i <= items; i++) {
    await ctx.step(`item-${i}`, async () => {
      await sleep(300) // stands in for real work
      return `item ${i} done`
    })
    processed++
  }
  return { processed }
})

const processPayment = defineWorkflow('processPayment', async (ctx, { amount, userId }) => {
  // A transaction step: the insert commits in the same Postgres transaction as
  // the step's checkpoint, so the payment is recorded exactly once, even if the
  // process dies and the workflow is resumed.
  const paymentId = await ctx.transaction('recordPayment', async (sql) => {
    // A real app creates its tables in a migration; the example has no other
    // database handle, so it makes sure of its one table here.
    await sql`CREATE TABLE IF NOT EXISTS example_payments (
      id serial PRIMARY KEY, workflow_id text NOT NULL, user_id text NOT NULL,
      amount numeric NOT NULL, created_at timestamptz NOT NULL DEFAULT now())`
    const [row] = await sql`
      INSERT INTO example_payments (workflow_id, user_id, amount)
      VALUES (${ctx.workflowId}, ${userId}, ${amount}) RETURNING id`
    return row.id
  })
  // An ordinary step runs at least once: it is retried here when it throws, and
  // runs again if the process dies before its checkpoint is written. Sending
  // a receipt twice is acceptable; charging twice is not (see above).
  const receipt = await ctx.step('sendReceipt', async () => {
    if (Math.random() < 0.3) { // a flaky dependency
      app.log.warn({ workflowId: ctx.workflowId }, 'mail server busy; the receipt step will be retried')
      throw new Error('mail server busy')
    }
    app.log.info({ workflowId: ctx.workflowId, userId, paymentId }, 'receipt sent')
    return `receipt-${paymentId}`
  }, { retries: { maxAttempts: 5, intervalMs: 200, backoffRate: 2 } })
  return { paymentId, receipt }
})

// Different in every process. Step 1 records it, so after a restart step 2 can
// tell it runs in a new process and must not crash again.
const BOOT_ID = randomUUID()

const recoveryDemo = defineWorkflow('recoveryDemo', async (ctx, { crash }) => {
  const first = await ctx.step('step-1', () => slowWork(ctx, 1, { bootId: BOOT_ID }))
  await ctx.step('step-2', async () => {
    if (crash && first.bootId === BOOT_ID) {
      app.log.warn({ workflowId: ctx.workflowId }, 'recovery demo: step 1 is checkpointed; killing the process now (SIGKILL)')
      await sleep(100)
      process.kill(process.pid, 'SIGKILL')
    }
    return slowWork(ctx, 2)
  })
  await ctx.step('step-3', () => slowWork(ctx, 3))
  return 'all three steps done'
})

async function slowWork (ctx, step, result = {}) {
  app.log.info({ workflowId: ctx.workflowId }, `recovery demo: step ${step} running`)
  await sleep(2000)
  return { ...result, step }
}

// A reminder: a durable sleep, then a step. A sleep longer than a few seconds
// suspends the workflow (it holds no memory while it waits) and it is resumed
// at its wake-up time, even if the app was restarted meanwhile.
const sendReminder = defineWorkflow('sendReminder', async (ctx, { message, inSeconds }) => {
  await ctx.sleep(inSeconds * 1000)
  return ctx.step('deliver', () => {
    app.log.info({ workflowId: ctx.workflowId, message }, 'reminder delivered')
    return { message, deliveredAt: new Date().toISOString() }
  })
})

// A human approval: the report says it awaits approval (an event any route
// can read), then waits for a message from the approver. A long wait holds no
// memory and survives restarts: the workflow is suspended until the message
// (or the timeout) comes.
const expenseReport = defineWorkflow('expenseReport', async (ctx, { employee, amount, description }) => {
  await ctx.setEvent('status', { state: 'awaiting approval', employee, amount, description })
  const decision = await ctx.recv('approval', { timeoutMs: 7 * 24 * 3600 * 1000 })
  if (decision === null) {
    await ctx.setEvent('status', { state: 'expired' })
    return { approved: false, reason: 'no decision within a week' }
  }
  if (!decision.approved) {
    await ctx.setEvent('status', { state: 'rejected', by: decision.by })
    return { approved: false, by: decision.by }
  }
  const payout = await ctx.step('reimburse', () => {
    app.log.info({ workflowId: ctx.workflowId, employee, amount }, 'expense reimbursed')
    return { employee, amount, paidAt: new Date().toISOString() }
  })
  await ctx.setEvent('status', { state: 'reimbursed', by: decision.by, paidAt: payout.paidAt })
  return { approved: true, by: decision.by, payout }
})

// Progress a client can follow: each step writes to the workflow's
// 'progress' stream, which GET /reports/:id/progress sends as Server-Sent
// Events. The stream is stored, so a client that reconnects with
// Last-Event-ID gets the rest, even from another instance or after a restart.
const buildReport = defineWorkflow('buildReport', async (ctx, { sections }) => {
  for (let i = 1; i <= sections; i++) {
    await ctx.step(`section-${i}`, () => sleep(500))
    await ctx.writeStream('progress', { section: i, of: sections, percent: Math.round(100 * i / sections) })
  }
  await ctx.closeStream('progress')
  return { sections }
})

// Fork: an order whose third step fails while the carrier is offline (flip
// it with PUT /carrier). Forking the failed order from that step reuses the
// recorded charge and reservation: the card is not charged again.
let carrierOnline = false

const placeOrder = defineWorkflow('placeOrder', async (ctx, { item, amount }) => {
  const charge = await ctx.step('charge', () => {
    app.log.info({ workflowId: ctx.workflowId, amount }, 'card charged')
    return { chargeId: `ch_${randomUUID().slice(0, 8)}`, amount }
  })
  const reservation = await ctx.step('reserveStock', () => ({ item, reservedAt: new Date().toISOString() }))
  const shipment = await ctx.step('ship', () => {
    if (!carrierOnline) throw new Error('carrier API unavailable')
    return { trackingNumber: `TRK-${randomUUID().slice(0, 8)}` }
  })
  return { ...charge, ...reservation, ...shipment }
})

// A queue: its workflows wait their turn (status ENQUEUED). At most 2 emails
// are sent at once and at most 30 a minute, across every instance of the app
// on this database.
const emails = defineQueue('emails', { concurrency: 2, rateLimit: { limit: 30, periodMs: 60_000 } })

const sendEmail = defineWorkflow('sendEmail', async (ctx, { to, subject }) => {
  return ctx.step('deliver', async () => {
    await sleep(1000) // stands in for the email provider
    app.log.info({ workflowId: ctx.workflowId, to, subject }, 'email sent')
    return { to, subject, sentAt: new Date().toISOString() }
  })
})

// A cron schedule: every minute, one workflow per tick across all instances
// (its id is the schedule's name and the tick's time). Ticks missed while
// the app was down are skipped (the default; missed: 'backfill' runs them).
const minutelyDigest = defineWorkflow('minutelyDigest', async (ctx, { scheduledAt, schedule }) => {
  return ctx.step('count', async () => {
    const recent = await app.workflows.list({ createdAfter: new Date(scheduledAt.getTime() - 60_000), limit: 1000 })
    app.log.info({ workflowId: ctx.workflowId, schedule, recent: recent.length }, 'digest: workflows created in the last minute')
    return { scheduledAt: scheduledAt.toISOString(), workflowsLastMinute: recent.length }
  })
})
const digest = defineSchedule('minutely-digest', '* * * * *', minutelyDigest)

// ---------------------------------------------------------------- plugin

// No databaseUrl: the plugin uses DATABASE_URL, or starts an embedded Postgres.
await app.register(dbosPlugin, {
  workflows: [processJob, processPayment, recoveryDemo, sendReminder, expenseReport, buildReport, placeOrder, sendEmail, minutelyDigest],
  queues: [emails],
  schedules: [digest],
  schema: process.env.DBOS_SCHEMA || undefined
})

// ---------------------------------------------------------------- routes

app.post('/jobs', {
  schema: { body: { type: 'object', properties: { items: { type: 'integer', minimum: 1, maximum: 100 } } } }
}, async (req, reply) => {
  // start() resolves once the workflow is durably recorded; it then runs in
  // the background, and resumes after a crash.
  const handle = await req.workflows.start(processJob, { items: req.body?.items ?? 5 })
  return reply.code(202).send({ workflowId: handle.workflowId })
})

// Works for any workflow id, not only jobs. An unknown id throws the library's
// DBOS_ERR_WORKFLOW_NOT_FOUND, which Fastify answers with 404.
app.get('/jobs/:id', async (req) => {
  // The status first, then the steps: a workflow seen finished then has all
  // its steps (they commit with its outcome). Read in parallel, the steps
  // could be read just before a last step and the outcome committed.
  const status = await app.workflows.getStatus(req.params.id)
  const steps = await app.workflows.listSteps(req.params.id)
  return {
    workflowId: status.workflowId,
    name: status.name,
    status: status.status,
    output: status.output,
    error: status.error?.message,
    attempts: status.attempts,
    queueName: status.queueName ?? undefined,
    createdAt: status.createdAt,
    completedAt: status.completedAt,
    wakeAt: status.wakeAt ?? undefined,
    steps: steps.map((s) => ({ stepId: s.stepId, name: s.name, output: s.output, error: s.error?.message }))
  }
})

app.post('/payment', {
  schema: {
    body: {
      type: 'object',
      required: ['amount', 'userId'],
      properties: { amount: { type: 'number', exclusiveMinimum: 0 }, userId: { type: 'string', minLength: 1 } }
    }
  }
}, async (req) => {
  // With a `dbos-idempotency-key: K` header this workflow's id is K: a retried
  // request finds it and gets its result instead of paying again; the same K
  // with another input is refused with 422. The input is built field by field
  // so that the order of the client's JSON keys cannot change it.
  const input = { amount: req.body.amount, userId: req.body.userId }
  const handle = await req.workflows.start(processPayment, input)
  return { workflowId: handle.workflowId, result: await handle.getResult() }
})

app.post('/recovery-demo', {
  schema: { body: { type: 'object', properties: { crash: { type: 'boolean' } } } }
}, async (req, reply) => {
  const handle = await req.workflows.start(recoveryDemo, { crash: req.body?.crash === true })
  return reply.code(202).send({ workflowId: handle.workflowId })
})

app.post('/reminders', {
  schema: {
    body: {
      type: 'object',
      required: ['message', 'inSeconds'],
      properties: { message: { type: 'string' }, inSeconds: { type: 'integer', minimum: 0, maximum: 31536000 } }
    }
  }
}, async (req, reply) => {
  const handle = await req.workflows.start(sendReminder, { message: req.body.message, inSeconds: req.body.inSeconds })
  return reply.code(202).send({ workflowId: handle.workflowId })
})

app.get('/workflows', async (req) => {
  const { status, name, requestId, queue } = req.query
  // Empty query parameters (?status=) mean "any".
  const workflows = await app.workflows.list({
    status: status || undefined, name: name || undefined, requestId: requestId || undefined, queueName: queue || undefined, limit: 20
  })
  return workflows.map((w) => ({
    workflowId: w.workflowId, name: w.name, status: w.status, requestId: w.requestId, queueName: w.queueName ?? undefined, createdAt: w.createdAt
  }))
})

// ---------------------------------------------------------------- approval

app.post('/expenses', {
  schema: {
    body: {
      type: 'object',
      required: ['employee', 'amount'],
      properties: { employee: { type: 'string', minLength: 1 }, amount: { type: 'number', exclusiveMinimum: 0 }, description: { type: 'string' } }
    }
  }
}, async (req, reply) => {
  const { employee, amount, description = '' } = req.body
  const handle = await req.workflows.start(expenseReport, { employee, amount, description })
  return reply.code(202).send({ workflowId: handle.workflowId })
})

app.get('/expenses/:id', async (req) => {
  const status = await app.workflows.getStatus(req.params.id) // 404 for an unknown id
  // The latest 'status' event; waits up to a second for the first one.
  const state = await app.workflows.getEvent(req.params.id, 'status', { timeoutMs: 1000 })
  return { workflowId: status.workflowId, status: status.status, ...state, result: status.output }
})

app.post('/expenses/:id/approve', {
  schema: {
    body: {
      type: 'object',
      required: ['by'],
      properties: { by: { type: 'string', minLength: 1 }, approved: { type: 'boolean' } }
    }
  }
}, async (req) => {
  // Delivered exactly once to the workflow's ctx.recv('approval'). 404 for an
  // unknown workflow, 409 DBOS_ERR_WORKFLOW_FINISHED once it has finished. With
  // an Idempotency-Key header, a retried request delivers nothing new (and is
  // no error, also after the workflow finished).
  await app.workflows.send(req.params.id, { approved: req.body.approved ?? true, by: req.body.by },
    { topic: 'approval', idempotencyKey: req.workflows.idempotencyKey })
  return { sent: true }
})

// ---------------------------------------------------------------- progress stream

app.post('/reports', {
  schema: { body: { type: 'object', properties: { sections: { type: 'integer', minimum: 1, maximum: 100 } } } }
}, async (req, reply) => {
  const handle = await req.workflows.start(buildReport, { sections: req.body?.sections ?? 5 })
  return reply.code(202).send({ workflowId: handle.workflowId })
})

// Server-Sent Events: one event per stream value (its id is the value's
// offset), then `event: end`. A client reconnecting with Last-Event-ID: N
// gets the values after N. An unknown id is 404.
app.get('/reports/:id/progress', (req, reply) =>
  sse(req, reply, app.workflows.readStream(req.params.id, 'progress', { from: lastEventId(req) })))

// ---------------------------------------------------------------- cancel, resume, fork

app.post('/workflows/:id/cancel', async (req) => {
  // The workflow stops at its next step boundary, on whichever instance runs it.
  await app.workflows.cancel(req.params.id)
  return { workflowId: req.params.id, status: (await app.workflows.getStatus(req.params.id)).status }
})

app.post('/workflows/:id/resume', async (req, reply) => {
  // Continues a CANCELLED or failed workflow from its last completed step.
  const handle = await app.workflows.resume(req.params.id)
  return reply.code(202).send({ workflowId: handle.workflowId })
})

app.post('/workflows/:id/fork', {
  schema: { body: { type: 'object', required: ['fromStep'], properties: { fromStep: { type: 'integer', minimum: 0 } } } }
}, async (req, reply) => {
  // A new workflow with the same input: steps before fromStep keep their
  // recorded results, the rest run again.
  const handle = await app.workflows.fork(req.params.id, { fromStep: req.body.fromStep })
  return reply.code(202).send({ workflowId: handle.workflowId })
})

app.post('/orders', {
  schema: {
    body: {
      type: 'object',
      required: ['item', 'amount'],
      properties: { item: { type: 'string', minLength: 1 }, amount: { type: 'number', exclusiveMinimum: 0 } }
    }
  }
}, async (req, reply) => {
  const handle = await req.workflows.start(placeOrder, { item: req.body.item, amount: req.body.amount })
  return reply.code(202).send({ workflowId: handle.workflowId })
})

app.put('/carrier', {
  schema: { body: { type: 'object', required: ['online'], properties: { online: { type: 'boolean' } } } }
}, async (req) => {
  carrierOnline = req.body.online
  return { online: carrierOnline }
})

// ---------------------------------------------------------------- queue

app.post('/emails', {
  schema: {
    body: {
      type: 'object',
      required: ['to', 'subject'],
      properties: { to: { type: 'string', minLength: 1 }, subject: { type: 'string' } }
    }
  }
}, async (req, reply) => {
  // Answers at once; the email waits its turn on the queue. With an
  // idempotency key the workflow's id is the key: a retried request gets the
  // same workflow back and enqueues nothing new.
  const handle = await req.workflows.enqueue(emails, sendEmail, { to: req.body.to, subject: req.body.subject })
  return reply.code(202).send({ workflowId: handle.workflowId })
})

app.post('/newsletter', {
  schema: { body: { type: 'object', required: ['subscribers'], properties: { subscribers: { type: 'integer', minimum: 1, maximum: 1000 } } } }
}, async (req, reply) => {
  // One workflow per subscriber, all on the queue at once; they run two at a
  // time. With an idempotency key K their ids are K, K::2, K::3, ..., so a
  // retried request finds them instead of enqueueing more.
  const ids = []
  for (let i = 1; i <= req.body.subscribers; i++) {
    const handle = await req.workflows.enqueue(emails, sendEmail, { to: `subscriber-${i}@example.com`, subject: 'Our newsletter' })
    ids.push(handle.workflowId)
  }
  return reply.code(202).send({ enqueued: ids })
})

// ---------------------------------------------------------------- schedules

app.get('/schedules', () => app.workflows.schedules.list())

app.post('/schedules/:name/pause', async (req) => {
  // Its ticks are skipped on every instance until it is resumed.
  await app.workflows.schedules.pause(req.params.name)
  return { name: req.params.name, paused: true }
})

app.post('/schedules/:name/resume', async (req) => {
  await app.workflows.schedules.resume(req.params.name)
  return { name: req.params.name, paused: false }
})

// ---------------------------------------------------------------- a durable route

// The handler is itself a workflow: its steps are checkpointed and its
// response (status, headers, body) is stored. A retry with the same
// Idempotency-Key (or dbos-idempotency-key) header gets the stored response,
// marked idempotent-replayed: true, and nothing runs again. A request cut
// short by a crash finishes when the app starts again.
app.post('/checkout', {
  config: { durable: true },
  schema: {
    body: {
      type: 'object',
      required: ['amount', 'userId'],
      properties: { amount: { type: 'number', exclusiveMinimum: 0 }, userId: { type: 'string', minLength: 1 } }
    }
  }
}, async (req, reply) => {
  const { amount, userId } = req.body
  const paymentId = await req.transaction('recordPayment', async (sql) => {
    await sql`CREATE TABLE IF NOT EXISTS example_payments (
      id serial PRIMARY KEY, workflow_id text NOT NULL, user_id text NOT NULL,
      amount numeric NOT NULL, created_at timestamptz NOT NULL DEFAULT now())`
    const [row] = await sql`
      INSERT INTO example_payments (workflow_id, user_id, amount)
      VALUES (${req.workflowId}, ${userId}, ${amount}) RETURNING id`
    return row.id
  })
  const receipt = await req.step('sendReceipt', () => `receipt-${paymentId}`)
  reply.code(201).header('x-payment-id', String(paymentId))
  return { paymentId, receipt, amount, userId }
})

// ---------------------------------------------------------------- lifecycle

// app.close() lets running workflows finish (up to shutdownTimeoutMs; the rest
// resume on the next start) and stops the embedded Postgres. A second signal
// gets Node's default handling and ends the process at once.
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, async () => {
    app.log.info({ signal }, 'shutting down')
    try {
      await app.close()
      process.exit(0)
    } catch (err) {
      app.log.error({ err }, 'shutdown failed')
      process.exit(1)
    }
  })
}

try {
  await app.listen({ port: Number(process.env.PORT ?? 3000), host: process.env.HOST ?? '127.0.0.1' })
  if (process.env.DATABASE_URL === undefined) {
    // The embedded Postgres's port changes from one start to the next: leave
    // its URL where docs/example/client.js finds it (readable by us only).
    mkdirSync(dirname(EMBEDDED_URL_FILE), { recursive: true })
    writeFileSync(EMBEDDED_URL_FILE, app.workflows.databaseUrl, { mode: 0o600 })
  }
} catch (err) {
  // A start-up failure (the embedded Postgres could not start, the port is
  // taken): its message says what failed and what to do, a stack would bury it.
  console.error(`Could not start the example: ${err.message}${err.code ? ` [${err.code}]` : ''}`)
  process.exit(1)
}
