/** Whether a process is alive, and which process a pid names. */
import { readFileSync } from 'node:fs'

export function isAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/**
 * When the process started (Linux: clock ticks since boot, from /proc), or ''
 * where that is unknown. A pid and its start time name one process: after a
 * reboot or a container restart the pid is often the same (1, say), the start
 * time is not.
 */
export function startTime (pid: number): string {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? ''
  } catch {
    return ''
  }
}

/** `pid` is alive and, where start times are known, is still the process that started at `started`. */
export function isSameProcess (pid: number, started: string): boolean {
  return isAlive(pid) && (started === '' || startTime(pid) === '' || startTime(pid) === started)
}
