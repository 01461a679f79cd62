// The one place a process records what it is busy with (lib/engine/ownership.ts).
import t from 'tap'
import { Ownership } from '../lib/engine/ownership.js'

t.test('onlyStale: a local run is stale only when its epoch is older than the recorded one', async (t) => {
  const epochs = new Map([['w', '7']])
  const own = new Ownership((id) => epochs.get(id))
  t.ok(own.onlyStale('w', '8'), 'older: cancelled or fenced, unwinding')
  t.ok(own.onlyStale('w', '10'), 'compared as numbers, not as text')
  t.notOk(own.onlyStale('w', '7'), 'the same epoch: it is the current run')
  t.notOk(own.onlyStale('w', '6'), 'a list read before this run was taken up: the run is newer, not stale')
  t.notOk(own.onlyStale('other', '1'), 'not running here')
})

t.test('dispatched() waits for every dispatch in flight to launch its runs', async (t) => {
  const own = new Ownership(() => undefined)
  await own.dispatched() // none in flight: at once
  const first = own.dispatching()
  const second = own.dispatching()
  let waited = false
  const done = own.dispatched().then(() => { waited = true })
  first()
  first() // a second release is ignored
  await new Promise((resolve) => setImmediate(resolve))
  t.notOk(waited, 'one is still in flight')
  const later = own.dispatching() // begun after the call: not waited for
  second()
  await done
  t.ok(waited, 'resolved once those in flight at the call were released, though a later one is not')
  later()
})
