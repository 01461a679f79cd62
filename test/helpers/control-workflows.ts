/**
 * Workflows and helpers shared by test/timeouts.test.ts and
 * test/cancel-resume-fork.test.ts: gates a step waits on (ignoring its
 * signal, as much user code does), counters of side effects per workflow id
 * to tell a replay from a rerun, and a few workflows both files use.
 */
import { defineWorkflow } from '../../lib/index.js'
import { Counter, gate, type Gate } from './workflows.js'

export const counter = new Counter()
const gates = new Map<string, Gate>()

/** The gate of `key` (a workflow id), made on first use. */
export function gateOf (key: string): Gate {
  let g = gates.get(key)
  if (g === undefined) gates.set(key, g = gate())
  return g
}

/** Opens every gate (at teardown, so that no step is left waiting). */
export function openAllGates (): void {
  for (const g of gates.values()) g.open()
}

export async function rejection (p: Promise<unknown>): Promise<{ code?: string, statusCode?: number }> {
  try {
    await p
  } catch (err) {
    return err as { code?: string, statusCode?: number }
  }
  throw new Error('expected a rejection')
}

export function untilAborted (signal: AbortSignal): Promise<unknown> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve(signal.reason)
    signal.addEventListener('abort', () => resolve(signal.reason), { once: true })
  })
}

/** Step one, then step two waits on a gate (ignoring its signal), then step three. */
export const threeSteps = defineWorkflow('threeSteps', async (ctx) => {
  const id = ctx.workflowId
  const a = await ctx.step('one', () => { counter.hit(`${id}:one`); return 1 })
  const b = await ctx.step('two', async () => {
    const n = counter.hit(`${id}:two`)
    if (n === 1) await gateOf(id).wait()
    return 2
  })
  const c = await ctx.step('three', () => { counter.hit(`${id}:three`); return 3 })
  return a + b + c
})

/** A step that waits for its signal: what it was aborted with. */
export const abortable = defineWorkflow('abortable', async (ctx) => {
  await ctx.step('wait', async (signal) => {
    const reason = await untilAborted(signal)
    counter.hit(`${ctx.workflowId}:aborted:${(reason as { code?: string }).code}`)
  })
  counter.hit(`${ctx.workflowId}:after`)
  return 'finished'
})

export const waitsForever = defineWorkflow('waitsForever', async (ctx) => ctx.recv('never'))

export const parent = defineWorkflow('timedParent', async (ctx) => {
  await ctx.startChild(waitsForever, undefined)
  return ctx.recv('never')
})
