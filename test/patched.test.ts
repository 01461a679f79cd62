// ctx.patched: new code for a workflow while runs of the old code are in
// flight. A run that passed the patch point on old code keeps its path; one
// that reaches it on new code takes the new path, on every replay too.
import t from 'tap'
import { defineWorkflow, InvalidStepNameError, NondeterminismError } from '../lib/index.js'
import { buildEngine } from './helpers/db.js'
import { Counter, gate, interruptAndResume } from './helpers/workflows.js'

t.test('a run that passed the patch point on old code replays its old path on new code', async (t) => {
  const hold = gate()
  const ran = new Counter()
  const v1 = defineWorkflow('onboard', async (ctx) => {
    await ctx.step('create', () => ran.hit('create'))
    await ctx.step('notify', () => ran.hit('notify'))
    await ctx.step('hold', () => hold.wait())
    return 'v1 path'
  })
  const v2 = defineWorkflow('onboard', async (ctx) => {
    await ctx.step('create', () => ran.hit('create'))
    const patchedHere = await ctx.patched('welcome')
    if (patchedHere) await ctx.step('welcome', () => ran.hit('welcome'))
    await ctx.step('notify', () => ran.hit('notify'))
    await ctx.step('hold', () => hold.wait())
    return patchedHere ? 'v2 path' : 'v1 path'
  })
  const { b, workflowId } = await interruptAndResume(t, { def: v1, input: undefined, hold, resumeWith: [v2] })
  hold.open()
  t.equal(await b.getResult(workflowId, { timeoutMs: 10_000 }), 'v1 path', 'patched was false: the old run keeps its path')
  t.same((await b.listSteps(workflowId)).map((s) => s.name), ['create', 'notify', 'hold'], 'no marker, no new step, no NONDETERMINISM')
  t.equal(ran.get('welcome'), 0)
  t.equal(ran.get('create'), 1, 'recorded steps were not run again')
})

t.test('a run that reaches the patch point on new code takes the new path, also when replayed', async (t) => {
  const hold = gate()
  const ran = new Counter()
  const v2 = defineWorkflow('onboard2', async (ctx) => {
    await ctx.step('create', () => ran.hit('create'))
    const patchedHere = await ctx.patched('welcome')
    if (patchedHere) await ctx.step('welcome', () => ran.hit('welcome'))
    await ctx.step('hold', () => hold.wait())
    return patchedHere ? 'v2 path' : 'v1 path'
  })
  const { b, workflowId } = await interruptAndResume(t, { def: v2, input: undefined, hold })
  hold.open()
  t.equal(await b.getResult(workflowId, { timeoutMs: 10_000 }), 'v2 path')
  t.same((await b.listSteps(workflowId)).map((s) => s.name), ['create', 'patched:welcome', 'welcome', 'hold'])
  t.equal(ran.get('welcome'), 1, 'the new step ran once: the replay returned its record')
})

t.test('an old run that had not reached the patch point yet takes the new path', async (t) => {
  const hold = gate()
  const v1 = defineWorkflow('onboard3', async (ctx) => {
    await ctx.step('hold', () => hold.wait())
    await ctx.step('notify', () => 1)
    return 'v1'
  })
  const v2 = defineWorkflow('onboard3', async (ctx) => {
    await ctx.step('hold', () => hold.wait())
    if (await ctx.patched('welcome')) await ctx.step('welcome', () => 1)
    await ctx.step('notify', () => 1)
    return 'v2'
  })
  const { b, workflowId } = await interruptAndResume(t, { def: v1, input: undefined, hold, resumeWith: [v2] })
  hold.open()
  t.equal(await b.getResult(workflowId, { timeoutMs: 10_000 }), 'v2')
})

t.test('removing a patch call under runs that recorded its marker is caught as NONDETERMINISM', async (t) => {
  const hold = gate()
  const withPatch = defineWorkflow('onboard4', async (ctx) => {
    if (await ctx.patched('welcome')) await ctx.step('welcome', () => 1)
    await ctx.step('hold', () => hold.wait())
  })
  const withoutPatch = defineWorkflow('onboard4', async (ctx) => {
    await ctx.step('welcome', () => 1)
    await ctx.step('hold', () => hold.wait())
  })
  const { b, workflowId } = await interruptAndResume(t, { def: withPatch, input: undefined, hold, resumeWith: [withoutPatch] })
  hold.open()
  await t.rejects(b.getResult(workflowId, { timeoutMs: 10_000 }), { code: NondeterminismError.code })
})

t.test('patched names follow the step-name rules', async (t) => {
  const bad = defineWorkflow('patched-bad', async (ctx) => ctx.patched('a\u0000b'))
  const engine = await buildEngine(t, { workflows: [bad] })
  await t.rejects((await engine.startWorkflow(bad, undefined)).getResult(), { code: InvalidStepNameError.code })
})
