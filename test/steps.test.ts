import t from 'tap'
import { defineWorkflow } from '../lib/index.js'
import { adminSql, pollUntil, uniqueSchema } from './helpers/db.js'
import { Counter, gate, interruptAndResume, sharedSchema } from './helpers/workflows.js'

const fast = { intervalMs: 1, backoffRate: 1 }

t.test('parallel steps are recorded in call order and replay after a restart without running again', async (t) => {
  const admin = adminSql(t)
  const counter = new Counter()
  const hold = gate()
  let hang = true
  const finished: string[] = []
  const wf = defineWorkflow('parallel', async (ctx) => {
    counter.hit('body')
    // Finish in reverse call order: c, then b, then a.
    const cDone = gate()
    const bDone = gate()
    const run = (name: string, wait: () => Promise<void>, done: () => void) => ctx.step(name, async () => {
      await wait()
      counter.hit(name)
      finished.push(name)
      done()
      return name.toUpperCase()
    })
    const parallel = await Promise.all([
      run('a', () => bDone.wait(), () => {}),
      run('b', () => cDone.wait(), () => bDone.open()),
      run('c', async () => {}, () => cDone.open())
    ])
    const last = await ctx.step('last', async () => { counter.hit('last'); if (hang) await hold.wait(); return 'L' })
    return [...parallel, last]
  })
  const { b, workflowId, schema } = await interruptAndResume(t, {
    def: wf,
    input: undefined,
    hold,
    beforeRestart: async (a, id) => {
      t.same(finished, ['c', 'b', 'a'], 'the steps finished in reverse order')
      t.same((await a.listSteps(id)).map((s) => [s.stepId, s.name, s.output]), [[0, 'a', 'A'], [1, 'b', 'B'], [2, 'c', 'C']],
        'recorded by call order, not finish order')
      hang = false
    }
  })
  t.same(await b.getResult(workflowId, { timeoutMs: 15_000 }), ['A', 'B', 'C', 'L'])
  const [row] = await admin`SELECT status, epoch::text AS epoch FROM ${admin(schema)}.workflows WHERE workflow_id = ${workflowId}`
  t.same(row, { status: 'SUCCESS', epoch: '2' }, 'claimed once, by b\'s recovery (a new epoch), and finished by it')
  t.same(['a', 'b', 'c', 'last', 'body'].map((n) => counter.get(n)), [1, 1, 1, 2, 2],
    'completed steps replayed; only the interrupted step and the body ran again')
  t.same((await b.listSteps(workflowId)).map((s) => s.name), ['a', 'b', 'c', 'last'])
  hold.open()
})

