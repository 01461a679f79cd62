// Waiting for results: long and invalid timeouts, many waiters on one
// workflow sharing one look, and waiters that time out leaving nothing behind.
import t from 'tap'
import { defineWorkflow, InvalidTimeoutError, ResultTimeoutError } from '../lib/index.js'
import { kResultStats } from '../lib/core/symbols.js'
import { buildEngine, pollUntil } from './helpers/db.js'
import { gate, sharedSchema } from './helpers/workflows.js'

const held = gate()
const holding = defineWorkflow('holding', async (ctx, n: number) => {
  await ctx.step('hold', () => held.wait())
  return n * 2
})

t.test('a timeout past setTimeout\'s limit waits for the result instead of firing at once', async (t) => {
  const engine = await buildEngine(t, { workflows: [holding] })
  const handle = await engine.startWorkflow(holding, 21)
  const result = handle.getResult({ timeoutMs: 3e9 })
  let settled = false
  void result.then(() => { settled = true }, () => { settled = true })
  await pollUntil(() => held.entered > 0, { what: 'the step to be entered' })
  await new Promise((resolve) => setImmediate(resolve))
  t.notOk(settled, 'still waiting once the step runs')
  held.open()
  t.equal(await result, 42)
  t.equal(await handle.getResult({ timeoutMs: Number.MAX_SAFE_INTEGER }), 42, 'the largest finite timeout')
  t.equal(await handle.getResult({ timeoutMs: Infinity }), 42, 'Infinity waits as long as it takes')
})

t.test('invalid timeouts are refused with 400 DBOS_ERR_INVALID_TIMEOUT', async (t) => {
  const engine = await buildEngine(t, { workflows: [holding] })
  for (const timeoutMs of [-1, Number.NaN, '5', null]) {
    await t.rejects(engine.getResult('any', { timeoutMs: timeoutMs as number }), { code: InvalidTimeoutError.code, statusCode: 400 }, String(timeoutMs))
  }
})

t.test('2,000 waiters in another process share one look per wake-up', async (t) => {
  const processes = sharedSchema(t)
  const hold = gate()
  const slow = defineWorkflow('slow', async (ctx) => {
    await ctx.step('hold', () => hold.wait())
    return 'done'
  })
  const runner = await processes.start({ workflows: [slow], executorId: 'runner' })
  const waiter = await processes.start({ workflows: [slow], executorId: 'waiter', resultPollIntervalMs: 20 })
  const handle = await runner.startWorkflow(slow, undefined)
  await pollUntil(() => hold.entered > 0, { what: 'the step to be entered' })
  const before = waiter[kResultStats]().looks
  const results = Array.from({ length: 2000 }, () => waiter.getResult(handle.workflowId))
  t.equal(waiter[kResultStats]().watches, 1, 'one watch for all of them')
  // About 10 polls pass while they wait.
  await new Promise((resolve) => setTimeout(resolve, 200))
  const looks = waiter[kResultStats]().looks - before
  t.ok(looks >= 1 && looks <= 40, `${looks} looks in 200 ms with a 20 ms poll, not one per waiter`)
  hold.open()
  t.same(new Set(await Promise.all(results)), new Set(['done']))
  t.equal(waiter[kResultStats]().watches, 0, 'the watch ended with the outcome')
})

t.test('20,000 timed-out waits on a long-running workflow leave nothing behind', async (t) => {
  const hold = gate()
  const long = defineWorkflow('long', async (ctx) => {
    await ctx.step('hold', () => hold.wait())
    return 'finally'
  })
  const engine = await buildEngine(t, { workflows: [long] })
  const handle = await engine.startWorkflow(long, undefined)
  await pollUntil(() => hold.entered > 0, { what: 'the step to be entered' })
  for (let i = 0; i < 20; i++) {
    const timeouts = await Promise.allSettled(Array.from({ length: 1000 }, () => handle.getResult({ timeoutMs: 1 })))
    t.equal(timeouts.filter((r) => r.status === 'rejected' && r.reason.code === ResultTimeoutError.code).length, 1000)
  }
  const stats = await pollUntil(() => {
    const s = engine[kResultStats]()
    return s.watches === 0 && s.localListeners === 0 && s
  }, { what: 'the watches to end' })
  t.same(stats, { watches: 0, looks: 0, localListeners: 0 }, 'no watch, no listener on the run, and no database reads for a run here')
  hold.open()
  t.equal(await handle.getResult(), 'finally')
})
