/**
 * The `ctx` a workflow function receives: its identity and the durable
 * operations, each in a file of its own over the run core. A new ctx
 * operation is a new file here and a line below.
 */
import type { StepOptions, TransactionOptions, TransactionSql, WorkflowContext } from '../context.js'
import type { RunCore } from './run-core.js'
import { patched } from './patched.js'
import { sleep } from './sleep.js'
import { step } from './step.js'
import { transaction } from './transaction.js'

export class RunContext implements WorkflowContext {
  readonly #run: RunCore

  constructor (run: RunCore) {
    this.#run = run
  }

  get workflowId (): string { return this.#run.workflowId }
  get requestId (): string | null { return this.#run.requestId }

  step<T> (name: string, fn: () => T | Promise<T>, options?: StepOptions): Promise<T> {
    return step(this.#run, name, fn, options)
  }

  transaction<T> (name: string, fn: (sql: TransactionSql) => Promise<T>, options?: TransactionOptions): Promise<T> {
    return transaction(this.#run, name, fn, options)
  }

  sleep (ms: number): Promise<void> {
    return sleep(this.#run, ms)
  }

  patched (name: string): Promise<boolean> {
    return patched(this.#run, name)
  }
}