t.test('step retries', async (t) => {
  t.test('a step that fails twice succeeds on its third attempt', async (t) => {
    let attempts = 0
    const wf = defineWorkflow('flaky', async (ctx) => ctx.step('flaky', () => {
      attempts++
      if (attempts < 3) throw Object.assign(new Error(`fail ${attempts}`), { code: 'E_FLAKY' })
      return `ok after ${attempts}`
    }, { retries: { maxAttempts: 3, ...fast } }))
    const engine = await sharedSchema(t).start({ workflows: [wf] })
    const handle = await engine.startWorkflow(wf, undefined)
    t.equal(await handle.getResult(), 'ok after 3')
    t.equal(attempts, 3)
    const steps = await engine.listSteps(handle.workflowId)
    t.equal(steps.length, 1, 'attempts are not steps')
    t.equal(steps[0]!.output, 'ok after 3')
    t.equal(steps[0]!.error, undefined)
  })

  t.test('when every attempt fails, the last error is recorded and thrown, with its code and properties', async (t) => {
    let attempts = 0
    const wf = defineWorkflow('down', async (ctx) => ctx.step('down', () => {
      attempts++
      throw Object.assign(new Error(`down ${attempts}`), { code: 'E_DOWN', statusCode: 502, detail: { tries: attempts } })
    }, { retries: { maxAttempts: 3, ...fast } }))
    const processes = sharedSchema(t)
    const engine = await processes.start({ workflows: [wf] })
    const handle = await engine.startWorkflow(wf, undefined)
    const expected = { message: 'down 3', code: 'E_DOWN', statusCode: 502, detail: { tries: 3 } }
    await t.rejects(handle.getResult(), expected, 'the run that executed it')
    t.equal(attempts, 3)
    const [step] = await engine.listSteps(handle.workflowId)
    t.match(step!.error, expected, 'the step checkpoint holds the final error')
    const status = await engine.getStatus(handle.workflowId)
    t.equal(status.status, 'ERROR')
    t.match(status.error, expected)
    const other = await processes.start({ executorId: 'other' })
    await t.rejects(other.getResult(handle.workflowId), expected, 'another process reads the same error from the database')
  })

  t.test('without a retry policy a failing step runs once', async (t) => {
    let attempts = 0
    const wf = defineWorkflow('once', async (ctx) => ctx.step('once', () => { attempts++; throw new Error('no') }))
    const engine = await sharedSchema(t).start({ workflows: [wf] })
    await t.rejects((await engine.startWorkflow(wf, undefined)).getResult(), { message: 'no' })
    t.equal(attempts, 1)
  })

  t.test('a recorded step error replays with its code, without running again', async (t) => {
    const hold = gate()
    let hang = true
    let attempts = 0
    const wf = defineWorkflow('replayError', async (ctx) => {
      let code: unknown
      try {
        await ctx.step('fails', () => { attempts++; throw Object.assign(new TypeError('bad'), { code: 'E_BAD' }) }, { retries: { maxAttempts: 2, ...fast } })
      } catch (err) {
        code = [(err as TypeError).constructor.name, (err as { code?: string }).code]
      }
      await ctx.step('hang', async () => { if (hang) await hold.wait() })
      return code
    })
    const { b, workflowId } = await interruptAndResume(t, { def: wf, input: undefined, hold, beforeRestart: () => { hang = false } })
    t.same(await b.getResult(workflowId, { timeoutMs: 15_000 }), ['TypeError', 'E_BAD'])
    t.equal(attempts, 2, 'the failed step was not retried again on recovery')
    hold.open()
  })
})

t.test('a step replayed under a different name fails the workflow with DBOS_ERR_NONDETERMINISM', async (t) => {
  const hold = gate()
  let renamedRan = 0
  const before = defineWorkflow('evolving', async (ctx) => {
    await ctx.step('first', () => 1)
    await ctx.step('hang', () => hold.wait())
  })
  const after = defineWorkflow('evolving', async (ctx) => {
    await ctx.step('renamed', () => { renamedRan++; return 1 })
    await ctx.step('hang', () => {})
  })
  const { b, workflowId } = await interruptAndResume(t, { def: before, input: undefined, hold, resumeWith: [after] })
  await t.rejects(b.getResult(workflowId, { timeoutMs: 15_000 }), { code: 'DBOS_ERR_NONDETERMINISM' })
  const status = await b.getStatus(workflowId)
  t.equal(status.status, 'ERROR')
  t.match(status.error, { code: 'DBOS_ERR_NONDETERMINISM' })
  t.equal(renamedRan, 0, 'the renamed step never ran')
  hold.open()
})

