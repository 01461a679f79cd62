// In-process announcements (lib/core/announcements.ts): a watch made before a
// read hears what is announced while the read runs, so the wait after it
// does not sit out its poll.
import t from 'tap'
import { Announcements } from '../lib/core/announcements.js'

const within = async (p: Promise<void>, ms: number): Promise<boolean> =>
  Promise.race([p.then(() => true), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), ms))])

t.test('an announcement before next() resolves it at once; one after it wakes it', async (t) => {
  const a = new Announcements()
  const watch = a.watch('w1')
  a.announce('w1') // during "the read"
  t.ok(await within(watch.next(60_000), 100), 'announced while the caller read: no wait')
  t.notOk(await within(watch.next(200), 50), 'nothing new: it waits')
  const waiting = watch.next(60_000)
  a.announce('w2')
  t.notOk(await within(waiting, 50), 'another key does not wake it')
  a.announce('w1')
  t.ok(await within(waiting, 100), 'its key does')
  t.ok(await within(watch.next(30), 500), 'the poll ends a wait too')
  watch.close()
  a.announce('w1')
  a.announceAll()
})

t.test('announceAll wakes every watch; close ends a pending wait and forgets the key', async (t) => {
  const a = new Announcements()
  const one = a.watch('a')
  const two = a.watch('b')
  const waits = [one.next(60_000), two.next(60_000)]
  a.announceAll()
  t.ok(await within(Promise.all(waits).then(() => {}), 100))
  const pending = one.next(60_000)
  one.close()
  t.ok(await within(pending, 100), 'closed: the wait ends')
  two.close()
})
