// WorkflowClient (issue 12), `fastify-dbos/client`: from a plain Node script
// in a real child process (test/fixtures/client-script.mjs) against a real
// instance (test/fixtures/queue-app.js); then the rest of its API from this
// process against an engine on the same schema.
import t from 'tap'
import { WorkflowClient } from '../lib/client/index.js'
import { defineQueue, defineWorkflow } from '../plugins/index.js'
import { childEnv, spawnFixture } from './fixtures/child.js'
import { buildApp, databaseUrl, pollUntil, uniqueSchema } from './helpers/db.js'
import { groupBy, queueFleet } from './helpers/queue-fleet.js'

t.test('a plain script enqueues by name, messages, waits for the result, and exits on its own', async (t) => {
  const f = await queueFleet(t, { env: { QUEUES: JSON.stringify([{ name: 'work' }]) } })
  // This instance lacks `ticker`, which the script enqueues too.
  await f.launch({ EXECUTOR_ID: 'worker', WORKFLOWS: 'echo,tracked' })
  const script = spawnFixture(t, './client-script.mjs', childEnv({ DATABASE_URL: databaseUrl, SCHEMA: f.schema, QUEUE: 'work' }))
  // Nothing kills it: it has to end by itself once the client is closed.
  const exit = await pollUntil(() => script.exit, { timeoutMs: 60_000, what: 'the script to exit on its own' }).catch((err) => {
    throw new Error(`${err.message}; it printed ${JSON.stringify(script.lines)}; stderr: ${script.stderr.join('\n')}`)
  })
  t.same(exit, { code: 0, signal: null }, 'it exited with code 0, by itself')
  const line = (step: string) => script.lines.find((l) => l.script === step)
  const enqueued = line('enqueued')!
  t.ok(['ENQUEUED', 'PENDING'].includes(enqueued.status), `enqueued (${enqueued.status})`)
  t.same(line('result'), { script: 'result', value: { input: { from: 'script' }, message: 'hello' }, status: 'SUCCESS' }, 'its message reached the workflow, and the result came back')
  t.match(line('after'), { value: 'after', waitingStatus: 'ENQUEUED' }, 'a workflow no instance has waits; work enqueued after it ran')
  t.same(line('codes')!.codes, {
    emptyName: '400 DBOS_ERR_INVALID_ARGUMENT',
    notAName: '400 DBOS_ERR_INVALID_ARGUMENT',
    emptyQueue: '500 DBOS_ERR_UNKNOWN_QUEUE',
    badPriority: '400 DBOS_ERR_INVALID_ARGUMENT',
    unknownWorkflow: '404 DBOS_ERR_WORKFLOW_NOT_FOUND',
    sendToFinished: '409 DBOS_ERR_WORKFLOW_FINISHED'
  }, 'bad arguments refused with their codes')
  t.ok(line('closed'))

  // An instance that has `ticker` takes the waiting workflow.
  const waiting = line('after')!.waiting as string
  await f.launch({ EXECUTOR_ID: 'complete' })
  const [row] = await f.finished([waiting], 30_000)
  t.match(row, { status: 'SUCCESS', executor_id: 'complete' }, 'the instance that has it ran it')
  const runs = groupBy(await f.runs(), (r) => `${r.workflow_id} ${r.step}`)
  t.equal(runs.get(`${enqueued.workflowId} echo`)?.length, 1, 'the echo step ran once')
  t.equal(runs.get(`${waiting} tick`)?.length, 1, 'the waiting one ran once')
})

