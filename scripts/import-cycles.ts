/**
 * Import cycles among the project's TypeScript files, type-only imports
 * included: a cycle of `import type` still ties two modules' designs together
 * (the runtime's Session and the injection code it drives had one). Dynamic
 * `import()` is left out: it is how a module loads another lazily on purpose.
 *
 * `findCycles` is pure (a graph in, the cycles out); `importGraph` reads the
 * files a tsconfig compiles. `npm run check:cycles` prints every cycle and
 * exits 1 when there is one.
 */
import { dirname, relative, resolve } from 'node:path';
import ts from 'typescript';
import { handleArgs } from '../lab/script-args.js';

export type ImportGraph = ReadonlyMap<string, readonly string[]>;

export interface ImportCycle {
  /** Every module of the strongly connected component, sorted. */
  modules: string[];
  /** One cycle through it, from its first module back to that module. */
  path: string[];
}

/**
 * Every strongly connected component with more than one module (or a module
 * importing itself), each as one cycle through it, starting at its smallest
 * name so that the output is stable. Tarjan's algorithm, iterative.
 */
export function findCycles(graph: ImportGraph): ImportCycle[] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const components: string[][] = [];
  let next = 0;
  for (const root of [...graph.keys()].sort()) {
    if (index.has(root)) continue;
    const work: { node: string; edge: number }[] = [{ node: root, edge: 0 }];
    index.set(root, next);
    low.set(root, next++);
    stack.push(root);
    onStack.add(root);
    while (work.length > 0) {
      const frame = work[work.length - 1]!;
      const edges = graph.get(frame.node) ?? [];
      if (frame.edge < edges.length) {
        const to = edges[frame.edge++]!;
        if (!index.has(to)) {
          index.set(to, next);
          low.set(to, next++);
          stack.push(to);
          onStack.add(to);
          work.push({ node: to, edge: 0 });
        } else if (onStack.has(to)) {
          low.set(frame.node, Math.min(low.get(frame.node)!, index.get(to)!));
        }
        continue;
      }
      work.pop();
      const parent = work[work.length - 1];
      if (parent) low.set(parent.node, Math.min(low.get(parent.node)!, low.get(frame.node)!));
      if (low.get(frame.node) !== index.get(frame.node)) continue;
      const component: string[] = [];
      let member: string;
      do {
        member = stack.pop()!;
        onStack.delete(member);
        component.push(member);
      } while (member !== frame.node);
      const selfLoop = component.length === 1 && (graph.get(frame.node) ?? []).includes(frame.node);
      if (component.length > 1 || selfLoop) components.push(component);
    }
  }
  return components
    .map((c) => ({ modules: c.sort(), path: cycleThrough(graph, new Set(c)) }))
    .sort((a, b) => a.modules[0]!.localeCompare(b.modules[0]!));
}

/** A shortest path from the component's smallest module back to itself, staying inside the component. */
function cycleThrough(graph: ImportGraph, members: ReadonlySet<string>): string[] {
  const start = [...members].sort()[0]!;
  const from = new Map<string, string>();
  const queue = [start];
  for (let i = 0; i < queue.length; i++) {
    const node = queue[i]!;
    for (const to of graph.get(node) ?? []) {
      if (!members.has(to)) continue;
      if (to === start) {
        const path = [node];
        while (path[0] !== start) path.unshift(from.get(path[0]!)!);
        return [...path, start];
      }
      if (from.has(to)) continue;
      from.set(to, node);
      queue.push(to);
    }
  }
  return [start, start];
}

/** The static imports and re-exports (type-only included) between the files `tsconfigPath` compiles, as paths relative to `root`. */
export function importGraph(
  tsconfigPath: string,
  root = dirname(resolve(tsconfigPath)),
): Map<string, string[]> {
  const config = ts.readConfigFile(tsconfigPath, (p) => ts.sys.readFile(p));
  if (config.error) throw new Error(ts.flattenDiagnosticMessageText(config.error.messageText, '\n'));
  const parsed = ts.parseJsonConfigFileContent(config.config, ts.sys, dirname(resolve(tsconfigPath)));
  const files = new Set(parsed.fileNames.map((f) => resolve(f)));
  const graph = new Map<string, string[]>();
  for (const file of files) {
    const source = ts.createSourceFile(file, ts.sys.readFile(file) ?? '', ts.ScriptTarget.Latest, false);
    const targets = new Set<string>();
    for (const statement of source.statements) {
      const specifier =
        ts.isImportDeclaration(statement) || ts.isExportDeclaration(statement)
          ? statement.moduleSpecifier
          : undefined;
      if (!specifier || !ts.isStringLiteral(specifier)) continue;
      const resolved = ts.resolveModuleName(specifier.text, file, parsed.options, ts.sys).resolvedModule
        ?.resolvedFileName;
      if (resolved && files.has(resolve(resolved))) targets.add(relative(root, resolve(resolved)));
    }
    graph.set(relative(root, file), [...targets].sort());
  }
  return graph;
}

if (process.argv[1] && resolve(process.argv[1]) === resolve(new URL(import.meta.url).pathname)) {
  handleArgs(import.meta.url, { operands: 1 });
  const cycles = findCycles(importGraph(process.argv[2] ?? 'tsconfig.json'));
  for (const cycle of cycles) {
    process.stdout.write(
      `import cycle: ${cycle.path.join(' -> ')}\n  modules that import each other: ${cycle.modules.join(', ')}\n`,
    );
  }
  if (cycles.length > 0) process.exitCode = 1;
  else process.stdout.write('no import cycles\n');
}
