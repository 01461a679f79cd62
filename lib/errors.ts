/**
 * Every error the library throws. Each has a stable string `code` (public API:
 * codes are added, never renamed) and the HTTP `statusCode` a route should answer
 * with, so Fastify's default error handler turns them into the right response.
 */

export class DBOSError extends Error {
  readonly code: string
  readonly statusCode: number

  constructor (code: string, statusCode: number, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.code = code
    this.statusCode = statusCode
  }

  override get name (): string {
    return 'DBOSError'
  }
}

type ErrorClass<A extends unknown[]> = {
  new (...args: [...A, ({ cause?: unknown })?]): DBOSError
  readonly code: string
  readonly statusCode: number
}

/** Builds a subclass with a fixed code and status; `format` turns arguments into the message. */
function define<A extends unknown[]> (code: string, statusCode: number, format: (...args: A) => string): ErrorClass<A> {
  const Cls = class extends DBOSError {
    static readonly code = code
    static readonly statusCode = statusCode
    constructor (...args: [...A, ({ cause?: unknown })?]) {
      const argc = format.length
      const options = args.length > argc ? args[argc] as { cause?: unknown } : undefined
      super(code, statusCode, format(...(args.slice(0, argc) as A)), options)
    }
  }
  Object.defineProperty(Cls, 'name', { value: code })
  return Cls as unknown as ErrorClass<A>
}

export const InvalidIdempotencyKeyError = define('DBOS_ERR_INVALID_IDEMPOTENCY_KEY', 400,
  // Not a default parameter: define() counts the format's parameters (Function.length stops at one).
  (why: string, header?: string) => `Invalid ${header ?? 'dbos-idempotency-key'} header: ${why}`)

export const InvalidRequestIdError = define('DBOS_ERR_INVALID_REQUEST_ID', 400,
  (why: string) => `Invalid dbos-request-id header: ${why}`)

export const InvalidWorkflowIdError = define('DBOS_ERR_INVALID_WORKFLOW_ID', 400,
  (why: string) => `Invalid workflow id: ${why}`)

export const UnserializableValueError = define('DBOS_ERR_UNSERIALIZABLE_VALUE', 400,
  (what: string, why: string) => `Cannot store ${what}: ${why}`)

/** A step result or workflow output that cannot be stored: a bug in the workflow code, not the client's. */
export const UnserializableResultError = define('DBOS_ERR_UNSERIALIZABLE_RESULT', 500,
  (what: string, why: string) => `Cannot store ${what}: ${why.replace(/^Cannot store .*?: /, '')}`)

export const WorkflowNotFoundError = define('DBOS_ERR_WORKFLOW_NOT_FOUND', 404,
  (workflowId: string) => `Workflow ${JSON.stringify(workflowId)} not found`)

export const UnknownWorkflowError = define('DBOS_ERR_UNKNOWN_WORKFLOW', 500,
  (name: string) => `Workflow ${JSON.stringify(name)} is not registered with this engine: pass its definition in the \`workflows\` option`)

export const DuplicateWorkflowNameError = define('DBOS_ERR_DUPLICATE_WORKFLOW_NAME', 500,
  (name: string) => `Two different workflow definitions share the name ${JSON.stringify(name)}`)

/** A generated id found taken when its workflow was written: never expected (ids carry 126 random bits). */
export const GeneratedIdTakenError = define('DBOS_ERR_GENERATED_ID_TAKEN', 500,
  (workflowId: string) => `The generated workflow id ${workflowId} is already taken; nothing was started, try again`)

/** Deliberately says nothing about the stored workflow: the key's owner may be someone else. */
export const IdempotencyConflictError = define('DBOS_ERR_IDEMPOTENCY_KEY_REUSED', 422,
  () => 'This idempotency key or workflow id was already used for a different workflow or input')

export const NondeterminismError = define('DBOS_ERR_NONDETERMINISM', 500,
  (workflowId: string, stepId: number, expected: string, got: string) =>
    `Workflow ${workflowId} replayed step #${stepId} as ${JSON.stringify(got)}, but the recorded step is ${JSON.stringify(expected)}: workflow code must call steps in the same order on every run`)

export const ResultTimeoutError = define('DBOS_ERR_RESULT_TIMEOUT', 504,
  (workflowId: string, timeoutMs: number) => `Workflow ${workflowId} did not finish within ${timeoutMs} ms`)

/** getResult({ timeoutMs }) and other waits: a timeout that is not a non-negative number of milliseconds. */
export const InvalidTimeoutError = define('DBOS_ERR_INVALID_TIMEOUT', 400,
  (got: string) => `A timeout must be a non-negative number of milliseconds (or Infinity), got ${got}`)

export const ShuttingDownError = define('DBOS_ERR_SHUTTING_DOWN', 503,
  () => 'The workflow engine is shutting down and accepts no new workflows')

