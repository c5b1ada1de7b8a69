/**
 * Function pointers in a patched library's writable data
 * (test/fixtures/pointers): the load-time pointers the dynamic loader filled
 * are retargeted to the new build, the one the program replaced is left
 * alone and counted, and a pointer copied into another object's data (the
 * executable's copy of an exported variable) is reported by --status as an
 * old reference, and runs the new code through the old entry's redirect.
 */
import assert from 'node:assert/strict';
import { runCli } from '../../../lab/cli.js';
import { HardLab, linesAfter, ok, type Line } from '../../../lab/hard-lab.js';
import type { Target } from '../../../lab/target.js';

const SONAME = 'libfp.so.1';

async function roundAfter(t: Target, mark: number): Promise<Line> {
  return (await linesAfter(t, mark, (ls) => ls.length >= 2)).at(-1)!;
}

for (const relro of ['full', 'partial'] as const) {
  describe(`function pointers in the shared data of a ${relro} RELRO library`, function () {
    this.timeout(120_000);
    const lab = new HardLab({ fp: { soname: SONAME, sources: ['pointers/libfp.c'], relro } }, `fp-${relro}`);
    after(() => lab.dispose());

    it('retargets the load-time pointers, keeps the one the program set, reports the copied one', async () => {
      const fix = lab.bundlePath('fp', 1, 2);
      const packed = ok(runCli('ulp-pack', [lab.lib('fp', 1), lab.lib('fp', 2), '-o', fix, '--json'])).json;
      assert.equal(
        packed.forward.categories.funcptrs.verdict,
        'compatible',
        JSON.stringify(packed.forward.categories.funcptrs),
      );
      const t = lab.start(lab.exe('fp_main', { sources: ['pointers/fp_main.c'], relro, needs: ['fp'] }), {
        fp: 1,
      });
      const v1 = await roundAfter(t, 0);
      assert.deepEqual([v1.version, v1.a, v1.b, v1.hook, v1.exported], ['1', '11', '101', '7001', '101']);

      const dry = ok(runCli('ulp-trigger', ['--dry-run', String(t.pid), fix, '--json'])).json;
      assert.deepEqual(dry.switch.pointers, { retargeted: 3, overwritten: 1, current: 0 });

      const applied = ok(runCli('ulp-trigger', [String(t.pid), fix, '--json'])).json;
      // table[0], table[1] and the library's own copy of fp_exported; the hook is the program's.
      assert.deepEqual(applied.switch.pointers, { retargeted: 3, overwritten: 1, current: 0 });
      const v2 = await roundAfter(t, t.output().length);
      assert.deepEqual(
        [v2.version, v2.a, v2.b, v2.hook],
        ['2', '12', '102', '7001'],
        'table calls v2 code; the program hook is kept',
      );
      // The executable's copy still holds v1's address; the jump at v1's entry (redirects.ts) runs v2 there.
      assert.equal(
        v2.exported,
        '102',
        "the executable's copy of the pointer reaches v2 code through the entry redirect",
      );
      assert.equal(applied.outcome, 'applied');

      const status = ok(runCli('ulp-trigger', ['--status', String(t.pid), '--json'])).json;
      const fp = status.libraries.find((l: { soname: string }) => l.soname === SONAME);
      assert.equal(fp.oldReferences.dataPointers, 1, JSON.stringify(fp.oldReferences));
      assert.equal(fp.oldReferences.samples[0].holder, '(executable)');
      assert.match(
        ok(runCli('ulp-trigger', ['--status', String(t.pid)])).stdout,
        /1 data pointer into code of builds that are not live/,
      );

      const reverted = ok(runCli('ulp-trigger', [String(t.pid), fix, '--revert', '--json'])).json;
      assert.deepEqual(reverted.switch.pointers, { retargeted: 3, overwritten: 1, current: 0 });
      const back = await roundAfter(t, t.output().length);
      assert.deepEqual(
        [back.version, back.a, back.b, back.hook, back.exported],
        ['1', '11', '101', '7001', '101'],
      );
      const after = ok(runCli('ulp-trigger', ['--status', String(t.pid), '--json'])).json;
      assert.equal(
        after.libraries.find((l: { soname: string }) => l.soname === SONAME).oldReferences.dataPointers,
        0,
      );
      assert.ok(t.alive());
    });
  });
}