t.test('the client\'s other calls, against an engine on the same schema', async (t) => {
  const talker = defineWorkflow('talker', async (ctx, input: { n: number }) => {
    await ctx.setEvent('stage', 'started')
    for (let i = 0; i < 3; i++) await ctx.writeStream('out', i * input.n)
    await ctx.closeStream('out')
    const reply = await ctx.recv<string>('', { timeoutMs: 30_000 })
    await ctx.step('last', () => 'done')
    return `${reply}:${input.n}`
  })
  const q = defineQueue('work')
  const schema = uniqueSchema()
  const app = await buildApp(t, { workflows: [talker], queues: [q], schema, resultPollIntervalMs: 100 })
  await app.ready()
  const client = new WorkflowClient({ databaseUrl, schema, pollMs: 100 })
  t.teardown(() => client.close())

  const handle = await client.enqueue<string>('work', 'talker', { n: 2 })
  t.equal(await client.getEvent(handle.workflowId, 'stage', { timeoutMs: 20_000 }), 'started', 'getEvent')
  const values: unknown[] = []
  for await (const v of client.readStream(handle.workflowId, 'out')) values.push(v.value)
  t.same(values, [0, 2, 4], 'readStream')
  t.same((await client.listEvents(handle.workflowId)).map((e) => e.value), ['started'], 'listEvents')
  await client.send(handle.workflowId, 'hi')
  t.equal(await handle.getResult({ timeoutMs: 20_000 }), 'hi:2', 'send, getResult')
  t.match(await client.getStatus(handle.workflowId), { status: 'SUCCESS', name: 'talker', queueName: 'work', input: { n: 2 } })
  t.equal((await client.retrieve(handle.workflowId)).workflowId, handle.workflowId)
  t.ok((await client.listSteps(handle.workflowId)).some((s) => s.name === 'last'), 'listSteps')
  t.same((await client.list({ queueName: 'work' })).map((w) => w.workflowId), [handle.workflowId], 'list by queue')
  t.same((await client.listPage({ queueName: 'work', limit: 1 })).workflows.map((w) => w.workflowId), [handle.workflowId], 'listPage')

  // On a queue no instance takes from: it waits, is cancelled, then resumed:
  // a queued workflow goes back on its queue (its limits still apply), so it
  // waits there again.
  const parked = await client.enqueue<string>('parked', 'talker', { n: 3 })
  t.equal((await parked.getStatus()).status, 'ENQUEUED')
  await client.cancel(parked.workflowId)
  t.equal((await parked.getStatus()).status, 'CANCELLED', 'cancel of a queued workflow')
  await t.rejects(parked.getResult({ timeoutMs: 5000 }), { code: 'DBOS_ERR_WORKFLOW_CANCELLED' })
  await client.resume(parked.workflowId)
  t.match(await parked.getStatus(), { status: 'ENQUEUED', queueName: 'parked' }, 'resumed, it is back on its queue')
  await client.cancel(parked.workflowId)

  // Resumed on a queue an instance takes from, it runs.
  const queued = await client.enqueue<string>('work', 'talker', { n: 4 })
  await client.getEvent(queued.workflowId, 'stage', { timeoutMs: 20_000 })
  await client.cancel(queued.workflowId)
  await client.resume(queued.workflowId)
  await client.send(queued.workflowId, 'back')
  t.equal(await queued.getResult({ timeoutMs: 20_000 }), 'back:4', 'resumed from its queue, it ran')

  const forked = await client.fork<string>(handle.workflowId, { fromStep: 0 })
  await client.getEvent(forked.workflowId, 'stage', { timeoutMs: 20_000 })
  await client.send(forked.workflowId, 'again')
  t.equal(await forked.getResult({ timeoutMs: 20_000 }), 'again:2', 'fork')
  t.ok(await client.deleteFinished({ olderThanMs: 0 }) >= 3, 'deleteFinished')
  await t.rejects(client.getStatus(handle.workflowId), { code: 'DBOS_ERR_WORKFLOW_NOT_FOUND' })
  await t.rejects(client.retrieve('nope'), { code: 'DBOS_ERR_WORKFLOW_NOT_FOUND' })
  await t.rejects(client.resume('nope'), { code: 'DBOS_ERR_WORKFLOW_NOT_FOUND' })
  await t.rejects(client.cancel('nope'), { code: 'DBOS_ERR_WORKFLOW_NOT_FOUND' })
})

t.test('a workflow a client enqueues gets its definition\'s timeout from the instance that runs it', async (t) => {
  const hold = defineWorkflow('holds', async (ctx) => {
    await ctx.step('long', () => new Promise((resolve) => setTimeout(resolve, 3000)))
    return 'finished'
  }, { timeoutMs: 300 })
  const q = defineQueue('timed')
  const schema = uniqueSchema()
  const app = await buildApp(t, { workflows: [hold], queues: [q], schema })
  await app.ready()
  const client = new WorkflowClient({ databaseUrl, schema, pollMs: 100 })
  t.teardown(() => client.close())
  const handle = await client.enqueue('timed', 'holds', undefined)
  await t.rejects(handle.getResult({ timeoutMs: 20_000 }), { code: 'DBOS_ERR_WORKFLOW_TIMEOUT' }, 'cancelled at the definition\'s timeout')
  const own = await client.enqueue('timed', 'holds', undefined, { timeoutMs: 10_000 })
  t.equal(await own.getResult({ timeoutMs: 20_000 }), 'finished', 'a timeout of its own wins')
})

t.test('a client refuses bad options, and answers 503 when the database is unreachable', async (t) => {
  const saved = process.env.DATABASE_URL
  delete process.env.DATABASE_URL
  t.teardown(() => { process.env.DATABASE_URL = saved })
  t.throws(() => new WorkflowClient(), { code: 'DBOS_ERR_INVALID_OPTION' }, 'no database url')
  t.throws(() => new WorkflowClient({ databaseUrl, schema: 'Bad-Schema' }), { code: 'DBOS_ERR_INVALID_OPTION' })
  const unreachable = new WorkflowClient({ databaseUrl: 'postgres://postgres@127.0.0.1:1/postgres' })
  await t.rejects(unreachable.enqueue('work', 'talker', {}), { code: 'DBOS_ERR_DATABASE_UNAVAILABLE', statusCode: 503 })
  await unreachable.close()
  const closed = new WorkflowClient({ databaseUrl })
  await closed.close()
  await t.rejects(closed.getStatus('x'), { code: 'DBOS_ERR_CLIENT_CLOSED' }, 'after close(): its own code, not an outage')
  await t.rejects(closed.enqueue('work', 'talker', {}), { code: 'DBOS_ERR_CLIENT_CLOSED' })
})
