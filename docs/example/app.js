// The example app from the README: background jobs, an idempotent payment
// endpoint, a crash-and-recover demo and durable reminders. Plain JavaScript on purpose: the
// library needs no TypeScript. Run it with `npm start` (builds first).
//
// Without DATABASE_URL it starts an embedded Postgres with its data in
// .dbos/pgdata, so workflows survive restarts with zero set-up.
import { randomUUID } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import Fastify from 'fastify'
import dbosPlugin, { defineWorkflow } from 'fastify-dbos'

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

// ---------------------------------------------------------------- plugin

// No databaseUrl: the plugin uses DATABASE_URL, or starts an embedded Postgres.
await app.register(dbosPlugin, { workflows: [processJob, processPayment, recoveryDemo, sendReminder] })

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
  const [status, steps] = await Promise.all([
    app.workflows.getStatus(req.params.id),
    app.workflows.listSteps(req.params.id)
  ])
  return {
    workflowId: status.workflowId,
    name: status.name,
    status: status.status,
    output: status.output,
    error: status.error?.message,
    attempts: status.attempts,
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
  const { status, name, requestId } = req.query
  // Empty query parameters (?status=) mean "any".
  const workflows = await app.workflows.list({
    status: status || undefined, name: name || undefined, requestId: requestId || undefined, limit: 20
  })
  return workflows.map((w) => ({
    workflowId: w.workflowId, name: w.name, status: w.status, requestId: w.requestId, createdAt: w.createdAt
  }))
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
} catch (err) {
  // A start-up failure (the embedded Postgres could not start, the port is
  // taken): its message says what failed and what to do, a stack would bury it.
  console.error(`Could not start the example: ${err.message}${err.code ? ` [${err.code}]` : ''}`)
  process.exit(1)
}
