/**
 * Libraries the program loads with dlopen (test/fixtures/hard/dlopen_main.c):
 * a plugin loaded RTLD_LOCAL whose handle the program keeps using with
 * dlsym, a plugin loaded RTLD_GLOBAL exporting the same names, a library
 * dlopen'ed RTLD_LAZY before the patch whose slots bind at their first call
 * (to the global plugin: ld.so never looks into an RTLD_LOCAL object for
 * another object's symbols, except the objects of its own lookup group:
 * its dependencies), and one dlopen'ed after the patch. The RTLD_LOCAL
 * plugin's new build imports a function only its own dependency defines,
 * which is in no global scope.
 *
 * What ld.so hands out after a switch is the old build: dlsym returns it,
 * and an object loaded later is bound to it. The old build's changed entries
 * jump to the live build, so those pointers and slots run the new code
 * anyway; --status still reports them as data pointers and slots, and
 * re-running the trigger binds a library loaded after the patch.
 */
import assert from 'node:assert/strict';
import { HardLab, libStatus, linesAfter, trigger, type Line } from '../../../lab/hard-lab.js';
import type { Target } from '../../../lab/target.js';

const LOC = 'libloc.so.1';
const GLOB = 'libglob.so.1';
type Want = Partial<
  Record<'lentry' | 'lver' | 'lfresh' | 'gentry' | 'lazy' | 'lazyloc' | 'now' | 'nowentry', number>
>;

/** Waits for rounds after `mark` in which `ready` holds, and checks the settled ones (all but the first) against `want`. */
async function expectRounds(
  t: Target,
  mark: number,
  want: Want,
  ready: (l: Line) => boolean = () => true,
): Promise<Line[]> {
  const ls = (await linesAfter(t, mark, (l) => l.filter(ready).length >= 3)).filter(ready).slice(1);
  for (const l of ls)
    for (const [k, v] of Object.entries(want))
      assert.equal(l[k], String(v), `round ${l.round}: ${k}=${l[k]}, expected ${v}\n${JSON.stringify(l)}`);
  return ls;
}

describe('libraries loaded with dlopen', function () {
  this.timeout(180_000);
  let lab: HardLab;
  before(() => {
    lab = new HardLab(
      {
        helper: { soname: 'libhelper.so.1', sources: ['hard/libhelper.c'] },
        // --no-as-needed: version 1 does not call libhelper yet, and must still depend on it.
        loc: {
          soname: LOC,
          sources: ['hard/libplug.c'],
          flags: ['-DPLUG_ID=1', '-Wl,--no-as-needed'],
          needs: ['helper'],
        },
        glob: { soname: GLOB, sources: ['hard/libplug.c'], flags: ['-DPLUG_ID=2'] },
        now: { soname: 'libnow.so.1', sources: ['hard/libuser.c'] },
        lazy: {
          soname: 'liblazy.so.1',
          sources: ['hard/libuser.c'],
          relro: 'partial',
          flags: ['-DWITH_LOC'],
          needs: ['loc'],
        },
      },
      'dlopen',
    );
  });
  after(() => lab?.dispose());

  it('patches RTLD_LOCAL and RTLD_GLOBAL plugins, reports stored dlsym pointers, binds lazy and late-loaded users to the live build', async () => {
    const exe = lab.exe('dlopen_main', { sources: ['hard/dlopen_main.c'], libs: ['-ldl'] });
    const [fixLoc, fixGlob] = [lab.pack('loc', 1, 2), lab.pack('glob', 1, 2)];
    const t = lab.start(exe, { helper: 1, loc: 1, glob: 1, now: 1, lazy: 1 });
    await expectRounds(t, 0, {
      lentry: 101001,
      lver: 1001,
      lfresh: 101001,
      gentry: 102001,
      lazy: 0,
      lazyloc: 0,
      now: 0,
    });

    // The RTLD_LOCAL plugin. Its stored and freshly dlsym'd entry points are the old build's, whose changed
    // entries jump to the new build (and through it to libhelper, resolved in the plugin's own lookup group);
    // the stored pointers are still reported as old references. v1's plug_extra (xor eax,eax; ret) is too
    // short for a jump: the apply says so instead of "applied".
    const loc = trigger(String(t.pid), fixLoc, '--json').json;
    assert.deepEqual(loc.switch.newImports, [{ name: 'helper_value', from: 'libhelper.so.1' }]);
    assert.equal(loc.outcome, 'applied-partly');
    assert.deepEqual(
      loc.switch.redirects.uncovered.map((u: { fn: { name: string }; reason: string }) => [
        u.fn.name,
        u.reason.replace(/ \(.*/, ''),
      ]),
      [['plug_extra', 'too short for a jump']],
    );
    await expectRounds(t, t.output().length, { lentry: 201052, lver: 1002, lfresh: 201052, gentry: 102001 });
    let st = libStatus(t.pid, LOC);
    assert.equal(st.builds.find((b: { live: boolean }) => b.live).source, 'ulp');
    assert.equal(st.oldReferences.dataPointers, 2, JSON.stringify(st.oldReferences));
    assert.deepEqual(
      st.oldReferences.samples.map((s: { holder: string }) => s.holder),
      ['(executable)', '(executable)'],
    );

    // The RTLD_GLOBAL plugin.
    assert.equal(trigger(String(t.pid), fixGlob, '--json').json.outcome, 'applied');
    await expectRounds(t, t.output().length, { lentry: 201052, gentry: 202002 });

    // liblazy's slots were unbound at both switches, and were bound by them in liblazy's own scope: plug_version
    // to the global plugin's live build (the global scope comes first, and has no RTLD_LOCAL object), loc_version
    // to the RTLD_LOCAL plugin's (found in liblazy's lookup group only).
    let mark = t.output().length;
    process.kill(t.pid, 'SIGUSR2');
    await expectRounds(t, mark, { lazy: 2002, lazyloc: 3002 }, (l) => l.lazy !== '0');

    // A library dlopen'ed after the patch is bound by ld.so to the build it knows: the old one, whose changed entries jump to the live one.
    mark = t.output().length;
    process.kill(t.pid, 'SIGUSR1');
    await expectRounds(t, mark, { now: 2002, nowentry: 202002 }, (l) => l.now !== '0');
    st = libStatus(t.pid, GLOB);
    assert.equal(st.oldReferences.slots, 2, 'libnow’s two slots point at the old build');
    assert.equal(st.mixed, true, 'it looks like an interrupted switch, and is completed like one');
    // Re-running the same command completes the switch.
    const again = trigger(String(t.pid), fixGlob, '--json').json;
    assert.deepEqual(
      [again.outcome, again.note, again.switch.staged, again.switch.rewritten],
      ['applied', 'completes an interrupted switch', false, 2],
    );
    await expectRounds(t, t.output().length, {
      now: 2002,
      nowentry: 202002,
      gentry: 202002,
      lazy: 2002,
      lazyloc: 3002,
    });
    assert.equal(libStatus(t.pid, GLOB).oldReferences.slots, 0);

    // Revert both: everything back on the first builds, nothing reported any more.
    trigger(String(t.pid), fixLoc, '--revert');
    trigger(String(t.pid), fixGlob, '--revert');
    await expectRounds(t, t.output().length, {
      lentry: 101001,
      lver: 1001,
      lfresh: 101001,
      gentry: 102001,
      lazy: 2001,
      lazyloc: 3001,
      now: 2001,
      nowentry: 102001,
    });
    st = libStatus(t.pid, LOC);
    assert.equal(st.oldReferences.dataPointers, 0, 'the stored pointers point at the live build again');
  });
});
