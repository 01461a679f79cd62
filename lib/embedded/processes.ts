/** Whether a process is alive, and which process a pid names. */
import { readFileSync } from 'node:fs'

export function isAlive (pid: number): boolean {
  try {
    process.kill(pid, 0)
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
  // A process killed with -9 whose parent has not reaped it yet (a zombie)
  // still answers signal 0, yet holds nothing: a restart right after the kill
  // must not find it "in use".
  return !['Z', 'X'].includes(processState(pid))
}

/** The state letter Linux reports for a process (R, S, Z...), or '' where unknown. */
function processState (pid: number): string {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3)
  } catch {
    return ''
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
