/**
 * Symbols for engine internals that tests may inspect. Not exported from the
 * package entry points: not public API.
 */

/** `engine[kLocalRuns]()`: ids of the workflows with a run in this process. */
export const kLocalRuns = Symbol('fastify-dbos.localRuns')

/**
 * `engine[kResultStats]()`: what getResult's waiting holds and has done:
 * workflows being watched, listeners on local runs, and database looks made.
 */
export const kResultStats = Symbol('fastify-dbos.resultStats')
