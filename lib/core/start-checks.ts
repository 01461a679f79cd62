/**
 * The checks a start and an enqueue share, so that one bad value gets one
 * code whichever way the workflow was started: its id (given, or generated
 * here), the request id it is tagged with, and its timeout.
 */
import { nanoid } from 'nanoid'
import { InvalidRequestIdError, InvalidTimeoutError, InvalidWorkflowIdError } from '../errors.js'
import { invalidIdReason, MAX_DERIVED_ID_LENGTH, MAX_ID_LENGTH } from './ids.js'
import { unstorableTextReason } from './text.js'
import { MAX_DURATION_MS } from './timers.js'

export const MAX_TIMEOUT_MS = MAX_DURATION_MS

/** The workflow's id: `given`, checked (a derived one may be longer), or a fresh one. */
export function workflowIdFor (given: string | undefined, derived: boolean): string {
  if (given === undefined) return nanoid()
  const bad = invalidIdReason(given, derived ? MAX_DERIVED_ID_LENGTH : MAX_ID_LENGTH) ?? unstorableTextReason(given)
  if (bad !== undefined) throw new InvalidWorkflowIdError(bad)
  return given
}

/** The request id to record, or null; DBOS_ERR_INVALID_REQUEST_ID for one that cannot be. */
export function checkRequestId (requestId: string | null | undefined): string | null {
  if (requestId === undefined || requestId === null) return null
  const bad = invalidIdReason(requestId) ?? unstorableTextReason(requestId)
  if (bad !== undefined) throw new InvalidRequestIdError(bad)
  return requestId
}

/** A workflow timeout: null for none, else a positive number of milliseconds (DBOS_ERR_INVALID_TIMEOUT otherwise). */
export function checkWorkflowTimeout (timeoutMs: unknown): number | null {
  if (timeoutMs === undefined || timeoutMs === null || timeoutMs === Infinity) return null
  if (typeof timeoutMs !== 'number' || !(timeoutMs > 0) || timeoutMs > MAX_TIMEOUT_MS) throw new InvalidTimeoutError(String(timeoutMs))
  return timeoutMs
}
