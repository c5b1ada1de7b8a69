/**
 * Unwinding through frames of a build ulp mapped (runtime/loader/unwind.ts):
 * the dynamic loader does not know the build, so the unwinder finds its
 * tables only because the trigger registered them. Each program below
 * unwinds through the patched library every round; without the
 * registration the first one aborts and the second one loses its cleanups.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { compile } from '../../../lab/compile.js';
import { HardLab, linesAfter, trigger as run } from '../../../lab/hard-lab.js';
import type { Target } from '../../../lab/target.js';

const trigger = (...args: string[]) => run(...args, '--json').json;
const mapsHas = (t: Target, name: string) => readFileSync(`/proc/${t.pid}/maps`, 'utf8').includes(name);
/** The last round line printed after `mark`, once `n` have been. */
const lastRoundAfter = async (t: Target, mark: number, n = 2) =>
  (await linesAfter(t, mark, (ls) => ls.filter((l) => l.round).length >= n)).filter((l) => l.round).at(-1)!;

describe('unwinding through a patched library', function () {
  this.timeout(180_000);
  const lab = new HardLab(
    {
      cxx: { soname: 'libunwcxx.so.1', sources: ['unwind/libunwcxx.cpp'], libs: ['-lstdc++'] },
      cancel: {
        soname: 'libcancel.so.1',
        sources: ['unwind/libcancel.c'],
        flags: ['-fexceptions', '-pthread'],
      },
      cb: { soname: 'libcb.so.1', sources: ['unwind/libcb.c'] },
    },
    'unwind',
  );
  after(() => lab.dispose());

  it('C++ exceptions thrown and caught across frames of the new build, after apply and after revert', async () => {
    const exe = lab.exe('unwcxx_main', {
      sources: ['unwind/unwcxx_main.cpp'],
      needs: ['cxx'],
      libs: ['-lstdc++'],
    });
    const fix = lab.pack('cxx', 1, 2);
    const t = lab.start(exe, { cxx: 1 });
    const v1 = await lastRoundAfter(t, 0);
    assert.deepEqual([v1.version, v1.internal, v1.through], ['1', '31', '1007']);

    const applied = trigger(String(t.pid), fix);
    const v2 = await lastRoundAfter(t, t.output().length, 3);
    assert.deepEqual(
      [v2.version, v2.internal, v2.through],
      ['2', '32', '1007'],
      'the library caught its own exception in v2 code; the program caught its exception through a v2 frame',
    );
    assert.deepEqual(applied.switch.unwind, {
      registered: true,
      loadedUnwinder: false,
      ehFrame: applied.switch.unwind.ehFrame,
    });

    trigger(String(t.pid), fix, '--revert');
    const back = await lastRoundAfter(t, t.output().length, 3);
    assert.deepEqual([back.version, back.internal, back.through], ['1', '31', '1007']);
    // Stacked back on: the build is mapped (and registered) already.
    const again = trigger(String(t.pid), fix);
    assert.equal(again.switch.staged, false);
    const v2again = await lastRoundAfter(t, t.output().length, 3);
    assert.deepEqual([v2again.version, v2again.internal], ['2', '32']);
    assert.ok(t.alive());
  });

  it('pthread_cancel of a thread blocked inside the new build runs the cleanups of every frame', async () => {
    const exe = lab.exe('cancel_main', {
      sources: ['unwind/cancel_main.c'],
      needs: ['cancel'],
      flags: ['-fexceptions'],
    });
    const fix = lab.pack('cancel', 1, 2);
    const t = lab.start(exe, { cancel: 1 });
    const v1 = await lastRoundAfter(t, 0);
    assert.equal(v1.canceled, '1');
    assert.equal(Number(v1.lib), 101 * Number(v1.mine), 'v1 cleanups: 101 a cancel');

    trigger(String(t.pid), fix);
    const mark = t.output().length;
    // Rounds by position, not the last one seen: output comes in chunks of any number of rounds.
    const rs = (await linesAfter(t, mark, (ls) => ls.filter((l) => l.round).length >= 5)).filter(
      (l) => l.round,
    );
    const [a, b] = [rs[1]!, rs[4]!];
    assert.equal(b.version, '2');
    assert.equal(b.canceled, '1');
    const cancels = Number(b.mine) - Number(a.mine);
    assert.ok(cancels >= 3, `the program's own cleanup ran for every cancel (${a.mine} -> ${b.mine})`);
    assert.equal(
      Number(b.lib) - Number(a.lib),
      102 * cancels,
      "the new build's cleanup ran for every cancel",
    );
    assert.ok(t.alive());
  });

  it('a C program that loads its unwinder only after the patch (a C++ plugin) unwinds through the new build', async () => {
    const exe = lab.exe('plugin_main', { sources: ['unwind/plugin_main.c'], needs: ['cb'] });
    const plugin = compile({
      sources: ['unwind/libplugin.cpp'],
      out: 'libplugin.so',
      flags: ['-shared', '-fPIC', '-O2'],
      libs: ['-lstdc++'],
    });
    const fix = lab.pack('cb', 1, 2);
    const t = lab.start(exe, { cb: 1 }, [plugin]);
    const v1 = await lastRoundAfter(t, 0);
    assert.deepEqual([v1.version, v1.caught], ['1', '-1']);
    assert.ok(!mapsHas(t, 'libgcc_s.so.1'), 'precondition: no unwinder loaded before the patch');

    const applied = trigger(String(t.pid), fix);
    assert.equal(applied.switch.unwind.registered, true);
    assert.equal(
      applied.switch.unwind.loadedUnwinder,
      true,
      'the trigger loaded libgcc_s to register the new build',
    );
    assert.ok(mapsHas(t, 'libgcc_s.so.1'));

    process.kill(t.pid, 'SIGUSR1'); // the program loads the C++ plugin now
    const v2 = await lastRoundAfter(t, t.output().length, 3);
    assert.deepEqual(
      [v2.version, v2.caught],
      ['2', '2005'],
      'the plugin caught its exception through a frame of the new build',
    );
    assert.ok(t.alive());
  });
});
