/**
 * Building blocks for workflow tests: gates that hold a step open until the
 * test releases it, counters of side effects, and several engines ("processes")
 * sharing one schema, as restart and recovery tests need.
 */
import type { Test } from 'tap'
import { Engine, type EngineOptions, type WorkflowDefinition } from '../../lib/index.js'
import { databaseUrl, dropSchema, pollUntil, silentLogger, testDefaults, uniqueSchema } from './db.js'

/** A promise the test resolves when it chooses; `entered` counts the callers waiting on it. */
export interface Gate {
  wait (): Promise<void>
  open (): void
  readonly entered: number
}

export function gate (): Gate {
  let open!: () => void
  const promise = new Promise<void>((resolve) => { open = resolve })
  let entered = 0
  return {
    wait () { entered++; return promise },
    open,
    get entered () { return entered }
  }
}

/** Counts named side effects (workflow bodies, step executions). */
export class Counter {
  readonly #counts = new Map<string, number>()

  hit (name: string): number {
    const n = (this.#counts.get(name) ?? 0) + 1
    this.#counts.set(name, n)
    return n
  }

  get (name: string): number {
    return this.#counts.get(name) ?? 0
  }
}

export interface SharedSchema {
  schema: string
  /** Starts another engine on the shared schema; stopped at teardown. */
  start (options?: EngineOptions): Promise<Engine>
}

/**
 * One schema for several engines. At teardown every engine is stopped, then
 * the schema dropped (in that order, so no engine writes into a dropped schema).
 */
export function sharedSchema (t: Test, prefix = 't'): SharedSchema {
  const schema = uniqueSchema(prefix)
  const engines: Engine[] = []
  t.teardown(async () => {
    await Promise.all(engines.map((e) => e.stop()))
    await dropSchema(schema)
  })
  return {
    schema,
    async start (options: EngineOptions = {}) {
      const engine = new Engine({ databaseUrl, logger: silentLogger, poolSize: 4, resultPollIntervalMs: 100, ...testDefaults, ...options, schema })
      engines.push(engine)
      await engine.start()
      return engine
    }
  }
}

export interface Resumed {
  /** The engine that was stopped mid-run. */
  a: Engine
  /** The engine that recovered the workflow. */
  b: Engine
  workflowId: string
  schema: string
}

/**
 * A restart in one process: engine A starts `def` and runs it until a step
 * waits on `hold`; `beforeRestart` runs then (assert on A; flip whatever
 * made the step hang). A stops with a short shutdown timeout, leaving the
 * workflow PENDING, and engine B starts on the same schema with the same
 * executor id and recovers it from its checkpoints, registered with `resumeWith`.
 * Open `hold` afterwards to let A's abandoned run end.
 */
export async function interruptAndResume<I> (t: Test, options: {
  def: WorkflowDefinition<I, any>
  input: I
  hold: Gate
  resumeWith?: WorkflowDefinition<any, any>[]
  beforeRestart?: (a: Engine, workflowId: string) => void | Promise<void>
  requestId?: string
}): Promise<Resumed> {
  const processes = sharedSchema(t)
  const executorId = `exec-${processes.schema}`
  const a = await processes.start({ workflows: [options.def], executorId, shutdownTimeoutMs: 10 })
  const { workflowId } = await a.startWorkflow(options.def, options.input, { requestId: options.requestId })
  await pollUntil(() => options.hold.entered > 0, { what: 'the workflow to reach the step that hangs' })
  await options.beforeRestart?.(a, workflowId)
  await a.stop()
  const b = await processes.start({ workflows: options.resumeWith ?? [options.def], executorId })
  return { a, b, workflowId, schema: processes.schema }
}

/** The JSON body of an error response, for asserting its code. */
export function errorBody (res: { json (): unknown }): { statusCode: number, code: string, message: string } {
  return res.json() as { statusCode: number, code: string, message: string }
}