export const NotReadyError = define('DBOS_ERR_NOT_READY', 503,
  () => 'The workflow engine has not started yet: wait for app.ready()')

export const DatabaseUnavailableError = define('DBOS_ERR_DATABASE_UNAVAILABLE', 503,
  () => 'The workflow database is unavailable; try again shortly')

export const MaxRecoveryAttemptsError = define('DBOS_ERR_MAX_RECOVERY_ATTEMPTS', 500,
  (workflowId: string, attempts: number) =>
    `Workflow ${workflowId} was abandoned after ${attempts} recovery attempts (it may be crashing its process)`)

/** cancel(): the workflow (or an ancestor) was cancelled; getResult and its runs see this. */
export const WorkflowCancelledError = define('DBOS_ERR_WORKFLOW_CANCELLED', 409,
  (workflowId: string) => `Workflow ${workflowId} was cancelled`)

export const WorkflowFencedError = define('DBOS_ERR_WORKFLOW_FENCED', 409,
  (workflowId: string) => `This process no longer owns workflow ${workflowId}; another executor took it over`)

/** A WorkflowClient call after its close(): a bug in the caller, not an outage. */
export const ClientClosedError = define('DBOS_ERR_CLIENT_CLOSED', 500,
  () => 'This WorkflowClient was closed; make a new one')

export const EngineStoppedError = define('DBOS_ERR_ENGINE_STOPPED', 503,
  (workflowId: string) => `The engine stopped while workflow ${workflowId} was running; it stays PENDING and resumes on the next start`)

/** A workflow called ctx.sleep with a duration that is not a number of milliseconds from 0 to 1e14: a bug in the workflow code. */
export const InvalidSleepDurationError = define('DBOS_ERR_INVALID_SLEEP_DURATION', 500,
  (got: string) => `ctx.sleep(ms) needs a number of milliseconds from 0 to 1e14, got ${got}`)

/**
 * Thrown by ctx.sleep once a long sleep is recorded: it unwinds the workflow
 * function, whose run ends here without an outcome; the workflow stays PENDING
 * and is resumed by replay at its wake-up time. Workflow code should let it
 * through; if it catches it anyway, every later ctx call throws it again and
 * whatever the function returns is ignored.
 */
export const WorkflowSuspendedError = define('DBOS_ERR_WORKFLOW_SUSPENDED', 503,
  (workflowId: string, wakeAt: string) => `Workflow ${workflowId} sleeps until ${wakeAt}; this run ends and the workflow resumes then`)

/** ctx.step, ctx.transaction: a name that is not a string Postgres can store as it is. A bug in the workflow code. */
export const InvalidStepNameError = define('DBOS_ERR_INVALID_STEP_NAME', 500,
  (why: string) => `Invalid step name: ${why}`)

/** list(): a filter value of the wrong type or out of range. */
export const InvalidListFilterError = define('DBOS_ERR_INVALID_LIST_FILTER', 400,
  (why: string) => `Invalid workflow list filter: ${why}`)

/** engine.start() / app.ready(): the executor id you chose is held by a live process. */
export const ExecutorIdInUseError = define('DBOS_ERR_EXECUTOR_ID_IN_USE', 500,
  (executorId: string) => `Executor id ${JSON.stringify(executorId)} is held by another live process (its heartbeat is fresh): give each instance its own executorId (or DBOS_EXECUTOR_ID), or leave it unset to get a fresh one`)

/** setAppVersion: there is no PENDING workflow with this id. */
export const WorkflowNotPendingError = define('DBOS_ERR_WORKFLOW_NOT_PENDING', 409,
  (workflowId: string) => `Workflow ${JSON.stringify(workflowId)} is not PENDING (it finished, or there is no such workflow)`)

/** A workflow passed its deadline (StartOptions.timeoutMs, or its parent's): it was cancelled, its children too. */
export const WorkflowTimeoutError = define('DBOS_ERR_WORKFLOW_TIMEOUT', 504,
  (workflowId: string) => `Workflow ${workflowId} did not finish before its timeout and was cancelled`)

/** ctx.step with timeoutMs: the step's function did not settle in time (its signal was aborted). */
export const StepTimeoutError = define('DBOS_ERR_STEP_TIMEOUT', 504,
  (name: string, timeoutMs: number) => `Step ${JSON.stringify(name)} did not finish within ${timeoutMs} ms`)

/** send() to a workflow that has finished: nothing will ever receive it. */
export const WorkflowFinishedError = define('DBOS_ERR_WORKFLOW_FINISHED', 409,
  (workflowId: string) => `Workflow ${workflowId} has finished; it cannot receive messages`)

