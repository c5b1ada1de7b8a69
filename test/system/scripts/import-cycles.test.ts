/**
 * The import-cycle check (scripts/import-cycles.ts): the graph search on
 * small graphs, and the project itself, type-only imports included, which
 * must have none.
 */
import assert from 'node:assert/strict';
import { findCycles, importGraph } from '../../../scripts/import-cycles.js';

const graph = (edges: Record<string, string[]>) => new Map(Object.entries(edges));

describe('import cycles', () => {
  it('finds none in a graph without cycles, shared imports included', () => {
    assert.deepEqual(findCycles(graph({ a: ['b', 'c'], b: ['c'], c: [] })), []);
  });

  it('finds a two-module cycle and a longer one, each once, with a path through it', () => {
    const cycles = findCycles(graph({ a: ['b'], b: ['a', 'c'], c: ['d'], d: ['e'], e: ['c'], f: ['a'] }));
    assert.deepEqual(cycles, [
      { modules: ['a', 'b'], path: ['a', 'b', 'a'] },
      { modules: ['c', 'd', 'e'], path: ['c', 'd', 'e', 'c'] },
    ]);
  });

  it('reports the whole strongly connected component and a shortest cycle from its first module', () => {
    const cycles = findCycles(graph({ s: ['x', 'y'], x: ['i'], y: ['i'], i: ['s'] }));
    assert.equal(cycles.length, 1);
    assert.deepEqual(cycles[0]!.modules, ['i', 's', 'x', 'y']);
    assert.deepEqual(cycles[0]!.path, ['i', 's', 'x', 'i']);
  });

  it('counts a module importing itself', () => {
    assert.deepEqual(findCycles(graph({ a: ['a'] })), [{ modules: ['a'], path: ['a', 'a'] }]);
  });

  it('sees type-only imports and re-exports in the project, and finds no cycle among them', () => {
    const g = importGraph('tsconfig.json');
    // Type-only edges are part of the graph: the injection code names the session's interface by type only.
    assert.ok(g.get('runtime/remote-call.ts')?.includes('runtime/injection-host.ts'));
    assert.ok(g.get('runtime/index.ts')?.includes('runtime/session.ts'), 'a re-export is an edge');
    assert.deepEqual(findCycles(g), []);
  });
});
