/**
 * Workflow definitions. A definition is a name plus an async function of
 * (ctx, input); the engine finds a workflow's code by name when it recovers it,
 * so every definition an app can run must be registered with its engine.
 */
import type { WorkflowContext } from './context.js'
import { unstorableTextReason } from './core/text.js'

export interface WorkflowOptions {
  /**
   * How many times a crashed workflow is resumed before it is marked
   * MAX_RECOVERY_ATTEMPTS_EXCEEDED instead of being retried forever.
   * Defaults to the engine's `maxRecoveryAttempts`.
   */
  maxRecoveryAttempts?: number
}

export type WorkflowFunction<I, O> = (ctx: WorkflowContext, input: I) => Promise<O>

export interface WorkflowDefinition<I = unknown, O = unknown> {
  readonly name: string
  readonly fn: WorkflowFunction<I, O>
  readonly options: Readonly<WorkflowOptions>
}

/** Input and output types of a definition, for typed handles. */
export type InputOf<D> = D extends WorkflowDefinition<infer I, unknown> ? I : never
export type OutputOf<D> = D extends WorkflowDefinition<unknown, infer O> ? O : never

/**
 * Defines a durable workflow. `fn` must be deterministic apart from its steps:
 * on recovery it runs again from the top, and completed steps return their
 * recorded results instead of running.
 *
 * @example
 * const greet = defineWorkflow('greet', async (ctx, name: string) =>
 *   ctx.step('hello', async () => `hello ${name}`))
 */
export function defineWorkflow<I, O> (name: string, fn: WorkflowFunction<I, O>, options: WorkflowOptions = {}): WorkflowDefinition<I, O> {
  if (typeof name !== 'string' || name.length === 0 || name.length > 256) {
    throw new TypeError('defineWorkflow: name must be a non-empty string of at most 256 characters')
  }
  const bad = unstorableTextReason(name)
  if (bad !== undefined) throw new TypeError(`defineWorkflow: name ${bad}`)
  if (typeof fn !== 'function') throw new TypeError('defineWorkflow: fn must be a function')
  return Object.freeze({ name, fn, options: Object.freeze({ ...options }) })
}
