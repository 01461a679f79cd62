// A step whose checkpoint the database refuses (not an outage: the write
// itself fails) must not let the workflow record an outcome as if the step had
// been saved. The run stops, the workflow stays PENDING, and retrying its
// start resumes it once the database accepts the write.
import t from 'tap'
import { defineWorkflow } from '../lib/index.js'
import { adminSql, buildEngine, pollUntil } from './helpers/db.js'
import { Counter } from './helpers/workflows.js'

t.test('a refused checkpoint leaves the workflow PENDING; a retried start resumes it', async (t) => {
  const counter = new Counter()
  const flaky = defineWorkflow('flaky', async (ctx, id: string) => {
    const first = await ctx.step('first', () => { counter.hit('first'); return 1 })
    let seen = 'none'
    try {
      await ctx.step('refused', () => { counter.hit('refused'); return 2 })
      await ctx.step('after', () => { counter.hit('after'); return 3 })
    } catch (err) {
      // Workflow code that swallows the failure must not turn it into an outcome.
      seen = (err as { code?: string }).code ?? 'no code'
    }
    return { first, seen, id }
  })
  const engine = await buildEngine(t, { workflows: [flaky] })
  const sql = adminSql(t)
  const schema = engine.options.schema
  await sql`ALTER TABLE ${sql(schema)}.steps ADD CONSTRAINT no_refused CHECK (name <> 'refused')`

  const handle = await engine.startWorkflow(flaky, 'w1', { workflowId: 'w1' })
  await t.rejects(handle.getResult({ timeoutMs: 10_000 }), { code: '23514' }, 'the caller sees the database error')
  const status = await engine.getStatus('w1')
  t.equal(status.status, 'PENDING', 'no outcome was recorded')
  t.same((await engine.listSteps('w1')).map((s) => s.name), ['first'], 'only the accepted checkpoint exists')
  t.equal(counter.get('after'), 0, 'no step ran after the refused checkpoint')

  await sql`ALTER TABLE ${sql(schema)}.steps DROP CONSTRAINT no_refused`
  const again = await engine.startWorkflow(flaky, 'w1', { workflowId: 'w1' })
  t.same(await again.getResult({ timeoutMs: 10_000 }), { first: 1, seen: 'none', id: 'w1' }, 'the retried start resumed and finished it')
  t.equal(counter.get('first'), 1, 'the recorded step did not run again')
  t.equal(counter.get('refused'), 2, 'the refused step ran again (at least once)')
  t.equal(counter.get('after'), 1)
  const done = await pollUntil(async () => {
    const s = await engine.getStatus('w1')
    return s.status === 'SUCCESS' && s
  }, { what: 'SUCCESS' })
  t.equal(done.attempts, 2, 'the resume counted as an attempt')
})