t.test('transactions', async (t) => {
  const sql = adminSql(t)
  const data = uniqueSchema('data')
  await sql`CREATE SCHEMA ${sql(data)}`
  await sql`CREATE TABLE ${sql(data)}.items (id text PRIMARY KEY)`
  t.teardown(() => sql`DROP SCHEMA ${sql(data)} CASCADE`)
  const items = `${data}.items`
  const countItems = async (prefix: string) => (await sql`SELECT count(*)::int AS n FROM ${sql(items)} WHERE id LIKE ${prefix + '%'}`)[0]!.n as number

  t.test('writes happen exactly once: a recovery replays them without writing again', async (t) => {
    const counter = new Counter()
    const hold = gate()
    let hang = true
    const wf = defineWorkflow('txOnce', async (ctx) => {
      const inserted = await ctx.transaction('insert', async (tx) => {
        counter.hit('insert')
        await tx`INSERT INTO ${tx(items)} (id) VALUES (${'once-' + ctx.workflowId})`
        return { rows: 1 }
      })
      let failed: unknown
      try {
        await ctx.transaction('failing', async (tx) => {
          counter.hit('failing')
          await tx`INSERT INTO ${tx(items)} (id) VALUES (${'rolled-back-' + ctx.workflowId})`
          throw Object.assign(new Error('abort the transaction'), { code: 'E_TX' })
        })
      } catch (err) {
        failed = (err as { code?: string }).code
      }
      await ctx.step('hang', async () => { if (hang) await hold.wait() })
      return { inserted, failed }
    })
    const { b, workflowId } = await interruptAndResume(t, {
      def: wf,
      input: undefined,
      hold,
      beforeRestart: async () => {
        t.equal(await countItems('once-'), 1, 'committed before the restart')
        hang = false
      }
    })
    t.same(await b.getResult(workflowId, { timeoutMs: 15_000 }), { inserted: { rows: 1 }, failed: 'E_TX' })
    t.equal(counter.get('insert'), 1, 'the transaction body ran once')
    t.equal(counter.get('failing'), 1, 'the failed transaction was not run again either')
    t.equal(await countItems('once-'), 1, 'its row was written once')
    t.equal(await countItems('rolled-back-'), 0, 'the failing transaction rolled back')
    const steps = await b.listSteps(workflowId)
    t.same(steps.map((s) => s.name), ['insert', 'failing', 'hang'])
    t.same(steps[0]!.output, { rows: 1 })
    t.match(steps[1]!.error, { code: 'E_TX', message: 'abort the transaction' }, 'the error is recorded as the step outcome')
    hold.open()
  })

  t.test('a throwing transaction rolls back and fails the workflow with its error', async (t) => {
    const wf = defineWorkflow('txFails', async (ctx) => {
      await ctx.transaction('dup', async (tx) => {
        await tx`INSERT INTO ${tx(items)} (id) VALUES (${'dup-' + ctx.workflowId})`
        await tx`INSERT INTO ${tx(items)} (id) VALUES (${'dup-' + ctx.workflowId})`
      })
    })
    const engine = await sharedSchema(t).start({ workflows: [wf] })
    const handle = await engine.startWorkflow(wf, undefined)
    await t.rejects(handle.getResult(), { code: '23505' }, 'the unique violation reaches the caller')
    t.equal(await countItems('dup-'), 0, 'the first insert rolled back')
    const [step] = await engine.listSteps(handle.workflowId)
    t.match(step!.error, { code: '23505' })
    t.equal((await engine.getStatus(handle.workflowId)).status, 'ERROR')
  })
})

t.test('a step returning undefined replays as undefined (and null as null)', async (t) => {
  const counter = new Counter()
  const hold = gate()
  let hang = true
  const wf = defineWorkflow('nothing', async (ctx) => {
    const u = await ctx.step('undefined', () => { counter.hit('undefined'); return undefined })
    const n = await ctx.step('null', () => { counter.hit('null'); return null })
    const obj = await ctx.step('sparse', () => { counter.hit('sparse'); return { a: undefined, b: [undefined, 1] } })
    await ctx.step('hang', async () => { if (hang) await hold.wait() })
    return { u: u === undefined, n: n === null, hasA: 'a' in obj, aUndefined: obj.a === undefined, b0: obj.b[0] === undefined, len: obj.b.length }
  })
  const { b, workflowId } = await interruptAndResume(t, { def: wf, input: undefined, hold, beforeRestart: () => { hang = false } })
  t.same(await b.getResult(workflowId, { timeoutMs: 15_000 }), { u: true, n: true, hasA: true, aUndefined: true, b0: true, len: 2 })
  t.same(['undefined', 'null', 'sparse'].map((n) => counter.get(n)), [1, 1, 1], 'the values came from the checkpoints')
  hold.open()
})