/** resume() of a workflow that succeeded: there is nothing to continue. */
export const WorkflowNotResumableError = define('DBOS_ERR_WORKFLOW_NOT_RESUMABLE', 409,
  (workflowId: string) => `Workflow ${workflowId} succeeded; only a CANCELLED, ERROR or MAX_RECOVERY_ATTEMPTS_EXCEEDED workflow can be resumed`)

/** fork() from a step after the source's last recorded step + 1. */
export const InvalidForkStepError = define('DBOS_ERR_INVALID_FORK_STEP', 400,
  (fromStep: string, limit: number) => `Cannot fork from step ${fromStep}: it must be an integer from 0 to ${limit} (one past the last recorded step)`)

/** An argument of a call from outside workflows (send, getEvent, readStream, fork, ...) is not usable. */
export const InvalidArgumentError = define('DBOS_ERR_INVALID_ARGUMENT', 400,
  (why: string) => `Invalid argument: ${why}`)

/** A ctx call with an argument that cannot work (a bad topic, key or timeout): a bug in the workflow code. */
export const InvalidCallError = define('DBOS_ERR_INVALID_CALL', 500,
  (why: string) => `Invalid workflow call: ${why}`)

/** ctx.writeStream after ctx.closeStream of the same key. */
export const StreamClosedError = define('DBOS_ERR_STREAM_CLOSED', 500,
  (key: string) => `Stream ${JSON.stringify(key)} was closed; nothing more can be written to it`)

/** enqueue(): another workflow with this deduplicationId is ENQUEUED or PENDING in the queue. */
export const QueueDeduplicatedError = define('DBOS_ERR_QUEUE_DEDUPLICATED', 409,
  (queue: string, deduplicationId: string) => `A workflow with deduplication id ${JSON.stringify(deduplicationId)} is already queued or running in queue ${JSON.stringify(queue)}`)

/** enqueue() on a queue this engine does not have: pass its definition in the `queues` option. */
/** app.workflows.schedules.pause/resume of a name no schedule has (in the schedules table). */
export const ScheduleNotFoundError = define('DBOS_ERR_SCHEDULE_NOT_FOUND', 404,
  (name: string) => `Schedule ${JSON.stringify(name)} not found: no instance on this database has registered it`)

export const UnknownQueueError = define('DBOS_ERR_UNKNOWN_QUEUE', 500,
  (name: string) => `Queue ${JSON.stringify(name)} is not registered with this engine: pass its definition in the \`queues\` option`)

/** A durable route with whileRunning 'conflict': a retry came while the first request is still being handled. */
export const RequestInProgressError = define('DBOS_ERR_REQUEST_IN_PROGRESS', 409,
  (workflowId: string) => `The request with this idempotency key is still being handled (workflow ${workflowId}); retry later`)

/**
 * A durable route's handler used what a stored request or response cannot
 * have (reply.hijack(), a stream body, req.raw): a bug in the route, not the client's.
 */
export const DurableRouteUnsupportedError = define('DBOS_ERR_DURABLE_ROUTE_UNSUPPORTED', 500,
  (what: string) => `${what} is not available in a durable route: its handler runs as a workflow (on recovery, without the request) and what it sends is stored; send a value (an object, text or bytes)`)

export const InvalidOptionError = define('DBOS_ERR_INVALID_OPTION', 500,
  (why: string) => `Invalid fastify-dbos option: ${why}`)

export const MigrationError = define('DBOS_ERR_MIGRATION_FAILED', 500,
  (name: string) => `Migration ${name} failed`)

/**
 * Which part of starting the embedded Postgres failed (see docs/Reference/errors.md):
 * `binaries` (missing, not executable, or could not be copied where the postgres user can run them),
 * `postgres-user` (running as root, no `postgres` user and none could be created),
 * `data-dir` (the data directory cannot be created or reached), `in-use` (another live
 * process owns the data directory), `port` (no free port could be bound), `disk-full`,
 * `initdb` (initdb refused), `start` (the server exited or did not become ready).
 */
export type EmbeddedPostgresReason =
  'binaries' | 'postgres-user' | 'data-dir' | 'in-use' | 'port' | 'disk-full' | 'initdb' | 'start'

const EmbeddedPostgresFailure = define('DBOS_ERR_EMBEDDED_POSTGRES', 500,
  (reason: EmbeddedPostgresReason, why: string) =>
    `Embedded Postgres could not start (${reason}): ${why}. Or set DATABASE_URL to use your own Postgres instead.`)

/** The embedded Postgres could not start; `reason` tells the failures apart, the message says what to do. */
export class EmbeddedPostgresError extends EmbeddedPostgresFailure {
  readonly reason: EmbeddedPostgresReason

  constructor (reason: EmbeddedPostgresReason, why: string, options?: { cause?: unknown }) {
    super(reason, why, options)
    this.reason = reason
  }
}
Object.defineProperty(EmbeddedPostgresError, 'name', { value: EmbeddedPostgresError.code })
