/**
 * Starting workflows: the id and input checks, the idempotent insert, and the
 * launch of the run in this process.
 */
import { deserialize } from '../core/codec.js'
import { prepareInput, type PreparedInput } from '../core/inputs.js'
import { checkRequestId, checkWorkflowTimeout, workflowIdFor } from '../core/start-checks.js'
import { IdempotencyConflictError } from '../errors.js'
import type { NewWorkflowRow } from '../store/rows.js'
import { FIRST_EPOCH } from '../store/workflows.js'
import type { InternalStart, StartOptions } from '../calls.js'
import type { WorkflowDefinition } from '../workflow.js'
import type { Checkpoints } from '../writes/checkpoints.js'
import { FirstSteps, Opening } from '../writes/opening.js'
import type { Launch } from './local-runs.js'
import type { Ownership } from './ownership.js'

/** For the Fastify plugin's request layer, not for users. */
export type { InternalStart, PreparedInput }
export { prepareInput }


export interface StartDeps {
  /** The executor id this process holds now. */
  executorId (): string
  appVersion: string | null
  checkpoints: Checkpoints
  ownership: Ownership
  /** Runs a workflow in this process (LocalRuns.launch). */
  launch (l: Launch): void
  running (workflowId: string): boolean
  /** Claims and runs a PENDING workflow of this executor that runs nowhere here (recovery's claimAndResume). */
  resumeOrphan (workflowId: string): void
  /** Whether a start with a generated id may be carried by its first step's checkpoint (opening.ts). */
  startWithFirstStep: boolean
}

export class Starts {
  readonly #deps: StartDeps
  readonly #firstSteps = new FirstSteps()

  constructor (deps: StartDeps) {
    this.#deps = deps
  }

  /**
   * Starts a workflow and resolves with its id once it is durably recorded.
   * With a workflowId that already exists, resolves with it if it has the
   * same definition and input, and refuses with 422 otherwise.
   */
  async start (def: WorkflowDefinition<any, any>, input: unknown, options: StartOptions, internal: InternalStart): Promise<string> {
    const deps = this.#deps
    const workflowId = workflowIdFor(options.workflowId, internal.derivedId === true)
    const requestId = checkRequestId(options.requestId)
    const { text, hash } = internal.prepared ?? prepareInput(def, input)
    const timeoutMs = checkWorkflowTimeout(options.timeoutMs ?? def.options.timeoutMs)
    const parentId = internal.parentId ?? null
    const row: NewWorkflowRow = {
      workflowId, name: def.name, input: text, inputHash: hash, requestId, executorId: deps.executorId(), appVersion: deps.appVersion, parentId, timeoutMs
    }
    // Not with a timeout or a parent: their run needs the deadline the insert computes.
    if (options.workflowId === undefined && timeoutMs === null && parentId === null && deps.startWithFirstStep && deps.checkpoints.quiet && this.#firstSteps.worthWaiting(def.name)) {
      // A generated id, and nothing else being written: run at once, and let
      // the first step's checkpoint carry the start (see opening.ts).
      const opening = new Opening(deps.checkpoints, row, this.#firstSteps)
      deps.launch({ def, workflowId, epoch: FIRST_EPOCH, input: deserialize(text), requestId, writes: opening })
      await opening.durable
      internal.report?.({ inserted: true })
      return workflowId
    }
    const release = deps.ownership.starting(workflowId)
    try {
      const started = await deps.checkpoints.start(row)
      internal.report?.({ inserted: started.inserted })
      if (started.inserted) {
        // The body gets the stored form of its input, exactly as a recovery would.
        deps.launch({ def, workflowId, epoch: started.epoch, input: deserialize(text), requestId, deadline: started.deadline })
      } else if (started.name !== def.name || started.inputHash !== hash) {
        throw new IdempotencyConflictError()
      } else if (started.pendingOwner === deps.executorId() && !deps.running(workflowId) && deps.ownership.starts(workflowId) === 1) {
        // Ours, PENDING, and running nowhere in this process: an earlier start
        // whose answer was lost (it committed, but the caller saw a 503), or a
        // run left by a failure. The caller retried with the same id, so run
        // it now rather than at the next restart.
        deps.resumeOrphan(workflowId)
      }
    } finally {
      release()
    }
    return workflowId
  }
}

