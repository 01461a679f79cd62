/**
 * A TCP relay in front of a Postgres (or PgBouncer) that records the SQL its
 * clients send: the text of every simple Query and every Parse of the
 * extended protocol. Shows what an engine asked of the database (a LISTEN, or
 * its absence; how often it read a row) without touching the engine.
 * Plain connections only (no TLS), as the test servers use.
 */
import { createConnection, createServer, type Socket } from 'node:net'
import type { Test } from 'tap'

export interface SqlRecorder {
  /** `target` with its host and port replaced by the relay's. */
  url: string
  /** Every statement text sent through the relay so far, in order. */
  statements: string[]
}

const SSL_REQUEST = 80877103
const GSSENC_REQUEST = 80877104

/** Starts a relay to `target`'s host and port; closed (with its connections) at teardown. */
export async function recordSql (t: Test, target: string): Promise<SqlRecorder> {
  const to = new URL(target)
  const statements: string[] = []
  const sockets = new Set<Socket>()
  const server = createServer((client) => {
    const upstream = createConnection({ host: to.hostname, port: Number(to.port || 5432) })
    for (const s of [client, upstream]) {
      sockets.add(s)
      s.on('close', () => sockets.delete(s))
      s.on('error', () => { client.destroy(); upstream.destroy() })
    }
    const read = statementReader((text) => statements.push(text))
    client.on('data', (chunk: Buffer) => { read(chunk); upstream.write(chunk) })
    upstream.pipe(client)
    client.on('end', () => upstream.end())
    upstream.on('end', () => client.end())
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => {
    for (const s of sockets) s.destroy()
    await new Promise((resolve) => server.close(resolve))
  })
  const url = new URL(target)
  url.hostname = '127.0.0.1'
  url.port = String((server.address() as { port: number }).port)
  return { url: url.href, statements }
}

/**
 * Splits a client's byte stream into frontend messages and reports the SQL in
 * Query ('Q': text) and Parse ('P': name, then text) messages. The first
 * messages have no type byte: the startup packet, after an SSL or GSS request
 * if any.
 */
function statementReader (report: (text: string) => void): (chunk: Buffer) => void {
  let buffered = Buffer.alloc(0)
  let started = false
  return (chunk) => {
    buffered = Buffer.concat([buffered, chunk])
    for (;;) {
      const header = started ? 5 : 8
      if (buffered.length < header) return
      const length = started ? buffered.readInt32BE(1) + 1 : buffered.readInt32BE(0)
      if (buffered.length < length) return
      const message = buffered.subarray(0, length)
      buffered = buffered.subarray(length)
      if (!started) {
        const code = message.readInt32BE(4)
        started = code !== SSL_REQUEST && code !== GSSENC_REQUEST
        continue
      }
      const type = String.fromCharCode(message[0]!)
      if (type === 'Q') report(cString(message, 5))
      if (type === 'P') report(cString(message, message.indexOf(0, 5) + 1))
    }
  }
}

function cString (buf: Buffer, from: number): string {
  return buf.toString('utf8', from, buf.indexOf(0, from))
}
