/** Turns what went wrong while starting the embedded Postgres into its documented error. */
import { EmbeddedPostgresError, type EmbeddedPostgresReason } from '../errors.js'

/** `reason`, unless the cause is a full disk, which is its own reason whatever step hit it. */
export function failure (reason: EmbeddedPostgresReason, why: string, cause?: unknown): EmbeddedPostgresError {
  if ((cause as NodeJS.ErrnoException | undefined)?.code === 'ENOSPC') {
    return new EmbeddedPostgresError('disk-full', `${why}: the disk is full; free some space`, { cause })
  }
  return new EmbeddedPostgresError(reason, why, { cause })
}

/**
 * A server's or initdb's output says it ran out of disk. Their output is all
 * there is to go by (no exit status tells it); it is English because they run
 * with LC_ALL=C and the clusters made here have lc_messages = 'C'.
 */
export const saysDiskFull = (output: string): boolean => output.includes('No space left on device')

/** spawn() itself failed: the binary is missing or cannot be executed (by the postgres user, as root). */
export function cannotExecute (file: string, err: NodeJS.ErrnoException, asPostgresUser: boolean): EmbeddedPostgresError {
  const by = asPostgresUser ? ' as the postgres user' : ''
  return failure('binaries', `cannot execute ${file}${by} (${err.code ?? err.message}): it and every directory above it must be ` +
    `executable${asPostgresUser ? ' by other users' : ''}, on a file system not mounted noexec; reinstall, or move the app`, err)
}
