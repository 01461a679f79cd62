// Small helpers shared by the primitives and queue contenders.
import { performance } from 'node:perf_hooks'
import { queryCounts } from './query-count.js'

/** Milliseconds on a clock that all processes on this machine share (for latencies between processes). */
export const wallMs = () => performance.timeOrigin + performance.now()

/** p50, p99 and mean of samples in ms. */
export function summary (samples) {
  const s = [...samples].sort((a, b) => a - b)
  const q = (p) => s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))]
  return { n: s.length, p50: q(0.5), p90: q(0.9), p99: q(0.99), max: s[s.length - 1], over100ms: s.filter((x) => x > 100).length, mean: s.reduce((a, b) => a + b, 0) / Math.max(1, s.length) }
}

/** Driver-counted statements and Node CPU since a mark. */
export function mark () {
  const q = queryCounts()
  return { cpu: process.cpuUsage(), queries: q.total, byText: q.byText }
}

/** Since mark `m`, per `ops` operations: statements (with the most frequent by text) and Node CPU. */
export function since (m, ops) {
  const cpu = process.cpuUsage(m.cpu)
  const q = queryCounts()
  const top = Object.entries(q.byText).map(([query, n]) => ({ query, calls: n - (m.byText[query] ?? 0) }))
    .filter((r) => r.calls > 0).sort((a, b) => b.calls - a.calls).slice(0, 8)
  return {
    driverStatements: q.total - m.queries,
    driverStatementsPerOp: (q.total - m.queries) / Math.max(1, ops),
    nodeCpuUsPerOp: (cpu.user + cpu.system) / Math.max(1, ops),
    top
  }
}

/** Heap used after a full GC (the child runs with --expose-gc). */
export function heap () {
  globalThis.gc()
  return process.memoryUsage().heapUsed
}

/** Runs fn(i) for i in [0, count) with at most `concurrency` calls in flight. */
export async function pool (count, concurrency, fn) {
  let next = 0
  const worker = async () => {
    while (next < count) await fn(next++)
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker))
}

/** Polls `probe()` (a count) every `everyMs` until it reaches `target`; throws after `timeoutMs`. */
export async function until (probe, target, { everyMs = 20, timeoutMs = 300_000, what = 'workflows' } = {}) {
  const t0 = performance.now()
  for (;;) {
    const n = await probe()
    if (n >= target) return
    if (performance.now() - t0 > timeoutMs) throw new Error(`only ${n} of ${target} ${what} after ${timeoutMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, everyMs))
  }
}
