/**
 * How workflow inputs, outputs, step results and errors are stored: JSON text,
 * extended with tagged objects for what JSON loses (undefined, BigInt, Date, Map,
 * Set, Error, Buffer, Uint8Array, NaN/Infinity). Values JSON cannot represent faithfully
 * (functions, symbols, cycles, class instances without toJSON) are refused up
 * front, so nothing is written that could not be replayed identically.
 */
import { UnserializableResultError, UnserializableValueError } from '../errors.js'

const TAG = '$dbos'

/** Marker class: the replacer returns these, and must not wrap them again. */
class Tagged {
  readonly [TAG]: string
  // `declare`: a real class field would define an own `v: undefined` on every
  // instance, which the replacer would then try to tag, forever.
  declare readonly v?: unknown
  constructor (tag: string, v?: unknown) {
    this[TAG] = tag
    if (v !== undefined) this.v = v
  }
}

const UNDEFINED = new Tagged('undefined')
const BUILTIN_ERRORS: Record<string, ErrorConstructor> = {
  Error, TypeError, RangeError, SyntaxError, ReferenceError, EvalError, URIError
}

function replacer (this: Record<string, unknown>, key: string, _value: unknown): unknown {
  // `this[key]` is the raw value: JSON.stringify has already applied Date#toJSON to `_value`.
  const raw = this[key]
  switch (typeof raw) {
    case 'string':
    case 'boolean':
      return raw
    case 'number':
      return Number.isFinite(raw) ? raw : new Tagged('number', String(raw))
    case 'undefined':
      return UNDEFINED
    case 'bigint':
      return new Tagged('bigint', raw.toString())
    case 'object':
      return raw === null ? null : replaceObject(raw)
    default:
      throw new UnserializableValueError('a value', `${typeof raw} values cannot be stored`)
  }
}

function replaceObject (raw: object): unknown {
  if (Array.isArray(raw) || raw instanceof Tagged) return raw
  if (raw instanceof Date) return new Tagged('Date', Number.isNaN(raw.getTime()) ? null : raw.toISOString())
  if (raw instanceof Map) return new Tagged('Map', [...raw.entries()])
  if (raw instanceof Set) return new Tagged('Set', [...raw.values()])
  if (raw instanceof Error) return new Tagged('Error', errorFields(raw))
  if (Buffer.isBuffer(raw)) return new Tagged('Buffer', raw.toString('base64'))
  if (raw instanceof Uint8Array) return new Tagged('Bytes', Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('base64'))
  if (typeof (raw as { toJSON?: unknown }).toJSON === 'function') return (raw as { toJSON: () => unknown }).toJSON()
  const proto = Object.getPrototypeOf(raw)
  if (proto === Object.prototype || proto === null) {
    // A user object that happens to use our tag key is stored as entries, so it
    // can never be mistaken for a tagged value.
    return TAG in raw ? new Tagged('Object', Object.entries(raw)) : raw
  }
  const kind = (proto?.constructor?.name as string | undefined) ?? 'object'
  throw new UnserializableValueError('a value', `${kind} instances cannot be stored; use a plain object or give the class a toJSON method`)
}

function errorFields (err: Error): Record<string, unknown> {
  const fields: Record<string, unknown> = { name: err.name, message: err.message, stack: err.stack, props: { ...err } }
  if ('cause' in err) fields.cause = err.cause
  return fields
}

/** Serialises `value` to text; throws DBOS_ERR_UNSERIALIZABLE_VALUE naming `what` if it cannot be stored. */
export function serialize (value: unknown, what = 'value'): string {
  try {
    return JSON.stringify(value, replacer)
  } catch (err) {
    if (err instanceof UnserializableValueError) throw new UnserializableValueError(what, reasonOf(err))
    // JSON.stringify throws TypeError for cycles; anything else is equally unstorable.
    throw new UnserializableValueError(what, (err as Error).message, { cause: err })
  }
}

function reasonOf (err: Error): string {
  return err.message.replace(/^Cannot store a value: /, '')
}

/**
 * Serialises what workflow code produced (a step result, a workflow output).
 * Refusal is DBOS_ERR_UNSERIALIZABLE_RESULT, a 500: the code's fault, not the client's.
 */
export function serializeResult (value: unknown, what: string): string {
  try {
    return serialize(value, what)
  } catch (err) {
    throw new UnserializableResultError(what, (err as Error).message, { cause: err })
  }
}

/**
 * Serialises an error that a workflow or step threw. Never throws: an error
 * carrying unstorable properties is reduced to its name, message and stack,
 * because a failure must always be recordable.
 */
export function serializeError (err: unknown): string {
  try {
    return serialize(err instanceof Error ? err : new Error(String(err)), 'error')
  } catch {
    const e = err as Error
    return serialize(Object.assign(new Error(String(e?.message ?? e)), { name: e?.name ?? 'Error', stack: e?.stack }), 'error')
  }
}

export function deserialize (text: string): unknown {
  const parsed: unknown = JSON.parse(text)
  // Fast path: most values carry no tags, so skip the walk.
  return text.includes(`"${TAG}"`) ? revive(parsed) : parsed
}

function revive (value: unknown): unknown {
  if (value === null || typeof value !== 'object') return value
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) value[i] = revive(value[i])
    return value
  }
  const obj = value as Record<string, unknown>
  const tag = obj[TAG]
  if (typeof tag === 'string') return reviveTagged(tag, obj.v)
  for (const key of Object.keys(obj)) obj[key] = revive(obj[key])
  return obj
}

function reviveTagged (tag: string, v: unknown): unknown {
  switch (tag) {
    case 'undefined': return undefined
    case 'number': return Number(v)
    case 'bigint': return BigInt(v as string)
    case 'Date': return new Date(v === null ? Number.NaN : v as string)
    case 'Map': return new Map((revive(v) as [unknown, unknown][]))
    case 'Set': return new Set(revive(v) as unknown[])
    case 'Buffer': return Buffer.from(v as string, 'base64')
    case 'Bytes': return new Uint8Array(Buffer.from(v as string, 'base64'))
    case 'Object': return Object.fromEntries(revive(v) as [string, unknown][])
    case 'Error': return reviveError(revive(v) as Record<string, unknown>)
    default: throw new UnserializableValueError('a stored value', `unknown tag ${JSON.stringify(tag)}`)
  }
}

function reviveError (fields: Record<string, unknown>): Error {
  const name = String(fields.name ?? 'Error')
  const Ctor = BUILTIN_ERRORS[name] ?? Error
  const err = new Ctor(String(fields.message ?? ''))
  Object.assign(err, fields.props)
  if (!(name in BUILTIN_ERRORS)) Object.defineProperty(err, 'name', { value: name, writable: true, configurable: true, enumerable: false })
  if ('cause' in fields) Object.defineProperty(err, 'cause', { value: fields.cause, writable: true, configurable: true, enumerable: false })
  if (typeof fields.stack === 'string') Object.defineProperty(err, 'stack', { value: fields.stack, writable: true, configurable: true, enumerable: false })
  return err
}
