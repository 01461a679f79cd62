// The group-commit batcher on its own (no database involved: it only groups
// calls to the flush function it is given).
import t from 'tap'
import { Batcher } from '../lib/core/batcher.js'

t.test('items pushed together share one flush; later ones wait for the next', async (t) => {
  const flushes: number[][] = []
  let release!: () => void
  const held = new Promise<void>((resolve) => { release = resolve })
  const batcher = new Batcher<number, number>(async (items) => {
    flushes.push(items)
    if (flushes.length === 1) await held
    return items.map((x) => x * 10)
  }, { maxInFlight: 1, maxBatch: 100 })
  const first = [1, 2, 3].map((x) => batcher.push(x))
  await new Promise((resolve) => setImmediate(resolve))
  const second = [4, 5].map((x) => batcher.push(x))
  await new Promise((resolve) => setImmediate(resolve))
  t.same(flushes, [[1, 2, 3]], 'the second group waits while the first flush is in flight')
  release()
  t.same(await Promise.all([...first, ...second]), [10, 20, 30, 40, 50], 'each caller gets its own result')
  t.same(flushes, [[1, 2, 3], [4, 5]])
  await batcher.drained()
})

t.test('a failing batch is retried item by item, in order, so one bad item fails alone', async (t) => {
  const calls: number[][] = []
  const batcher = new Batcher<number, number>(async (items) => {
    calls.push(items)
    if (items.includes(2)) throw Object.assign(new Error('bad row'), { code: 'BAD' })
    return items
  }, { maxInFlight: 1, maxBatch: 100 })
  const results = await Promise.allSettled([1, 2, 3].map((x) => batcher.push(x)))
  t.same(results.map((r) => r.status), ['fulfilled', 'rejected', 'fulfilled'])
  t.same(calls, [[1, 2, 3], [1], [2], [3]])
})

t.test('errors that would fail every item are not retried item by item', async (t) => {
  let calls = 0
  const batcher = new Batcher<number, number>(async () => {
    calls++
    throw Object.assign(new Error('down'), { code: 'ECONNREFUSED' })
  }, { maxInFlight: 1, maxBatch: 100, isolateOnError: (err) => (err as { code?: string }).code !== 'ECONNREFUSED' })
  const results = await Promise.allSettled([1, 2, 3].map((x) => batcher.push(x)))
  t.ok(results.every((r) => r.status === 'rejected'))
  t.equal(calls, 1)
})

t.test('maxBatch bounds a flush', async (t) => {
  const sizes: number[] = []
  const batcher = new Batcher<number, number>(async (items) => { sizes.push(items.length); return items }, { maxInFlight: 1, maxBatch: 2 })
  await Promise.all([1, 2, 3, 4, 5].map((x) => batcher.push(x)))
  t.same(sizes, [2, 2, 1])
})

t.test('retried item by item, an item that depends on a failed earlier one is not sent', async (t) => {
  const calls: string[][] = []
  const batcher = new Batcher<string, string>(async (items) => {
    calls.push(items)
    if (items.includes('a:step')) throw Object.assign(new Error('bad row'), { code: 'BAD' })
    return items
  }, { maxInFlight: 1, maxBatch: 100, dependsOn: (later, earlier) => later.endsWith(':done') && later[0] === earlier[0] })
  const results = await Promise.allSettled(['a:step', 'b:step', 'a:done', 'b:done'].map((x) => batcher.push(x)))
  t.same(results.map((r) => r.status), ['rejected', 'fulfilled', 'rejected', 'fulfilled'])
  t.equal((results[2] as PromiseRejectedResult).reason.code, 'BAD', 'rejected with the error of the item it depends on')
  t.same(calls, [['a:step', 'b:step', 'a:done', 'b:done'], ['a:step'], ['b:step'], ['b:done']], 'a:done was never sent alone')
})
