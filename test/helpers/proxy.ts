/**
 * A TCP proxy in front of a Postgres server, for tests that lose answers or
 * cut connections at a chosen moment: a statement that commits while the
 * proxy drops the server's replies leaves its client not knowing it did.
 */
import net from 'node:net'
import type { Test } from 'tap'

export interface Proxy {
  /** The target's connection string, through the proxy. */
  readonly url: string
  /** From now on, what the server sends is dropped: clients wait for answers that never come. */
  dropReplies (): void
  /** Resets every connection open now (clients see them fail) and lets new ones through normally. */
  cutAll (): void
}

export async function startProxy (t: Test, targetUrl: string): Promise<Proxy> {
  const target = new URL(targetUrl)
  const pairs = new Set<{ client: net.Socket, server: net.Socket }>()
  let dropping = false
  const proxy = net.createServer((client) => {
    const server = net.connect(Number(target.port), target.hostname)
    const pair = { client, server }
    pairs.add(pair)
    const close = (): void => {
      pairs.delete(pair)
      client.destroy()
      server.destroy()
    }
    client.on('data', (data) => { if (!server.destroyed) server.write(data) })
    server.on('data', (data) => { if (!dropping && !client.destroyed) client.write(data) })
    client.on('close', close).on('error', close)
    server.on('close', close).on('error', close)
  })
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    for (const { client, server } of pairs) { client.destroy(); server.destroy() }
    return new Promise<void>((resolve) => proxy.close(() => resolve()))
  })
  const url = new URL(targetUrl)
  url.hostname = '127.0.0.1'
  url.port = String((proxy.address() as net.AddressInfo).port)
  return {
    url: url.toString(),
    dropReplies: () => { dropping = true },
    cutAll: () => {
      for (const { client, server } of pairs) {
        client.resetAndDestroy()
        server.destroy()
      }
      pairs.clear()
      dropping = false
    }
  }
}
