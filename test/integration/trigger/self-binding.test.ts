/**
 * A symbol the new build defines and calls itself (test/fixtures/hard/libself.c):
 * version 2 adds exports it calls through its own PLT. ld.so binds such a
 * call to the library itself unless an object before it in scope defines the
 * symbol; the staged build is in no scope of ld.so's, so the trigger must
 * reach the same answer on its own. The truth each time is what a process
 * that loaded version 2 at startup computes.
 */
import assert from 'node:assert/strict';
// Outcomes may be `applied-partly`/`reverted-partly`: the fixtures' 4-byte functions are too short for an entry
// redirect (test/integration/trigger/redirects.test.ts covers redirects); here what matters is the build that is live.
import { HardLab, linesAfter, trigger, type Line } from '../../../lab/hard-lab.js';
import type { Target } from '../../../lab/target.js';

async function settled(t: Target, mark: number): Promise<Line[]> {
  return (await linesAfter(t, mark, (ls) => ls.length >= 3)).slice(1);
}

describe('a new build binds what it defines and uses itself', function () {
  this.timeout(180_000);
  let lab: HardLab;
  before(() => {
    lab = new HardLab(
      {
        self: { soname: 'libself.so.1', sources: ['hard/libself.c'] },
        shadow: { soname: 'libshadow.so.1', sources: ['hard/libshadow.c'] },
      },
      'self-binding',
    );
  });
  after(() => lab?.dispose());

  /** compute= of a process started on `v` (ld.so's own answer), and of one started on 1 and patched to 2. */
  async function truthAndPatched(
    exe: string,
    installed: Record<string, number>,
  ): Promise<{ truth: string; patched: string[]; before: string }> {
    const fresh = lab.start(exe, { ...installed, self: 2 });
    const truth = (await settled(fresh, 0))[0]!.compute!;
    fresh.dispose();
    const t = lab.start(exe, { ...installed, self: 1 });
    const before = (await settled(t, 0))[0]!.compute!;
    const r = trigger(String(t.pid), lab.pack('self', 1, 2), '--json').json;
    assert.match(r.outcome, /^applied(-partly)?$/);
    const after = await settled(t, t.output().length);
    assert.deepEqual([...new Set(after.map((l) => l.version))], ['2']);
    return { truth, patched: after.map((l) => l.compute!), before };
  }

  it('a function found nowhere else binds to the staged build itself (no LOADER_UNRESOLVED_SYMBOL)', async () => {
    const exe = lab.exe('self_main', {
      sources: ['hard/self_main.c'],
      needs: ['self'],
      flags: ['-rdynamic'],
    });
    const { truth, patched, before } = await truthAndPatched(exe, {});
    assert.equal(before, '-1');
    // self_helper(3) = 32 from the library, self_extra(3) = 9003 from the program that interposes it,
    // self_version() = 2: an export the old build defines too, bound to the new build's own definition.
    assert.equal(
      truth,
      String(32 + 9003 + 200000),
      "ld.so: own self_helper and self_version, the program's self_extra",
    );
    for (const c of patched) assert.equal(c, truth);
  });

  it('an object after the library that defines the same symbol does not take the binding; the executable still interposes', async () => {
    const exe = lab.exe('self_shadow_main', {
      sources: ['hard/self_main.c'],
      needs: ['self', 'shadow'],
      flags: ['-rdynamic', '-Wl,--no-as-needed'],
    });
    const { truth, patched } = await truthAndPatched(exe, { shadow: 1 });
    assert.equal(
      truth,
      String(32 + 9003 + 200000),
      'libshadow comes after libself in scope: ld.so binds libself to itself',
    );
    for (const c of patched) assert.equal(c, truth);
  });
});
