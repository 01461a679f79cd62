/** list()'s filter: its public type and the checks applied before it reaches SQL. */
import { InvalidListFilterError } from './errors.js'
import { STATUS_NAMES, type WorkflowStatusName } from './status.js'
import { unstorableTextReason } from './core/text.js'

export interface ListFilter {
  name?: string
  status?: WorkflowStatusName
  requestId?: string
  executorId?: string
  /** Children of this workflow (started with ctx.startChild). */
  parentId?: string
  /** Workflows enqueued on this queue. */
  queueName?: string
  /** Workflows of this app version (null: those started without appVersion). */
  appVersion?: string | null
  /** Created at or after this time. */
  createdAfter?: Date
  /** Created before this time. */
  createdBefore?: Date
  /** At most this many (1 to 10,000). Default 100. */
  limit?: number
  /** Skip this many (a non-negative integer). Default 0. */
  offset?: number
  /** By creation time; newest first by default. */
  order?: 'asc' | 'desc'
  /** Where a page starts: the nextCursor of the page before (listPage), with the same filter and order. */
  cursor?: string
}

export const DEFAULT_LIST_LIMIT = 100
export const MAX_LIST_LIMIT = 10_000

const TEXT_FIELDS = ['name', 'requestId', 'executorId', 'parentId', 'queueName', 'cursor'] as const
const DATE_FIELDS = ['createdAfter', 'createdBefore'] as const
const KNOWN = new Set<string>([...TEXT_FIELDS, ...DATE_FIELDS, 'appVersion', 'status', 'limit', 'offset', 'order'])

/**
 * Refuses a filter that would reach Postgres as something it rejects (a 500
 * with the driver's message) or that means nothing: DBOS_ERR_INVALID_LIST_FILTER
 * (400). Unknown keys are refused too, so a misspelt filter (`workflowName`)
 * is not silently ignored. Undefined values mean "any".
 */
export function checkListFilter (filter: unknown): ListFilter {
  if (filter === undefined || filter === null) return {}
  if (typeof filter !== 'object' || Array.isArray(filter)) throw new InvalidListFilterError('the filter must be an object')
  const f = filter as Record<string, unknown>
  for (const key of Object.keys(f)) {
    if (!KNOWN.has(key)) throw new InvalidListFilterError(`unknown field ${JSON.stringify(key)}`)
  }
  for (const key of TEXT_FIELDS) {
    const v = f[key]
    if (v === undefined) continue
    if (typeof v !== 'string') throw new InvalidListFilterError(`${key} must be a string`)
    const bad = unstorableTextReason(v)
    if (bad !== undefined) throw new InvalidListFilterError(`${key} ${bad}`)
  }
  if (f.appVersion !== undefined && f.appVersion !== null) {
    if (typeof f.appVersion !== 'string') throw new InvalidListFilterError('appVersion must be a string or null')
    const bad = unstorableTextReason(f.appVersion)
    if (bad !== undefined) throw new InvalidListFilterError(`appVersion ${bad}`)
  }
  if (f.status !== undefined && !STATUS_NAMES.includes(f.status as WorkflowStatusName)) {
    throw new InvalidListFilterError(`status must be one of ${STATUS_NAMES.join(', ')}`)
  }
  for (const key of DATE_FIELDS) {
    const v = f[key]
    if (v !== undefined && !(v instanceof Date && Number.isFinite(v.getTime()))) throw new InvalidListFilterError(`${key} must be a valid Date`)
  }
  if (f.limit !== undefined && !(Number.isInteger(f.limit) && (f.limit as number) >= 1 && (f.limit as number) <= MAX_LIST_LIMIT)) {
    throw new InvalidListFilterError(`limit must be an integer from 1 to ${MAX_LIST_LIMIT}`)
  }
  if (f.offset !== undefined && !(Number.isSafeInteger(f.offset) && (f.offset as number) >= 0)) {
    throw new InvalidListFilterError('offset must be a non-negative integer')
  }
  if (f.order !== undefined && f.order !== 'asc' && f.order !== 'desc') throw new InvalidListFilterError('order must be "asc" or "desc"')
  return f as ListFilter
}
