// Last-Event-ID is read as the offsets sse() sends, and nothing else: an
// empty or odd header starts from the beginning rather than skipping values.
import t from 'tap'
import type { FastifyRequest } from 'fastify'
import { lastEventId } from '../plugins/sse.js'

const of = (header: string | string[] | undefined): number => lastEventId({ headers: { 'last-event-id': header } } as unknown as FastifyRequest)

t.test('Last-Event-ID: the offset after it, or 0', async (t) => {
  t.equal(of(undefined), 0, 'no header')
  t.equal(of('0'), 1, 'after the first value')
  t.equal(of(' 41 '), 42, 'spaces around it')
  t.equal(of(['7', '9']), 8, 'repeated: the first')
  for (const odd of ['', ' ', '1e2', '0x10', '-1', '1.5', 'abc', '9'.repeat(20)]) t.equal(of(odd), 0, JSON.stringify(odd))
})
