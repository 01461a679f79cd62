/** Reading workflows: status, lists and steps, as users see them. */
import { deserialize } from '../core/codec.js'
import { unstorableTextReason } from '../core/text.js'
import { DatabaseUnavailableError, InvalidListFilterError, InvalidWorkflowIdError, WorkflowNotFoundError } from '../errors.js'
import { checkListFilter, DEFAULT_LIST_LIMIT, type ListFilter } from '../list-filter.js'
import type { StepInfo, WorkflowPage, WorkflowStatus, WorkflowStatusName } from '../status.js'
import { CONNECT_TIMEOUT_S, type Sql, type Tables } from '../store/connect.js'
import { isConnectionError } from '../store/pg-errors.js'
import type { StepRow, WorkflowRow } from '../store/rows.js'
import { listSteps } from '../store/steps.js'
import { getWorkflow, listWorkflows, type ListCursor } from '../store/workflows.js'

/** How long a read waits for an answer before it is 503. */
const READ_TIMEOUT_MS = CONNECT_TIMEOUT_S * 1000

export interface QueryDeps {
  sql: Sql
  tables: Tables
  /**
   * For a workflow running here whose start is not written yet (opening.ts):
   * writes it first, so that this process sees its own workflow. Never rejects.
   */
  ensureStarted (workflowId: string): Promise<void> | undefined
}

export class Queries {
  readonly #deps: QueryDeps

  constructor (deps: QueryDeps) {
    this.#deps = deps
  }

  /** Throws DBOS_ERR_WORKFLOW_NOT_FOUND (404) for an unknown id. */
  async getStatus (workflowId: string): Promise<WorkflowStatus> {
    checkReadId(workflowId)
    const { sql, tables } = this.#deps
    await this.#deps.ensureStarted(workflowId)
    const row = await read(() => getWorkflow(sql, tables, workflowId))
    if (row === undefined) throw new WorkflowNotFoundError(workflowId)
    return toStatus(row)
  }

  /** Throws DBOS_ERR_INVALID_LIST_FILTER (400) for a bad filter, before any query. */
  async list (filter: ListFilter = {}): Promise<WorkflowStatus[]> {
    return (await this.listPage(filter)).workflows
  }

  /**
   * A page of workflows and where the next one starts (`nextCursor`, null on
   * the last page): pass it back as `cursor` with the same filter.
   */
  async listPage (filter: ListFilter = {}): Promise<WorkflowPage> {
    const checked = checkListFilter(filter)
    const after = checked.cursor === undefined ? undefined : decodeCursor(checked.cursor)
    const { sql, tables } = this.#deps
    const rows = await read(() => listWorkflows(sql, tables, checked, after))
    const limit = checked.limit ?? DEFAULT_LIST_LIMIT
    const last = rows.at(-1)
    const nextCursor = rows.length < limit || last === undefined ? null : encodeCursor({ createdAt: last.cursor_at, workflowId: last.workflow_id })
    return { workflows: rows.map(toStatus), nextCursor }
  }

  /** Recorded steps in call order; 404 for an unknown workflow. */
  async listSteps (workflowId: string): Promise<StepInfo[]> {
    checkReadId(workflowId)
    const { sql, tables } = this.#deps
    await this.#deps.ensureStarted(workflowId)
    const rows = await read(() => listSteps(sql, tables, workflowId))
    if (rows.length === 0) await this.getStatus(workflowId)
    return rows.map(toStepInfo)
  }
}

/**
 * Reads answer 503 while the database is unreachable, and also when it does
 * not answer within the connect timeout: a query sent on a connection whose
 * server vanished (a cut network) would otherwise wait for TCP to notice.
 * A read abandoned that way changes nothing; its late answer is dropped.
 * A read that failed on a dead connection (the server restarted since it
 * was last used) is tried once more, on a fresh one, before it is a 503.
 */
async function read<T> (query: () => Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new DatabaseUnavailableError()), READ_TIMEOUT_MS)
  })
  const once = (): Promise<T> => Promise.race([query(), timeout])
  try {
    return await once().catch((err: unknown) => {
      if (isConnectionError(err)) return once()
      throw err
    })
  } catch (err) {
    if (isConnectionError(err)) throw new DatabaseUnavailableError({ cause: err })
    throw err
  } finally {
    clearTimeout(timer)
  }
}

/**
 * A looked-up id that no workflow can have, because Postgres could not store
 * it: 400 rather than the driver's 500 (a NUL) or a miss (a lone surrogate).
 */
export function checkReadId (workflowId: unknown): void {
  if (typeof workflowId !== 'string') throw new InvalidWorkflowIdError('must be a string')
  const bad = unstorableTextReason(workflowId)
  if (bad !== undefined) throw new InvalidWorkflowIdError(bad)
}

function encodeCursor (c: ListCursor): string {
  return Buffer.from(JSON.stringify([c.createdAt, c.workflowId])).toString('base64url')
}

function decodeCursor (cursor: string): ListCursor {
  try {
    const [createdAt, workflowId] = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown[]
    if (typeof createdAt === 'string' && typeof workflowId === 'string' && !Number.isNaN(Date.parse(createdAt))) return { createdAt, workflowId }
  } catch {}
  throw new InvalidListFilterError('cursor is not one a list returned')
}

export function toStatus (row: WorkflowRow): WorkflowStatus {
  const status: WorkflowStatus = {
    workflowId: row.workflow_id,
    name: row.name,
    status: row.status as WorkflowStatusName,
    input: deserialize(row.input),
    requestId: row.request_id,
    executorId: row.executor_id,
    appVersion: row.app_version,
    attempts: row.attempts,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    completedAt: row.completed_at,
    wakeAt: row.wake_at,
    parentId: row.parent_id,
    deadlineAt: row.deadline_at,
    queueName: row.queue_name
  }
  if (row.output !== null) status.output = deserialize(row.output)
  if (row.error !== null) status.error = deserialize(row.error) as Error
  return status
}

export function toStepInfo (row: StepRow): StepInfo {
  const step: StepInfo = { stepId: row.step_id, name: row.name, startedAt: row.started_at, completedAt: row.created_at, createdAt: row.created_at }
  if (row.error !== null) step.error = deserialize(row.error) as Error
  else if (row.output !== null) step.output = deserialize(row.output)
  if (row.name === 'startChild' && typeof step.output === 'string') step.childWorkflowId = step.output
  return step
}
