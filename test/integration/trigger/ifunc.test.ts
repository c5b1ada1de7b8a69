/**
 * IFUNC symbols across a patch (test/fixtures/hard/libifn.c, libuse.c).
 *
 * A slot bound to an IFUNC holds what the resolver chose, not the symbol's
 * address, so the switch cannot recognise or compute it from symbol tables:
 * the target build's resolvers must run in the process (while staging, with
 * the other threads running). libifn has its own IFUNCs, called by the
 * program and by the library itself; libuse imports libc's IFUNCs (strlen,
 * memcpy) and, from version 2 on, strchr, which the first build lacks. In
 * the full-RELRO libifn, version 2's own resolver calls strchr (a new
 * import and a libc IFUNC): libc's resolver must run first, as in ld.so.
 * Each result carries the version whose code computed it.
 */
import assert from 'node:assert/strict';
import { HardLab, libStatus, linesAfter, ok, trigger, type Line } from '../../../lab/hard-lab.js';
import type { Target } from '../../../lab/target.js';
import { runCli } from '../../../lab/cli.js';
import { readFileSync } from 'node:fs';
import { parseElf } from '../../../elf/index.js';
import { loadSegments, SEGMENT_LAYOUTS } from '../../../lab/versioned.js';

const IFN = 'libifn.so.1';
const USE = 'libuse.so.1';

/** What version `v` of both libraries prints for the program's fixed inputs. */
function expected(ifn: number, use: number): Line {
  const sum = ifn * 1000 + 200 + 7; // the resolver picks the "fast" implementation
  return {
    sum: String(sum),
    inner: String(sum * 10000 + ifn * 1000 + 300 + 7),
    iv: String(ifn),
    copy: '25',
    copied: '1',
    find: '14',
    miss: '-1',
    uv: String(use),
  };
}

async function expectRound(t: Target, mark: number, want: Line): Promise<void> {
  // The first round after a command may have started before the switch.
  const ls = await linesAfter(t, mark, (l) => l.length >= 3);
  for (const l of ls.slice(1))
    for (const [k, v] of Object.entries(want))
      assert.equal(l[k], v, `round ${l.round}: ${k}=${l[k]}, expected ${v}\n${JSON.stringify(l)}`);
}

describe('IFUNC symbols across a patch', function () {
  this.timeout(180_000);
  let lab: HardLab;
  let exe: string;
  before(() => {
    lab = new HardLab(
      {
        // Version 2's local IFUNC resolver calls strchr, a libc IFUNC version 1 does not import (libifn.c).
        ifn: { soname: IFN, sources: ['hard/libifn.c'], flags: ['-DRESOLVER_IMPORTS', '-Wl,--no-as-needed'] },
        use: { soname: USE, sources: ['hard/libuse.c'] },
        // Partial RELRO: the program binds lazily, and the library's .got.plt (its IFUNC slots, the IRELATIVE one
        // included) is in the data every build shares.
        ifnLazy: { soname: IFN, sources: ['hard/libifn.c'], relro: 'partial' },
        // Without -z separate-code the resolvers share the ELF header's page: staging runs them there.
        ifnNosep: {
          soname: IFN,
          sources: ['hard/libifn.c'],
          flags: ['-DRESOLVER_IMPORTS', '-Wl,--no-as-needed', ...SEGMENT_LAYOUTS['noseparate-code'].flags],
        },
      },
      'ifunc',
    );
    exe = lab.exe('ifunc_main', { sources: ['hard/ifunc_main.c'], needs: ['ifn', 'use'] });
  });
  after(() => lab?.dispose());

  for (const { relro, key, what } of [
    { relro: 'full', key: 'ifn', what: 'full RELRO' },
    { relro: 'partial', key: 'ifnLazy', what: 'partial RELRO' },
    { relro: 'full', key: 'ifnNosep', what: 'full RELRO, -z noseparate-code' },
  ] as const) {
    it(`runs the new build’s own resolvers in the target and rebinds every IFUNC slot, both ways (${what})`, async () => {
      const prog =
        key === 'ifn'
          ? exe
          : lab.exe(`ifunc_main_${key}`, {
              sources: ['hard/ifunc_main.c'],
              needs: [key, 'use'],
              relro,
            });
      if (key === 'ifnNosep') {
        assert.deepEqual(loadSegments(lab.lib(key, 2)), SEGMENT_LAYOUTS['noseparate-code'].loads);
        const elf = parseElf(readFileSync(lab.lib(key, 2)));
        const resolver = elf.symtab.find((s) => s.name === 'resolve_sum');
        assert.ok(resolver && resolver.value < 0x1000n, 'a resolver lies in the header page');
      }
      const fix = lab.pack(key, 1, 2);
      if (relro === 'full') {
        // ld.so itself loads version 2 (its resolver calling strchr) and prints what the patched process must.
        const fresh = lab.start(prog, { [key]: 2, use: 1 });
        await expectRound(fresh, 0, expected(2, 1));
        fresh.dispose();
      }
      const t = lab.start(prog, { [key]: 1, use: 1 });
      await expectRound(t, 0, expected(1, 1));

      const r = trigger(String(t.pid), fix, '--json').json;
      // Under full RELRO the new build's own resolver needs strchr's slot filled (by libc's resolver) before it runs.
      assert.deepEqual(
        r.switch.newImports,
        relro === 'full' ? [{ name: 'strchr', version: 'GLIBC_2.2.5', from: 'libc.so.6' }] : [],
      );
      // Under full RELRO ifn_sum's own PLT slot and ifn_local's IRELATIVE are the new build's; under partial RELRO
      // both live in the shared .got.plt and are rebound at the switch, with what the new build's resolvers chose.
      assert.ok(
        r.switch.ifuncs >= (relro === 'full' ? 3 : 0),
        `resolvers run while staging: ${r.switch.ifuncs}`,
      );
      await expectRound(t, t.output().length, expected(2, 1));
      const st = libStatus(t.pid, IFN);
      assert.equal(st.builds.find((b: { live: boolean }) => b.live).source, 'ulp');
      assert.deepEqual(
        [st.oldReferences.slots, st.oldReferences.dataPointers],
        [0, 0],
        'nothing is left on the old build',
      );

      trigger(String(t.pid), fix, '--revert');
      await expectRound(t, t.output().length, expected(1, 1));
      trigger(String(t.pid), fix);
      await expectRound(t, t.output().length, expected(2, 1));
    });
  }

  it('resolves a new import of a libc IFUNC (strchr) by running libc’s resolver in the target', async () => {
    const fix = lab.pack('use', 1, 2);
    const t = lab.start(exe, { ifn: 1, use: 1 });
    await expectRound(t, 0, expected(1, 1));
    const dry = ok(runCli('ulp-trigger', [String(t.pid), fix, '--dry-run', '--json'])).json;
    assert.deepEqual(dry.switch.newImports, [{ name: 'strchr', version: 'GLIBC_2.2.5', from: 'libc.so.6' }]);

    const r = trigger(String(t.pid), fix, '--json').json;
    assert.deepEqual(r.switch.newImports, [{ name: 'strchr', version: 'GLIBC_2.2.5', from: 'libc.so.6' }]);
    assert.ok(r.switch.ifuncs >= 1, 'libc’s strchr resolver ran');
    await expectRound(t, t.output().length, expected(1, 2));
    trigger(String(t.pid), fix, '--revert');
    await expectRound(t, t.output().length, expected(1, 1));
    trigger(String(t.pid), fix);
    await expectRound(t, t.output().length, expected(1, 2));
  });
});
