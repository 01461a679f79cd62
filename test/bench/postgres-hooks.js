// Module resolution hook (node:module register) for the "ours" and "ceiling"
// children: every import of 'postgres' gets the counting wrapper instead, so
// the engine's statements are counted without touching lib/.
const wrapper = new URL('./counting-postgres.js', import.meta.url).href

export async function resolve (specifier, context, next) {
  if (specifier === 'postgres' && context.parentURL !== wrapper) return { url: wrapper, shortCircuit: true }
  return next(specifier, context)
}
