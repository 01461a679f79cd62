// The example app (docs/example/app.js, what `npm start` runs) and the
// README's tour: the app runs in a real child process on a database of its
// own, and the tour's requests are made with fetch, in the README's order.
// docs/example/client.js runs against it as a plain script. Needs `npm run
// build` first (the example imports fastify-dbos, i.e. dist/).
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import postgres from 'postgres'
import t, { type Test } from 'tap'
import { childEnv, spawnFixture, type ChildApp } from './fixtures/child.js'
import { databaseUrl, pollUntil, uniqueSchema } from './helpers/db.js'

const appScript = fileURLToPath(new URL('../docs/example/app.js', import.meta.url))
const clientScript = fileURLToPath(new URL('../docs/example/client.js', import.meta.url))
const repoRoot = fileURLToPath(new URL('..', import.meta.url))

interface Answer { status: number, headers: Headers, body: any, text: string }

/** The app's own database, as on a fresh start: the example's payments table lives in `public`. */
async function freshDatabase (t: Test): Promise<string> {
  const name = uniqueSchema('example')
  const admin = postgres(databaseUrl, { max: 1, onnotice: () => {} })
  await admin`CREATE DATABASE ${admin(name)}`
  t.teardown(async () => {
    await admin`DROP DATABASE IF EXISTS ${admin(name)} WITH (FORCE)`
    await admin.end({ timeout: 5 })
  })
  const url = new URL(databaseUrl)
  url.pathname = `/${name}`
  return url.toString()
}

