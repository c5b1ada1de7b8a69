/**
 * A library that depends on the patched one (test/fixtures/hard/libb.c
 * calls liba) is relinked like the executable: its bound GOT slots, its
 * still-unbound lazy slot (bound to the target eagerly), and the pointer to
 * a liba function in its writable data. The program reaches liba only
 * through libb.
 */
import assert from 'node:assert/strict';
import { HardLab, libStatus, linesAfter, trigger, type Line } from '../../../lab/hard-lab.js';
import type { Target } from '../../../lab/target.js';

const SONAME = 'liba.so.1';
const want = (v: number, late: boolean) => ({
  via_b: String(3 * (10 + v) * 100 + v),
  ptr: String(v),
  late: late ? String(300 + v) : '0',
});

async function expectRounds(t: Target, mark: number, w: Record<string, string>): Promise<void> {
  const ls: Line[] = (await linesAfter(t, mark, (l) => l.length >= 3)).slice(1); // the first may predate the switch
  for (const l of ls) assert.deepEqual({ via_b: l.via_b, ptr: l.ptr, late: l.late }, w, `round ${l.round}`);
}

describe('a library that depends on the patched one', function () {
  this.timeout(180_000);
  let lab: HardLab;
  before(() => {
    lab = new HardLab(
      {
        a: { soname: SONAME, sources: ['hard/liba.c'] },
        b: { soname: 'libb.so.1', sources: ['hard/libb.c'], relro: 'partial', needs: ['a'] },
      },
      'deps',
    );
  });
  after(() => lab?.dispose());

  it('reaches the new build through the dependent library’s slots, lazy ones and data pointers included; revert restores', async () => {
    const exe = lab.exe('deps_main', { sources: ['hard/deps_main.c'], needs: ['b'] });
    const fix = lab.pack('a', 1, 2);
    const t = lab.start(exe, { a: 1, b: 1 });
    await expectRounds(t, 0, want(1, false));

    const r = trigger(String(t.pid), fix, '--json').json;
    assert.ok(
      r.switch.lazyBound >= 1,
      `libb's unbound a_late slot is bound to the new build: ${JSON.stringify(r.switch.counts)}`,
    );
    await expectRounds(t, t.output().length, want(2, false));
    const st = libStatus(t.pid, SONAME);
    assert.equal(st.oldReferences.slots, 0);
    assert.equal(
      st.oldReferences.dataPointers,
      0,
      'libb’s pointer to a_version was relinked, not left behind',
    );

    let mark = t.output().length;
    process.kill(t.pid, 'SIGUSR1'); // first call of b_late: through the slot the switch bound
    const late = (await linesAfter(t, mark, (l) => l.filter((x) => x.late !== '0').length >= 3)).filter(
      (x) => x.late !== '0',
    );
    for (const l of late)
      assert.deepEqual({ via_b: l.via_b, ptr: l.ptr, late: l.late }, want(2, true), `round ${l.round}`);

    trigger(String(t.pid), fix, '--revert');
    await expectRounds(t, t.output().length, want(1, true));
    trigger(String(t.pid), fix);
    mark = t.output().length;
    await expectRounds(t, mark, want(2, true));

    // liba's global is shared by every build: its call counter never skipped or restarted.
    const calls = (await linesAfter(t, 0, () => true)).map((l) => Number(l.calls));
    calls.forEach((c, i) => assert.equal(c, i + 1, `calls after round ${i + 1}`));
  });
});
