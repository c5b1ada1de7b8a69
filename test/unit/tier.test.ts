/**
 * The unit tier stays what `npm run test:unit` promises: pure code on values
 * built in the test, in seconds. A unit test that needs gcc, a process, a
 * command run or the real builds belongs in test/integration or test/system
 * (docs/DEVELOPING.md); this reads every file of the tier and names the
 * imports that would pull such work in.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { ROOT } from '../../lab/root.js';

const UNIT = join(ROOT, 'test', 'unit');

/** The lab modules that compute and build nothing outside the test's own memory. */
const PURE_LAB = new Set([
  'lab/process-model.ts',
  'lab/root.ts',
  'lab/random.ts',
  'lab/relro.ts',
  'lab/script-args.ts',
  'lab/bench/pack-verdict.ts',
  'lab/bench/format.ts',
  'lab/bench/goals.ts',
]);
/** Node modules that start processes or threads. */
const EFFECTS = new Set(['node:child_process', 'child_process', 'node:worker_threads', 'node:cluster']);

function files(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? files(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

describe('the unit tier', () => {
  it('imports nothing that compiles, starts processes or runs the commands', () => {
    const offending: string[] = [];
    for (const file of files(UNIT)) {
      const text = readFileSync(file, 'utf8');
      for (const m of text.matchAll(/(?:from|import)\s*\(?\s*'([^']+)'/g)) {
        const spec = m[1]!;
        if (EFFECTS.has(spec)) offending.push(`${relative(ROOT, file)}: ${spec}`);
        if (!spec.startsWith('.')) continue;
        const target = relative(ROOT, join(file, '..', spec)).replace(/\.js$/, '.ts');
        if (
          (target.startsWith('lab/') && !PURE_LAB.has(target)) ||
          target.startsWith('test/integration/') ||
          target.startsWith('test/system/') ||
          target.startsWith('scripts/')
        ) {
          offending.push(`${relative(ROOT, file)}: ${target}`);
        }
      }
    }
    assert.deepEqual(
      offending,
      [],
      'move these tests to test/integration or test/system, or keep the work out of them',
    );
  });
});
