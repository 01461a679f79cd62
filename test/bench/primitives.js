// The primitives phase of `npm run bench` (issue 11): ours against DBOS
// Transact, each in a child process of its own on a fresh database.
// send → recv → setEvent → getEvent round trips one at a time, getEvent of
// an event already set, and `count` workflows waiting in recv (heap, then
// one message to each). Statements are counted at the drivers.
import { spawnContender } from './child.js'

export async function benchPrimitives (server, plan, kinds, log) {
  const out = {}
  for (const kind of kinds) {
    const db = `bench_primitives_${kind}`
    out[kind] = {}
    log(`primitives: ${kind}, round trips and getEvent`)
    await server.recreateDatabase(db)
    let c = await spawnContender(`primitives-${kind}`, server.urlFor(db))
    try {
      out[kind].roundTrip = await c.call('roundTrip', plan.roundTrip)
      out[kind].getEvent = await c.call('getEvent', plan.getEvent)
    } finally {
      await c.close()
    }
    if (plan.waiting === undefined) continue
    log(`primitives: ${kind}, ${plan.waiting.count} workflows waiting in recv`)
    await server.recreateDatabase(db)
    c = await spawnContender(`primitives-${kind}`, server.urlFor(db))
    try {
      out[kind].waiting = await c.call('waiting', plan.waiting)
    } finally {
      await c.close()
    }
  }
  return out
}
