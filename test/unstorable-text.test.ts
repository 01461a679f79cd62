// Strings Postgres cannot store as they are (a NUL, a lone UTF-16 surrogate)
// and list filters it would refuse: each is a coded error at the call, never
// a raw driver 500 or a workflow that fails again on every replay.
import t from 'tap'
import {
  defineWorkflow, InvalidListFilterError, InvalidRequestIdError, InvalidStepNameError, InvalidWorkflowIdError
} from '../lib/index.js'
import { buildApp, buildEngine } from './helpers/db.js'
import { gate, interruptAndResume, sharedSchema } from './helpers/workflows.js'

const loneSurrogate = '👍'.slice(0, 1)

t.test('a step name with a lone surrogate or a NUL fails the call with DBOS_ERR_INVALID_STEP_NAME', async (t) => {
  for (const [label, name] of [['lone surrogate', `thumb-${loneSurrogate}`], ['NUL', 'a\u0000b'], ['not a string', 42]] as const) {
    const bad = defineWorkflow(`bad-${label}`, async (ctx) => {
      const caught = await ctx.step(name as string, async () => 1).catch((err: { code?: string }) => err.code)
      // The refused call took no step position: the next step is step 0.
      await ctx.step('after', async () => 'after')
      await ctx.transaction(name as string, async () => 1)
      return caught
    })
    const processes = sharedSchema(t)
    const engine = await processes.start({ workflows: [bad], executorId: 'one' })
    const handle = await engine.startWorkflow(bad, undefined)
    await t.rejects(handle.getResult(), { code: InvalidStepNameError.code }, `${label}: the uncaught one ends the workflow`)
    const status = await engine.getStatus(handle.workflowId)
    t.equal(status.status, 'ERROR', `${label}: ERROR, not PENDING`)
    t.same((await engine.listSteps(handle.workflowId)).map((s) => [s.stepId, s.name]), [[0, 'after']], `${label}: nothing recorded for the refused calls`)
    // A restart finds nothing to recover: the workflow is finished.
    await engine.stop()
    const again = await processes.start({ workflows: [bad], executorId: 'one' })
    t.equal((await again.getStatus(handle.workflowId)).status, 'ERROR')
  }
})

t.test('a step name outside ASCII, stored faithfully, replays after a restart (no NONDETERMINISM)', async (t) => {
  const hold = gate()
  let ran = 0
  const name = '👍 ünïcödé \u0001 step'
  const emoji = defineWorkflow('emoji', async (ctx) => {
    const one = await ctx.step(name, async () => ++ran)
    await ctx.step('hold', () => hold.wait())
    return one
  })
  const { b, workflowId } = await interruptAndResume(t, { def: emoji, input: undefined, hold })
  hold.open()
  t.equal(await b.getResult(workflowId, { timeoutMs: 10_000 }), 1, 'the first step replayed its recorded result')
  t.equal(ran, 1, 'and did not run again')
  t.equal((await b.listSteps(workflowId))[0]!.name, name, 'stored as written')
})

t.test('ids that cannot be stored are 400, on reads and starts', async (t) => {
  const processes = sharedSchema(t)
  const wf = defineWorkflow('plain', async () => 1)
  const engine = await processes.start({ workflows: [wf] })
  for (const id of [`x${loneSurrogate}`, 'a\u0000b']) {
    await t.rejects(engine.getStatus(id), { code: InvalidWorkflowIdError.code, statusCode: 400 })
    await t.rejects(engine.listSteps(id), { code: InvalidWorkflowIdError.code })
    await t.rejects(engine.retrieve(id), { code: InvalidWorkflowIdError.code })
    await t.rejects(engine.getResult(id), { code: InvalidWorkflowIdError.code })
    await t.rejects(engine.startWorkflow(wf, undefined, { workflowId: id }), { code: InvalidWorkflowIdError.code })
    await t.rejects(engine.startWorkflow(wf, undefined, { requestId: id }), { code: InvalidRequestIdError.code })
  }
  t.same(await engine.list(), [], 'nothing was started')
})

t.test('list() validates its filter: 400 DBOS_ERR_INVALID_LIST_FILTER', async (t) => {
  const engine = await buildEngine(t, { workflows: [] })
  const bad: unknown[] = [
    { limit: -1 }, { limit: Number.NaN }, { limit: 1.5 }, { limit: 1e12 }, { limit: 0 }, { limit: '10' },
    { offset: -1 }, { offset: 0.5 }, { offset: Number.NaN },
    { name: 'a\u0000b' }, { requestId: loneSurrogate }, { executorId: 7 },
    { createdAfter: new Date('nope') }, { createdBefore: '2020-01-01' },
    { status: 'DONE' }, { order: 'sideways' }, { workflowName: 'x' }, 'name', [1]
  ]
  for (const filter of bad) {
    await t.rejects(engine.list(filter as never), { code: InvalidListFilterError.code, statusCode: 400 }, JSON.stringify(filter) ?? String(filter))
  }
  t.same(await engine.list({ limit: 10_000, offset: 0, order: 'asc', status: 'PENDING', name: undefined }), [], 'the largest limit is fine')
})

t.test('over HTTP, a bad filter is a 400 with its code, not a 500', async (t) => {
  const app = await buildApp(t, { workflows: [] })
  app.get('/workflows', async (req) => app.workflows.list({ limit: Number((req.query as { limit: string }).limit) }))
  await app.ready()
  const res = await app.inject({ method: 'GET', url: '/workflows?limit=-5' })
  t.equal(res.statusCode, 400)
  t.equal(res.json().code, InvalidListFilterError.code)
})
