// The layout of lib/ and plugins/ (see ../shared/STYLE.md, "Layout"), kept
// true: dependencies point one way, core <- store <- writes <- run <-
// background <- engine <- plugins, and no file imports itself back through
// others. Reads the import statements of the sources; no build needed.
import { readdirSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'

const root = fileURLToPath(new URL('..', import.meta.url))

/** Layer of each folder (files at lib/'s top are the public surface, with core). */
const LAYERS: [RegExp, number, string][] = [
  [/^lib\/core\//, 0, 'core'],
  [/^lib\/[^/]+\.ts$/, 0, 'public surface'],
  [/^lib\/store\//, 1, 'store'],
  [/^lib\/embedded\//, 1, 'embedded'],
  [/^lib\/client\//, 2, 'client'],
  [/^lib\/writes\//, 2, 'writes'],
  [/^lib\/run\//, 3, 'run'],
  [/^lib\/background\//, 4, 'background'],
  [/^lib\/engine\//, 5, 'engine'],
  [/^lib\/index\.ts$/, 6, 'entry point'],
  [/^plugins\//, 7, 'plugins']
]

function layerOf (file: string): { layer: number, name: string } {
  // index.ts is listed after the public surface pattern that also matches it.
  const match = [...LAYERS].reverse().find(([re]) => re.test(file))
  if (match === undefined) throw new Error(`${file} is in no known folder: add it to LAYERS in test/layout.test.ts`)
  return { layer: match[1], name: match[2] }
}

function sources (dir: string): string[] {
  return readdirSync(path.join(root, dir), { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.d.ts'))
    .map((e) => path.relative(root, path.join(e.parentPath, e.name)))
}

/** Relative imports of a file (static, re-exports and dynamic), resolved to repository paths. */
function importsOf (file: string): string[] {
  const text = readFileSync(path.join(root, file), 'utf8')
  const specs = [...text.matchAll(/(?:from|import)\s*\(?\s*['"](\.{1,2}\/[^'"]+)['"]/g)].map((m) => m[1]!)
  return specs.map((s) => path.relative(root, path.resolve(path.dirname(path.join(root, file)), s)).replace(/\.js$/, '.ts'))
}

const files = [...sources('lib'), ...sources('plugins')]
const graph = new Map(files.map((f) => [f, importsOf(f)]))

t.test('every import points to the same layer or a lower one', async (t) => {
  const wrong: string[] = []
  for (const [file, deps] of graph) {
    const from = layerOf(file)
    for (const dep of deps) {
      const to = layerOf(dep)
      if (to.layer > from.layer) wrong.push(`${file} (${from.name}) imports ${dep} (${to.name})`)
    }
  }
  t.same(wrong, [])
})

t.test('the client never reaches the worker side', async (t) => {
  const wrong = [...graph].flatMap(([file, deps]) => file.startsWith('lib/client/')
    ? deps.filter((d) => !/^lib\/(core|store|client)\/|^lib\/[^/]+\.ts$/.test(d) || d === 'lib/index.ts').map((d) => `${file} imports ${d}`)
    : [])
  t.same(wrong, [])
})

t.test('no import cycles', async (t) => {
  const cycles: string[] = []
  const state = new Map<string, 'visiting' | 'done'>()
  const stack: string[] = []
  const visit = (file: string): void => {
    if (state.get(file) === 'done') return
    if (state.get(file) === 'visiting') {
      cycles.push([...stack.slice(stack.indexOf(file)), file].join(' -> '))
      return
    }
    state.set(file, 'visiting')
    stack.push(file)
    for (const dep of graph.get(file) ?? []) visit(dep)
    stack.pop()
    state.set(file, 'done')
  }
  for (const file of graph.keys()) visit(file)
  t.same(cycles, [])
})

t.test('every import resolves to a source file', async (t) => {
  const missing = [...graph].flatMap(([file, deps]) => deps.filter((d) => !graph.has(d)).map((d) => `${file} imports ${d}`))
  t.same(missing, [])
})
