import t from 'tap'
import { deserialize, serialize, serializeError } from '../lib/core/codec.js'

const roundTrip = (v: unknown): unknown => deserialize(serialize(v))

t.test('round-trips JSON plus Date, BigInt, Map, Set, undefined, NaN and bytes', async (t) => {
  const value = {
    s: 'x', n: 1.5, b: true, nil: null, u: undefined, big: 12345678901234567890n,
    d: new Date('2024-01-02T03:04:05.678Z'), inf: -Infinity, nan: NaN,
    m: new Map<unknown, unknown>([['a', 1], [2, new Set([1, 'two'])]]),
    arr: [1, undefined, { deep: new Date(0) }],
    bytes: new Uint8Array([0, 1, 255]),
    tagLike: { $dbos: 'Date', v: 'not a date' }
  }
  const back = roundTrip(value) as typeof value
  t.same(back, value)
  t.ok(back.d instanceof Date)
  t.ok('u' in back, 'undefined properties are kept')
  t.equal(back.big, value.big)
  t.ok(back.m instanceof Map)
  t.ok((back.m.get(2) as Set<unknown>).has('two'))
  t.same(back.tagLike, { $dbos: 'Date', v: 'not a date' }, 'user objects that look like tags stay plain objects')
  t.equal(roundTrip(undefined), undefined)
  t.ok(Number.isNaN((roundTrip(new Date(NaN)) as Date).getTime()), 'an invalid Date stays invalid')
})

t.test('round-trips errors with their class, message, code and cause', async (t) => {
  const err = Object.assign(new TypeError('boom', { cause: new Error('inner') }), { code: 'E_BOOM', statusCode: 418 })
  const back = deserialize(serializeError(err)) as TypeError & { code: string, statusCode: number }
  t.ok(back instanceof TypeError)
  t.equal(back.message, 'boom')
  t.equal(back.code, 'E_BOOM')
  t.equal(back.statusCode, 418)
  t.equal((back.cause as Error).message, 'inner')
  class PaymentDeclined extends Error { override name = 'PaymentDeclined' }
  const custom = deserialize(serializeError(new PaymentDeclined('no funds'))) as Error
  t.equal(custom.name, 'PaymentDeclined')
  t.equal(custom.message, 'no funds')
})

t.test('refuses values it cannot store, with a code', async (t) => {
  const cyclic: Record<string, unknown> = {}
  cyclic.self = cyclic
  class Point { constructor (public x: number) {} }
  for (const [label, value] of [['function', { f: () => 1 }], ['symbol', Symbol('s')], ['cycle', cyclic], ['class instance', new Point(1)]] as const) {
    t.throws(() => serialize(value, 'the input'), { code: 'DBOS_ERR_UNSERIALIZABLE_VALUE', statusCode: 400 }, label)
  }
  t.equal(serialize({ toJSON: () => 'custom' }), '"custom"', 'toJSON is honoured')
})

t.test('an error with unstorable properties is still recorded', async (t) => {
  const err = Object.assign(new Error('odd'), { fn: () => 1 })
  const back = deserialize(serializeError(err)) as Error
  t.equal(back.message, 'odd')
})
