/**
 * Resume and fork of a workflow that came from a queue: the new run goes back
 * on that queue and waits its turn, so the queue's limits hold for it too (a
 * resume must not become a way around "at most one at a time").
 */
import t from 'tap'
import { defineQueue, defineWorkflow } from '../lib/index.js'
import { buildEngine, pollUntil, uniqueSchema } from './helpers/db.js'

t.test('resume and fork of a queued workflow wait on its queue behind the one running', async (t) => {
  let failing = true
  let running = 0
  let most = 0
  let release!: () => void
  const gate = new Promise<void>((resolve) => { release = resolve })
  const wf = defineWorkflow('queuedWork', async (ctx, input: { hold: boolean }) => {
    running++
    most = Math.max(most, running)
    try {
      await ctx.step('work', async () => {
        if (input.hold) await gate
        else if (failing) throw new Error('not yet')
        return 'worked'
      })
    } finally {
      running--
    }
    return 'done'
  })
  const one = defineQueue('one', { concurrency: 1 })
  const engine = await buildEngine(t, { schema: uniqueSchema(), workflows: [wf], queues: [one] })

  const failed = await engine.enqueue(one, wf, { hold: false })
  await t.rejects(failed.getResult({ timeoutMs: 20_000 }), /not yet/)
  t.equal((await failed.getStatus()).status, 'ERROR')

  const holder = await engine.enqueue(one, wf, { hold: true })
  await pollUntil(async () => (await holder.getStatus()).status === 'PENDING', { what: 'the holder running' })

  failing = false
  await engine.resume(failed.workflowId)
  const forked = await engine.fork(failed.workflowId, { fromStep: 0 })
  t.match(await engine.getStatus(failed.workflowId), { status: 'ENQUEUED', queueName: 'one' }, 'the resumed one waits on its queue')
  t.match(await engine.getStatus(forked.workflowId), { status: 'ENQUEUED', queueName: 'one', attempts: 1 }, 'the fork waits on the queue too, counted as a first run, as an enqueue')
  t.match(await engine.getStatus(failed.workflowId), { attempts: 1 }, 'so does the resumed one')
  // Give the dispatcher every chance to break the limit.
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.equal((await engine.getStatus(failed.workflowId)).status, 'ENQUEUED', 'still waiting while the holder runs')

  release()
  t.equal(await holder.getResult({ timeoutMs: 20_000 }), 'done')
  t.equal(await failed.getResult({ timeoutMs: 20_000 }), 'done', 'the resumed one ran once the slot was free')
  t.equal(await forked.getResult({ timeoutMs: 20_000 }), 'done', 'the fork ran too')
  t.equal(most, 1, 'never more than one at a time')
  for (const id of [failed.workflowId, forked.workflowId]) t.equal((await engine.getStatus(id)).attempts, 1, 'one attempt: its run, not a recovery')
})
