/**
 * Which thread may be borrowed for a call into the process
 * (runtime/loader/safe-thread.ts): one with no frame of fork, the allocator,
 * ld.so or the unwinder in its call chain, found by walking the chain with
 * the unwind tables. Addresses of those functions that are merely stored on
 * the stack (test/fixtures/trigger/forkptr_main.c keeps &fork and &malloc
 * in locals) are not frames: the only thread of this process stays usable.
 */
import assert from 'node:assert/strict';
import { runCli } from '../../../lab/cli.js';
import { buildDemo, type Demo } from '../../../lab/demo.js';
import { linesAfter } from '../../../lab/hard-lab.js';
import type { Target } from '../../../lab/target.js';

const lastRoundAfter = async (t: Target, mark: number) =>
  (await linesAfter(t, mark, (ls) => ls.length >= 2)).at(-1)!;

describe('ulp-trigger borrowing a thread', function () {
  this.timeout(120_000);
  let demo: Demo;
  before(() => (demo = buildDemo({ main: 'forkptr_main.c', tag: 'safe-thread' })));
  after(() => demo?.dispose());

  it('patches a single-threaded process whose stack holds the addresses of fork and malloc', async () => {
    const fix = demo.pack(1, 2);
    const t = demo.start(1);
    const v1 = await lastRoundAfter(t, 0);
    assert.deepEqual([v1.version, v1.kept], ['1', '1']);
    const r = runCli('ulp-trigger', [String(t.pid), fix, '--json']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.equal(r.json.outcome, 'applied');
    const v2 = await lastRoundAfter(t, t.output().length);
    assert.equal(v2.version, '2');
    assert.ok(t.alive());
  });
});
