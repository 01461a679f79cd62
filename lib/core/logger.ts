/**
 * The logger the engine writes to: pino's call shape, so Fastify's `app.log`
 * plugs in directly. Background failures always reach it with the workflow id.
 */
export interface Logger {
  debug (obj: object, msg?: string): void
  info (obj: object, msg?: string): void
  warn (obj: object, msg?: string): void
  error (obj: object, msg?: string): void
}

/** For plain-script use without Fastify: info and above to the console. */
export const consoleLogger: Logger = {
  debug () {},
  info: (obj, msg) => console.info(msg ?? '', obj),
  warn: (obj, msg) => console.warn(msg ?? '', obj),
  error: (obj, msg) => console.error(msg ?? '', obj)
}
