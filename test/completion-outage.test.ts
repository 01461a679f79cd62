// A workflow whose last step ends while Postgres is down: that step's
// checkpoint and the workflow's completion, issued together, both fail and
// are retried until the database is back. The completion must not commit
// before the step's checkpoint: the workflow would be SUCCESS with a step
// missing from its record. Its own embedded Postgres (helpers/cluster.ts).
import t from 'tap'
import { defineWorkflow, Engine, type Logger } from '../lib/index.js'
import { startCluster } from './helpers/cluster.js'
import { pollUntil, testDefaults, uniqueSchema } from './helpers/db.js'
import { gate } from './helpers/workflows.js'

const cluster = await startCluster(t)

t.test('last steps finished during an outage: no workflow is recorded complete without its last checkpoint', async (t) => {
  const hold = gate()
  const wf = defineWorkflow('lastStepInOutage', async (ctx, n: number) => {
    await ctx.step('first', () => n)
    return ctx.step('last', async () => {
      await hold.wait()
      return n * 2
    })
  })
  const events: string[] = []
  const logger: Logger = { debug () {}, info (o) { events.push((o as { event: string }).event) }, warn (o) { events.push((o as { event: string }).event) }, error () {} }
  const engine = new Engine({ ...testDefaults, databaseUrl: cluster.url, schema: uniqueSchema('lastout'), logger, workflows: [wf] })
  await engine.start()
  t.teardown(() => engine.stop())
  const count = 40
  const handles = await Promise.all(Array.from({ length: count }, (_, n) => engine.startWorkflow(wf, n)))
  await pollUntil(() => hold.entered === count, { what: 'every workflow to be in its last step' })

  await cluster.stop()
  hold.open()
  await pollUntil(() => events.includes('database.unreachable'), { what: 'the checkpoint writes to fail' })
  await cluster.start()

  await pollUntil(async () => (await engine.list({ status: 'PENDING' })).length === 0, { timeoutMs: 30_000, what: 'every workflow to finish' })
  const incomplete: string[] = []
  for (const h of handles) {
    const steps = await engine.listSteps(h.workflowId)
    if (steps.length !== 2) incomplete.push(`${h.workflowId}: ${steps.map((s) => s.name).join(', ')}`)
  }
  t.same(incomplete, [], 'every finished workflow has both checkpoints')
  const statuses = await engine.list({ limit: 1000 })
  t.same(new Set(statuses.map((s) => s.status)), new Set(['SUCCESS']))
  for (const [n, h] of handles.entries()) t.equal(await h.getResult({ timeoutMs: 10_000 }), n * 2)
})
