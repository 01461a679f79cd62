/**
 * ctx.transaction's database side: postgres.js's sql.begin, guarded against
 * what happens when the connection dies mid-transaction.
 *
 * When the socket closes, postgres.js (3.4.x) rejects begin() at once, but the
 * transaction's scope carries on: once our function settles it sends COMMIT or
 * ROLLBACK on the dead connection, which throws from a timer and crashes the
 * process (porsager/postgres#1154), and a query the user's code issues later
 * may run on the pool's reconnected socket, outside any transaction. So after
 * a loss, queries through the transaction handle fail without reaching the
 * driver, and our function never settles, so the driver never reaches its
 * COMMIT/ROLLBACK. The caller sees the connection error and retries.
 */
import type { IsolationLevel } from '../context.js'
import type { Sql, TransactionSql } from './connect.js'
import { isDatabaseConnectionError } from './pg-errors.js'


const BEGIN: Record<IsolationLevel | 'default', string> = {
  default: 'read write',
  'read committed': 'isolation level read committed',
  'repeatable read': 'isolation level repeatable read',
  serializable: 'isolation level serializable'
}

export async function inTransaction<T> (sql: Sql, isolation: IsolationLevel | undefined, fn: (tx: TransactionSql) => Promise<T>): Promise<T> {
  let lost = false
  let ended = false
  try {
    return await sql.begin(BEGIN[isolation ?? 'default'], (tx) => new Promise<T>((resolve, reject) => {
      const settle = (apply: () => void): void => {
        // One turn later, the begin() rejection that accompanies a lost
        // connection has been seen; a settled scope would then touch the socket.
        setImmediate(() => {
          if (!lost) return apply()
          // An error that looked like a lost connection, yet begin() has not
          // failed: the socket is alive after all, so let the scope roll back.
          setTimeout(() => { if (!ended) apply() }, LOST_CONNECTION_GRACE_MS).unref()
        })
      }
      fn(guard(tx, () => lost)).then((value) => settle(() => resolve(value)), (err) => {
        if (isSocketGone(err)) lost = true
        settle(() => reject(err))
      })
    })) as T
  } catch (err) {
    if (isSocketGone(err)) lost = true
    throw err
  } finally {
    ended = true
  }
}

const LOST_CONNECTION_GRACE_MS = 5000

/** Errors after which postgres.js closes the connection (not, say, 53300 or 58030). */
function isSocketGone (err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code
  return isDatabaseConnectionError(err) && typeof code === 'string' && !['53300', '58030', '57P03'].includes(code)
}

/** The transaction handle, failing fast once the connection is lost. */
function guard (tx: TransactionSql, isLost: () => boolean): TransactionSql {
  const wrap = <F extends (...args: any[]) => unknown>(f: F, self: unknown) =>
    (...args: Parameters<F>) => isLost() ? deadQuery() : f.apply(self, args)
  return new Proxy(tx, {
    apply: (target, self, args) => isLost() ? deadQuery() : Reflect.apply(target, self, args),
    get: (target, prop, receiver) => {
      const value = Reflect.get(target, prop, receiver)
      return (prop === 'unsafe' || prop === 'file' || prop === 'savepoint') && typeof value === 'function'
        ? wrap(value, target)
        : value
    }
  })
}

/** Rejects when awaited (a lazy thenable, so an unused one is no unhandled rejection). */
function deadQuery (): PromiseLike<never> & { catch: Promise<never>['catch'], finally: Promise<never>['finally'] } {
  const fail = (): Promise<never> => Promise.reject(Object.assign(new Error('the transaction\'s database connection was lost'), { code: 'CONNECTION_CLOSED' }))
  return {
    then: (onFulfilled, onRejected) => fail().then(onFulfilled, onRejected),
    catch: (onRejected) => fail().catch(onRejected),
    finally: (onFinally) => fail().finally(onFinally)
  }
}
