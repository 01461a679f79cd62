// A contender's child process (contender.js, forked with IPC) and the handle
// the parent drives it with: one reply per command, in order.
import { fork } from 'node:child_process'

// BENCH_CPU_PROF=dir writes a .cpuprofile per child.
const CPU_PROF = process.env.BENCH_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`] : []

/**
 * Forks contender.js for `kind` on `url`; `options` reach the contender's
 * open(). Resolves with the handle once the child is ready.
 */
export function spawnContender (kind, url, options = {}) {
  const child = fork(new URL('./contender.js', import.meta.url), [kind, url, JSON.stringify(options)], {
    execArgv: ['--expose-gc', ...CPU_PROF],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc']
  })
  const waiting = []
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => {
    for (const w of waiting.splice(0)) w.reject(new Error(`${kind} child exited (${signal ?? `code ${code}`})`))
    resolve(code)
  }))
  child.on('message', (msg) => {
    const w = waiting.shift()
    if (msg.ok) w?.resolve(msg.result)
    else w?.reject(new Error(`${kind}: ${msg.error}`))
  })
  const reply = () => new Promise((resolve, reject) => waiting.push({ resolve, reject }))
  const handle = {
    pid: child.pid,
    call (cmd, args = {}) {
      const answer = reply()
      child.send({ ...args, cmd })
      return answer
    },
    /** kill -9: no stop(), no goodbye to the database. Resolves once the process is gone. */
    async kill () {
      child.kill('SIGKILL')
      await exited
    },
    async close () {
      if (child.exitCode === null && child.signalCode === null && child.connected) await handle.call('close').catch(() => {})
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000)
      await exited
      clearTimeout(timer)
    }
  }
  return reply().then(() => handle)
}
