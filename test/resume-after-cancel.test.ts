/**
 * A resume that comes right after a cancel, while the cancelled run is still
 * unwinding (its step ignores the abort signal): the workflow must be taken
 * up again once resumed, not left PENDING with nobody running it because a
 * run of it "is busy here".
 */
import t from 'tap'
import { WorkflowClient } from '../lib/client/index.js'
import { defineWorkflow } from '../lib/index.js'
import { adminSql, buildEngine, pollUntil, silentLogger, uniqueSchema, databaseUrl } from './helpers/db.js'

function gate (): { wait: Promise<void>, open (): void } {
  let open!: () => void
  const wait = new Promise<void>((resolve) => { open = resolve })
  return { wait, open }
}

for (const from of ['client', 'engine'] as const) {
  t.test(`resume from the ${from} while the cancelled run is still in its step`, async (t) => {
    const firstRun = gate()
    const entered = gate()
    let runs = 0
    const wf = defineWorkflow('slowStep', async (ctx) => {
      await ctx.step('stubborn', async () => {
        runs++
        if (runs === 1) {
          entered.open()
          await firstRun.wait // ignores its signal, as much user code does
        }
        return runs
      })
      return 'done'
    })
    const schema = uniqueSchema()
    // A short lease: handed-off work is taken at the next beat.
    const engine = await buildEngine(t, { schema, workflows: [wf], heartbeatMs: 100, leaseMs: 1000 })
    const handle = await engine.startWorkflow(wf, undefined)
    await entered.wait
    t.teardown(() => firstRun.open())

    const client = new WorkflowClient({ databaseUrl, schema, logger: silentLogger })
    t.teardown(() => client.close())
    const control = from === 'client' ? client : engine
    await control.cancel(handle.workflowId)
    await pollUntil(async () => (await engine.getStatus(handle.workflowId)).status === 'CANCELLED', { what: 'CANCELLED' })
    await control.resume(handle.workflowId)

    const status = await pollUntil(async () => {
      const s = await engine.getStatus(handle.workflowId)
      return s.status === 'SUCCESS' ? s : undefined
    }, { what: 'the resumed workflow to finish while the cancelled run is still stuck in its step', timeoutMs: 15_000 })
    t.equal(status.output, 'done')
    t.equal(runs, 2, 'the resumed run ran the step again (the cancelled one never recorded it)')
  })
}

t.test('a cancel heard late (its notification) does not stop the run a resume started since', async (t) => {
  const firstEntered = gate()
  const firstRelease = gate()
  const secondEntered = gate()
  const secondRelease = gate()
  t.teardown(() => { firstRelease.open(); secondRelease.open() })
  let runs = 0
  const wf = defineWorkflow('lateCancel', async (ctx) => {
    await ctx.step('work', async () => {
      runs++
      if (runs === 1) { firstEntered.open(); await firstRelease.wait }
      if (runs === 2) { secondEntered.open(); await secondRelease.wait }
      return runs
    })
    return 'done'
  })
  const schema = uniqueSchema()
  const engine = await buildEngine(t, { schema, workflows: [wf] })
  const handle = await engine.startWorkflow(wf, undefined)
  await firstEntered.wait
  await engine.cancel(handle.workflowId)
  const sql = adminSql(t)
  const [{ epoch }] = await sql<{ epoch: string }[]>`SELECT epoch::text AS epoch FROM ${sql(schema)}.workflows WHERE workflow_id = ${handle.workflowId}`
  firstRelease.open()
  await engine.resume(handle.workflowId)
  await secondEntered.wait
  // The cancel's notification for the old epoch, arriving only now (as it may on a busy listener).
  await sql`SELECT pg_notify(${`fastify_dbos_cancel:${schema}`}, ${`${engine.executorId}\n${handle.workflowId}\ncancel\n${epoch}`})`
  await new Promise((resolve) => setTimeout(resolve, 300))
  secondRelease.open()
  t.equal(await handle.getResult({ timeoutMs: 20_000 }), 'done', 'the resumed run went on')
  t.equal((await engine.getStatus(handle.workflowId)).status, 'SUCCESS')
})
