// A plain script that works with the example app's workflows from another
// process: no Fastify, no workflow code, only the database. Run it while the
// app runs:
//
//   node docs/example/client.js              enqueues an email, waits for it
//   node docs/example/client.js <expenseId>  also approves that expense report
//
// It uses DATABASE_URL when set (the app's database), else the URL of the
// embedded Postgres the app left in .dbos/example-database-url.
// DBOS_SCHEMA names the app's schema if it is not the default (dbos).
import { readFileSync } from 'node:fs'
import { WorkflowClient } from 'fastify-dbos/client'

const databaseUrl = process.env.DATABASE_URL ?? readEmbeddedUrl()
const client = new WorkflowClient({ databaseUrl, schema: process.env.DBOS_SCHEMA || undefined })

function readEmbeddedUrl () {
  try {
    return readFileSync(new URL('../../.dbos/example-database-url', import.meta.url), 'utf8').trim()
  } catch {
    console.error('No DATABASE_URL, and no .dbos/example-database-url: start the app first (npm start), or set DATABASE_URL to its database.')
    process.exit(1)
  }
}

try {
  // By name: the app has the 'sendEmail' definition and the 'emails' queue,
  // so one of its instances runs it, within the queue's limits.
  const email = await client.enqueue('emails', 'sendEmail', { to: 'carol@example.com', subject: 'Sent from a script' })
  console.log('enqueued', email.workflowId, (await client.getStatus(email.workflowId)).status)
  const sent = await client.getResult(email.workflowId, { timeoutMs: 30_000 })
  console.log('sent', JSON.stringify(sent))

  const expenseId = process.argv[2]
  if (expenseId !== undefined) {
    // The same message the app's POST /expenses/:id/approve sends.
    await client.send(expenseId, { approved: true, by: 'a script' }, { topic: 'approval' })
    console.log('approved', expenseId, JSON.stringify(await client.getResult(expenseId, { timeoutMs: 30_000 })))
  }
} finally {
  await client.close() // closes its connections: the script then exits on its own
}
