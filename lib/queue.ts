/**
 * Queue definitions: workflows enqueued on a queue wait (status ENQUEUED)
 * until an instance takes them, within the queue's limits, which hold across
 * every instance on the database. See docs/Guides/queues.md.
 */
import { InvalidOptionError } from './errors.js'
import { unstorableTextReason } from './core/text.js'

export interface QueueOptions {
  /** At most this many of the queue's workflows run at once, across all instances (per partition key when partitioned). */
  concurrency?: number
  /** At most this many run at once on each instance. */
  workerConcurrency?: number
  /** At most `limit` start per `periodMs`, across all instances (per partition key when partitioned). */
  rateLimit?: { limit: number, periodMs: number }
  /** concurrency and rateLimit hold per enqueue's partitionKey ("at most 2 running per customer"). */
  partitioned?: boolean
}

export interface QueueDefinition {
  readonly name: string
  readonly options: Readonly<QueueOptions>
}

/**
 * Defines a queue. Pass it to the plugin (`queues: [...]`): instances that
 * have it take its work.
 *
 * @example
 * const emails = defineQueue('emails', { concurrency: 10, rateLimit: { limit: 50, periodMs: 60_000 } })
 */
export function defineQueue (name: string, options: QueueOptions = {}): QueueDefinition {
  if (typeof name !== 'string' || name.length === 0 || name.length > 256 || unstorableTextReason(name) !== undefined) {
    throw new InvalidOptionError('defineQueue: name must be a non-empty string of at most 256 characters')
  }
  const positive = (v: unknown): boolean => Number.isSafeInteger(v) && (v as number) >= 1
  if (options.concurrency !== undefined && !positive(options.concurrency)) throw new InvalidOptionError(`queue ${name}: concurrency must be a positive integer`)
  if (options.workerConcurrency !== undefined && !positive(options.workerConcurrency)) throw new InvalidOptionError(`queue ${name}: workerConcurrency must be a positive integer`)
  if (options.rateLimit !== undefined && !(positive(options.rateLimit.limit) && positive(options.rateLimit.periodMs))) {
    throw new InvalidOptionError(`queue ${name}: rateLimit needs a positive integer limit and periodMs`)
  }
  if (options.partitioned !== undefined && typeof options.partitioned !== 'boolean') throw new InvalidOptionError(`queue ${name}: partitioned must be a boolean`)
  return Object.freeze({ name, options: Object.freeze({ ...options, rateLimit: options.rateLimit === undefined ? undefined : { ...options.rateLimit } }) })
}
