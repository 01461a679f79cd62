/** Workflow inputs: serialised once, and fingerprinted for idempotency checks. */
import { hash as digest } from 'node:crypto'
import { serialize } from './codec.js'

/** A workflow input, serialised once and fingerprinted for idempotency checks. */
export interface PreparedInput {
  text: string
  hash: string
}

/** Serialises an input once; refuses values that cannot be stored (400) before anything is written. */
export function prepareInput (def: { name: string }, input: unknown): PreparedInput {
  const text = serialize(input, `the input of workflow ${JSON.stringify(def.name)}`)
  // One-shot hash: a third of the cost of a createHash() object per start.
  const hash = digest('sha256', `${def.name}\0${text}`, 'base64url')
  return { text, hash }
}

