/**
 * A workflow whose very first call publishes (setEvent, writeStream,
 * closeStream) with a generated id: with the first-step shortcut its start
 * row is not written yet (writes/opening.ts), and the publish, written with
 * an ownership check on that row, must not find the workflow "not its own".
 */
import t from 'tap'
import { defineWorkflow } from '../lib/index.js'
import { buildEngine } from './helpers/db.js'

const firstCalls = {
  setEvent: defineWorkflow('firstSetEvent', async (ctx) => { await ctx.setEvent('status', 'started'); return 'ok' }),
  writeStream: defineWorkflow('firstWriteStream', async (ctx) => { await ctx.writeStream('progress', 1); return 'ok' }),
  closeStream: defineWorkflow('firstCloseStream', async (ctx) => { await ctx.closeStream('progress'); return 'ok' })
}

for (const startWithFirstStep of [true, false]) {
  t.test(`a first call that publishes (startWithFirstStep: ${startWithFirstStep})`, async (t) => {
    const engine = await buildEngine(t, { workflows: Object.values(firstCalls), startWithFirstStep })
    for (const [call, wf] of Object.entries(firstCalls)) {
      // Several, so that a race with the start's write would show.
      const handles = await Promise.all(Array.from({ length: 20 }, () => engine.startWorkflow(wf, undefined)))
      const results = await Promise.all(handles.map((h) => h.getResult({ timeoutMs: 15_000 })))
      t.same(results, handles.map(() => 'ok'), `${call} first: every workflow finished`)
    }
    const h = await engine.startWorkflow(firstCalls.setEvent, undefined)
    await h.getResult()
    t.equal(await engine.getEvent(h.workflowId, 'status'), 'started', 'the event was written')
  })
}
