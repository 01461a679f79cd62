/**
 * Workflow definitions. A definition is a name plus an async function of
 * (ctx, input); the engine finds a workflow's code by name when it recovers it,
 * so every definition an app can run must be registered with its engine.
 */
import type { WorkflowDefinition, WorkflowFunction, WorkflowOptions } from './context.js'
import { unstorableTextReason } from './core/text.js'

export type { WorkflowDefinition, WorkflowFunction, WorkflowOptions } from './context.js'

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
