/**
 * Server-Sent Events from a workflow's stream: each value is one event whose
 * `id` is its offset, so a browser's EventSource that reconnects sends
 * `Last-Event-ID` and the stream resumes after the last value it got.
 *
 *   app.get('/jobs/:id/progress', (req, reply) =>
 *     sse(req, reply, app.workflows.readStream(req.params.id, 'progress', { from: lastEventId(req) })))
 */
import { Readable } from 'node:stream'
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { StreamValue } from '../lib/status.js'

/**
 * The offset after the client's `Last-Event-ID` header (0 without one, or
 * with one that is not an offset).
 */
export function lastEventId (request: FastifyRequest): number {
  const header = request.headers['last-event-id']
  const text = (Array.isArray(header) ? header[0] : header)?.trim() ?? ''
  // Only the decimal offsets we send: Number() would read '' as 0 (skipping
  // the first value) and '1e2' or '0x10' as offsets never sent.
  if (!/^\d{1,15}$/.test(text)) return 0
  return Number(text) + 1
}

/**
 * Sends `values` as text/event-stream: `id: <offset>` and `data: <JSON>` per
 * value, then an `event: end` when the stream ends. The iteration stops when
 * the client goes away.
 */
export function sse (request: FastifyRequest, reply: FastifyReply, values: AsyncIterable<StreamValue>): FastifyReply {
  const iterator = values[Symbol.asyncIterator]()
  const body = Readable.from((async function * () {
    try {
      for (;;) {
        const next = await iterator.next()
        if (next.done === true) break
        yield `id: ${next.value.offset}\ndata: ${toJson(next.value.value)}\n\n`
      }
      yield 'event: end\ndata: {}\n\n'
    } finally {
      await iterator.return?.()
    }
  })())
  request.raw.on('close', () => body.destroy())
  return reply
    .header('content-type', 'text/event-stream; charset=utf-8')
    .header('cache-control', 'no-cache')
    .header('x-accel-buffering', 'no')
    .send(body)
}

/** A value as one line of JSON (BigInts as strings; undefined as null). */
function toJson (value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => typeof v === 'bigint' ? v.toString() : v) ?? 'null'
}
