/**
 * The `ctx` a workflow function receives: its identity and the durable
 * operations, each in a file of its own over the run core. A new ctx
 * operation is a new file here and a line below.
 */
import type { ChildHandle, ChildOptions, RecvOptions, SendOptions, StepOptions, TransactionOptions, TransactionSql, WorkflowContext } from '../context.js'
import type { WorkflowDefinition } from '../workflow.js'
import { startChild } from './children.js'
import { closeStream, setEvent, writeStream } from './events.js'
import { recv, send } from './messages.js'
import type { RunCore } from './run-core.js'
import { now, randomUUID } from './values.js'
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

  step<T> (name: string, fn: (signal: AbortSignal) => T | Promise<T>, options?: StepOptions): Promise<T> {
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

  now (): Promise<number> {
    return now(this.#run)
  }

  randomUUID (): Promise<string> {
    return randomUUID(this.#run)
  }

  recv<T = unknown> (topic?: string, options?: RecvOptions): Promise<T | null> {
    return recv<T>(this.#run, topic, options)
  }

  send (workflowId: string, message: unknown, options?: SendOptions): Promise<void> {
    return send(this.#run, workflowId, message, options)
  }

  setEvent (key: string, value: unknown): Promise<void> {
    return setEvent(this.#run, key, value)
  }

  writeStream (key: string, value: unknown): Promise<void> {
    return writeStream(this.#run, key, value)
  }

  closeStream (key: string): Promise<void> {
    return closeStream(this.#run, key)
  }

  startChild<I, O> (def: WorkflowDefinition<I, O>, input: I, options?: ChildOptions): Promise<ChildHandle<O>> {
    return startChild(this.#run, def, input, options)
  }

  async runChild<I, O> (def: WorkflowDefinition<I, O>, input: I, options?: ChildOptions): Promise<O> {
    return (await this.startChild(def, input, options)).getResult()
  }
}