t.test('the README tour against docs/example/app.js', async (t) => {
  const url = await freshDatabase(t)
  const app: ChildApp = spawnFixture(t, appScript, childEnv({ DATABASE_URL: url, PORT: '0', DBOS_SCHEMA: undefined }), { cwd: repoRoot })
  const listening = await app.waitForLine((l) => typeof l.msg === 'string' && l.msg.startsWith('Server listening at'), 'the app to listen', 30_000)
  const base = (listening.msg as string).replace('Server listening at ', '')

  async function call (method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Answer> {
    const res = await fetch(`${base}${path}`, {
      method,
      headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
      body: body === undefined ? undefined : JSON.stringify(body)
    })
    const text = await res.text()
    let parsed: unknown
    try { parsed = JSON.parse(text) } catch { parsed = undefined }
    return { status: res.status, headers: res.headers, body: parsed, text }
  }
  const untilStatus = (id: string, status: string, timeoutMs = 20_000): Promise<any> =>
    pollUntil(async () => {
      const r = await call('GET', `/jobs/${id}`)
      return r.body?.status === status ? r.body : undefined
    }, { timeoutMs, intervalMs: 50, what: `${id} to be ${status}` })
  const logged = (msg: string) => app.lines.filter((l) => l.msg === msg)

  await t.test('the existing tour: a job, the idempotent payment', async (t) => {
    const job = await call('POST', '/jobs', { items: 2 })
    t.equal(job.status, 202)
    t.match(await untilStatus(job.body.workflowId, 'SUCCESS'), { output: { processed: 2 } })
    const key = { 'dbos-idempotency-key': 'order-1001' }
    const first = await call('POST', '/payment', { amount: 42, userId: 'alice' }, key)
    t.equal(first.status, 200)
    t.same(first.body, { workflowId: 'order-1001', result: { paymentId: 1, receipt: 'receipt-1' } })
    t.same((await call('POST', '/payment', { amount: 42, userId: 'alice' }, key)).body, first.body, 'the retry gets the same payment')
    t.equal((await call('POST', '/payment', { amount: 99, userId: 'alice' }, key)).status, 422)
  })

  await t.test('human approval: awaiting approval, the message, reimbursed', async (t) => {
    const started = await call('POST', '/expenses', { employee: 'alice', amount: 120, description: 'team lunch' })
    t.equal(started.status, 202)
    const id = started.body.workflowId as string
    const waiting = await call('GET', `/expenses/${id}`)
    t.match(waiting.body, { workflowId: id, status: 'PENDING', state: 'awaiting approval', employee: 'alice', amount: 120 })
    const approve = await call('POST', `/expenses/${id}/approve`, { by: 'bob' })
    t.same(approve.body, { sent: true })
    const done = await pollUntil(async () => {
      const r = await call('GET', `/expenses/${id}`)
      return r.body.status === 'SUCCESS' ? r.body : undefined
    }, { what: 'the expense report to finish' })
    t.match(done, { state: 'reimbursed', by: 'bob', result: { approved: true, by: 'bob', payout: { employee: 'alice', amount: 120 } } })
    t.equal(logged('expense reimbursed').length, 1, 'reimbursed once')
    const again = await call('POST', `/expenses/${id}/approve`, { by: 'bob' })
    t.equal(again.status, 409)
    t.equal(again.body.code, 'DBOS_ERR_WORKFLOW_FINISHED')
    t.equal((await call('GET', '/expenses/nope')).status, 404)

    // With an Idempotency-Key, a retried approval is delivered once and is no error.
    const other = (await call('POST', '/expenses', { employee: 'erin', amount: 35 })).body.workflowId as string
    const key = { 'idempotency-key': `approve-${other}` }
    t.same((await call('POST', `/expenses/${other}/approve`, { by: 'bob' }, key)).body, { sent: true })
    await pollUntil(async () => (await call('GET', `/expenses/${other}`)).body.status === 'SUCCESS', { what: 'the second report to finish' })
    const retried = await call('POST', `/expenses/${other}/approve`, { by: 'bob' }, key)
    t.same([retried.status, retried.body], [200, { sent: true }], 'the retry with the key is no error')
    t.equal(logged('expense reimbursed').length, 2, 'each report reimbursed once')
  })

  await t.test('progress over Server-Sent Events, resumed with Last-Event-ID', async (t) => {
    const started = await call('POST', '/reports', { sections: 4 })
    t.equal(started.status, 202)
    const id = started.body.workflowId as string
    // Live: the first event comes while the workflow still runs (4 steps of 500 ms).
    const res = await fetch(`${base}/reports/${id}/progress`)
    t.equal(res.headers.get('content-type'), 'text/event-stream; charset=utf-8')
    const reader = res.body!.getReader()
    const first = new TextDecoder().decode((await reader.read()).value)
    t.match(first, /^id: 0\ndata: \{"section":1,"of":4,"percent":25\}\n\n/, 'the first event')
    t.equal((await call('GET', `/jobs/${id}`)).body.status, 'PENDING', 'it came before the workflow finished')
    await reader.cancel()
    const live = await call('GET', `/reports/${id}/progress`)
    t.equal(live.text, [0, 1, 2, 3].map((i) =>
      `id: ${i}\ndata: ${JSON.stringify({ section: i + 1, of: 4, percent: 25 * (i + 1) })}\n\n`).join('') + 'event: end\ndata: {}\n\n',
    'every value, in order, then the end')
    const resumed = await call('GET', `/reports/${id}/progress`, undefined, { 'last-event-id': '1' })
    t.match(resumed.text, /^id: 2\n/, 'after Last-Event-ID 1 the stream starts at 2')
    t.equal(resumed.text.match(/^id: /gm)?.length, 2)
    t.equal((await call('GET', '/reports/nope/progress')).status, 404)
  })

  await t.test('cancel a running job, resume it', async (t) => {
    const id = (await call('POST', '/jobs', { items: 10 })).body.workflowId as string
    await pollUntil(async () => (await call('GET', `/jobs/${id}`)).body.steps.length >= 1, { what: 'a first step' })
    const cancelled = await call('POST', `/workflows/${id}/cancel`)
    t.same(cancelled.body, { workflowId: id, status: 'CANCELLED' })
    await new Promise((resolve) => setTimeout(resolve, 700))
    const after = (await call('GET', `/jobs/${id}`)).body
    t.equal(after.status, 'CANCELLED')
    t.ok(after.steps.length < 10, `it stopped (${after.steps.length} of 10 steps)`)
    t.equal((await call('POST', `/workflows/${id}/resume`)).status, 202)
    const done = await untilStatus(id, 'SUCCESS')
    t.same(done.output, { processed: 10 })
    t.equal(done.steps.length, 10, 'each item ran once')
  })

  await t.test('fork a failed order from its failed step: the charge is reused', async (t) => {
    const id = (await call('POST', '/orders', { item: 'espresso machine', amount: 349 })).body.workflowId as string
    const failed = await untilStatus(id, 'ERROR')
    t.equal(failed.error, 'carrier API unavailable')
    t.same(failed.steps.map((s: any) => s.name), ['charge', 'reserveStock', 'ship'])
    t.same((await call('PUT', '/carrier', { online: true })).body, { online: true })
    const forked = await call('POST', `/workflows/${id}/fork`, { fromStep: 2 })
    t.equal(forked.status, 202)
    t.not(forked.body.workflowId, id)
    const done = await untilStatus(forked.body.workflowId, 'SUCCESS')
    t.same(done.steps[0].output, failed.steps[0].output, 'the recorded charge is reused')
    t.same(done.steps[1].output, failed.steps[1].output)
    t.match(done.output, { chargeId: failed.steps[0].output.chargeId, trackingNumber: /^TRK-/ })
    t.equal(logged('card charged').length, 1, 'the card was charged once')
    t.equal((await call('POST', `/workflows/${id}/fork`, { fromStep: 7 })).body.code, 'DBOS_ERR_INVALID_FORK_STEP')
    await call('PUT', '/carrier', { online: false })
  })

  await t.test('the email queue: 202, an idempotent retry, two at a time', async (t) => {
    const key = { 'idempotency-key': 'welcome-alice' }
    const first = await call('POST', '/emails', { to: 'alice@example.com', subject: 'Welcome' }, key)
    t.equal(first.status, 202)
    t.same(first.body, { workflowId: 'welcome-alice' })
    const retry = await call('POST', '/emails', { to: 'alice@example.com', subject: 'Welcome' }, key)
    t.same([retry.status, retry.body], [202, { workflowId: 'welcome-alice' }])
    t.equal((await call('GET', '/workflows?name=sendEmail')).body.length, 1, 'the retry enqueued nothing new')
    t.match(await untilStatus('welcome-alice', 'SUCCESS'), { queueName: 'emails', output: { to: 'alice@example.com' } })
    t.equal((await call('POST', '/emails', { to: 'bob@example.com', subject: 'Welcome' }, key)).status, 422)

    const news = await call('POST', '/newsletter', { subscribers: 5 })
    t.equal(news.status, 202)
    t.equal(news.body.enqueued.length, 5)
    let most = 0
    await pollUntil(async () => {
      const running = (await call('GET', '/workflows?queue=emails&status=PENDING')).body.length
      most = Math.max(most, running)
      return (await call('GET', '/workflows?queue=emails&status=SUCCESS')).body.length === 6
    }, { timeoutMs: 20_000, intervalMs: 100, what: 'the newsletter to be sent' })
    t.ok(most >= 1 && most <= 2, `at most 2 ran at once (${most})`)
  })

  await t.test('docs/example/client.js enqueues by name, approves an expense, and exits', async (t) => {
    const id = (await call('POST', '/expenses', { employee: 'dave', amount: 80 })).body.workflowId as string
    // As the README runs it: `node docs/example/client.js $EXP`. Nothing kills it: it must end by itself.
    const script = spawn(process.execPath, [clientScript, id], { cwd: repoRoot, env: childEnv({ DATABASE_URL: url, DBOS_SCHEMA: undefined }) })
    t.teardown(() => { if (script.exitCode === null) script.kill('SIGKILL') })
    let out = ''
    let err = ''
    script.stdout.on('data', (d) => { out += d })
    script.stderr.on('data', (d) => { err += d })
    const exit = await new Promise<number | null>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`client.js did not exit within 30 s; it printed ${out}${err}`)), 30_000)
      script.once('exit', (code) => { clearTimeout(timer); resolve(code) })
    })
    t.equal(exit, 0, `it exited by itself with code 0; stderr: ${err}`)
    t.match(out, /^enqueued \S+ (ENQUEUED|PENDING)$/m)
    t.match(out, /^sent \{"to":"carol@example.com","subject":"Sent from a script"/m)
    t.match(out, new RegExp(`^approved ${id} \\{"approved":true,"by":"a script"`, 'm'))
    t.match((await call('GET', `/expenses/${id}`)).body, { status: 'SUCCESS', state: 'reimbursed', by: 'a script' })
  })

  await t.test('the schedule: listed, paused, resumed', async (t) => {
    const [listed] = (await call('GET', '/schedules')).body
    t.match(listed, { name: 'minutely-digest', cron: '* * * * *', paused: false })
    t.same((await call('POST', '/schedules/minutely-digest/pause')).body, { name: 'minutely-digest', paused: true })
    t.match((await call('GET', '/schedules')).body, [{ name: 'minutely-digest', paused: true }])
    t.same((await call('POST', '/schedules/minutely-digest/resume')).body, { name: 'minutely-digest', paused: false })
    t.match((await call('GET', '/schedules')).body, [{ name: 'minutely-digest', paused: false }])
  })

  await t.test('the durable checkout route: a retry replays the stored response', async (t) => {
    const key = { 'idempotency-key': '"checkout-2001"' }
    const first = await call('POST', '/checkout', { amount: 42, userId: 'alice' }, key)
    t.equal(first.status, 201)
    t.equal(first.headers.get('idempotent-replayed'), null)
    t.same(first.body, { paymentId: 2, receipt: 'receipt-2', amount: 42, userId: 'alice' })
    t.equal(first.headers.get('x-payment-id'), '2')
    const retry = await call('POST', '/checkout', { userId: 'alice', amount: 42 }, key)
    t.equal(retry.status, 201)
    t.equal(retry.headers.get('idempotent-replayed'), 'true')
    t.equal(retry.headers.get('x-payment-id'), '2')
    t.equal(retry.text, first.text, 'the same body, byte for byte')
    const changed = await call('POST', '/checkout', { amount: 99, userId: 'alice' }, key)
    t.equal(changed.status, 422)
    t.equal(changed.body.code, 'DBOS_ERR_IDEMPOTENCY_KEY_REUSED')
    const status = (await call('GET', '/jobs/checkout-2001')).body
    t.match(status, { name: 'route:POST /checkout', status: 'SUCCESS' })
    t.same(status.steps.map((s: any) => s.name), ['recordPayment', 'sendReceipt'], 'the handler ran once')
  })

  t.equal(app.exit, undefined, 'the app is still running')
  app.process.kill('SIGTERM')
  t.same(await app.exited, { code: 0, signal: null }, 'SIGTERM shuts it down cleanly')
})
