/**
 * A resume that comes right after a cancel, while the cancelled run is still
 * unwinding (its step ignores the abort signal): the workflow must be taken
 * up again once resumed, not left PENDING with nobody running it because a
 * run of it "is busy here".
 */
import t from 'tap'
import { WorkflowClient } from '../lib/client/index.js'
import { defineWorkflow } from '../lib/index.js'
import { buildEngine, pollUntil, silentLogger, uniqueSchema, databaseUrl } from './helpers/db.js'

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
