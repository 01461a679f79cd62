// The heartbeat (lib/background/heartbeat.ts) on a real database, with the
// ownership check it runs after a silence made to fail once, as it does
// when the connection drops at that moment (a Postgres restart). The
// process must not die of it, and the check must run again.
import postgres from 'postgres'
import t from 'tap'
import { Heartbeat } from '../lib/background/heartbeat.js'
import { Clock } from '../lib/core/clock.js'
import { tables } from '../lib/store/connect.js'
import { migrate } from '../lib/store/migrate.js'
import { databaseUrl, dropSchema, pollUntil, uniqueSchema } from './helpers/db.js'

t.test('an ownership check that fails after a silence is tried again at the next beat; runs wait until one succeeds', async (t) => {
  const schema = uniqueSchema('beat')
  const sql = postgres(databaseUrl, { max: 2, onnotice: () => {} })
  t.teardown(async () => {
    await sql.end({ timeout: 5 })
    await dropSchema(schema)
  })
  const tbl = tables(sql, schema)
  await sql`CREATE SCHEMA ${sql(schema)}`
  await migrate(sql, tbl)
  const unhandled: unknown[] = []
  const onUnhandled = (reason: unknown): void => { unhandled.push(reason) }
  process.on('unhandledRejection', onUnhandled)
  t.teardown(() => { process.off('unhandledRejection', onUnhandled) })

  const events: string[] = []
  let checks = 0
  const log = (o: unknown): void => { events.push((o as { event: string }).event) }
  const heartbeat = new Heartbeat({
    sql,
    tables: tbl,
    logger: { debug () {}, info: log, warn: log, error: log },
    clock: new Clock(),
    executorId: 'beat-test',
    chosenId: true,
    appVersion: null,
    heartbeatMs: 50,
    leaseMs: 200,
    adopt: async () => {},
    checkOwnership: async () => {
      if (++checks === 1) throw Object.assign(new Error('the connection dropped'), { code: 'CONNECTION_CLOSED' })
    },
    lostId: () => {}
  })
  await heartbeat.register()
  heartbeat.start()
  t.teardown(() => heartbeat.stop(false))
  t.equal(heartbeat.current(), undefined, 'fresh: runs go on at once')

  // Frozen for longer than the lease, as under SIGSTOP.
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 400)
  const waiting = heartbeat.current()
  t.ok(waiting instanceof Promise, 'after the freeze, runs wait for a beat')
  let settled = false
  void waiting!.then(() => { settled = true })
  await pollUntil(() => checks >= 1, { what: 'the first ownership check' })
  t.equal(settled, false, 'not after the check that failed')
  await pollUntil(() => checks >= 2, { timeoutMs: 2000, what: 'the ownership check to be tried again' })
  await pollUntil(() => settled, { what: 'waiting runs to go on' })
  t.equal(events.filter((e) => e === 'executor.silent').length, 1)
  t.same(unhandled, [], 'no unhandled rejection')
})
