/**
 * Function pointers in a patched library's writable data
 * (test/fixtures/pointers): the load-time pointers the dynamic loader filled
 * are retargeted to the new build, the one the program replaced is left
 * alone and counted, and a pointer copied into another object's data (the
 * executable's copy of an exported variable) is reported by --status as an
 * old reference.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli, type Run } from '../helpers/cli.js';
import { compile } from '../helpers/compile.js';
import { startTarget, type Target } from '../helpers/target.js';

const SONAME = 'libfp.so.1';
const RELRO = { full: ['-Wl,-z,relro,-z,now'], partial: ['-Wl,-z,relro,-z,lazy'] } as const;

function ok(r: Run): Run {
  assert.equal(r.code, 0, `exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r;
}

type Round = Record<string, string>;

function parse(out: string): Round[] {
  return out
    .split('\n')
    .filter((l) => l.startsWith('round=') && l.includes('exported='))
    .map((l) => Object.fromEntries(l.split(' ').map((kv) => kv.split('=') as [string, string])));
}

async function roundAfter(t: Target, mark: number): Promise<Round> {
  const out = await t.waitFor((o) => parse(o.slice(mark)).length >= 2);
  return parse(out.slice(mark)).at(-1)!;
}

for (const relro of ['full', 'partial'] as const) {
  describe(`function pointers in the shared data of a ${relro} RELRO library`, function () {
    this.timeout(120_000);
    let dir: string;
    let lib: (v: number) => string;
    let exe: string;
    const targets: Target[] = [];
    before(() => {
      dir = mkdtempSync(join(tmpdir(), 'ulp-fp-'));
      lib = (v) => compile({ sources: ['pointers/libfp.c'], out: `libfp-v${v}.so`, flags: ['-shared', '-fPIC', '-O2', `-DFP_VERSION=${v}`, `-Wl,-soname,${SONAME}`, ...RELRO[relro]] });
      mkdirSync(join(dir, 'link'));
      copyFileSync(lib(1), join(dir, 'link', SONAME));
      exe = compile({ sources: ['pointers/fp_main.c'], out: 'fp_main', flags: ['-O2', ...RELRO[relro]], libs: [`-L${join(dir, 'link')}`, `-l:${SONAME}`] });
    });
    after(() => {
      for (const t of targets) t.dispose();
      rmSync(dir, { recursive: true, force: true });
    });

    it('retargets the load-time pointers, keeps the one the program set, reports the copied one', async () => {
      const fix = join(dir, 'fix.ulp');
      const packed = ok(runCli('ulp-pack', [lib(1), lib(2), '-o', fix, '--json'])).json;
      assert.equal(packed.forward.categories.funcptrs.verdict, 'compatible', JSON.stringify(packed.forward.categories.funcptrs));
      mkdirSync(join(dir, 'run'));
      copyFileSync(lib(1), join(dir, 'run', SONAME));
      const t = startTarget([exe], { LD_LIBRARY_PATH: join(dir, 'run') });
      targets.push(t);
      const v1 = await roundAfter(t, 0);
      assert.deepEqual([v1.version, v1.a, v1.b, v1.hook, v1.exported], ['1', '11', '101', '7001', '101']);

      const dry = ok(runCli('ulp-trigger', ['--dry-run', String(t.pid), fix, '--json'])).json;
      assert.deepEqual(dry.switch.pointers, { retargeted: 3, overwritten: 1, current: 0 });

      const applied = ok(runCli('ulp-trigger', [String(t.pid), fix, '--json'])).json;
      // table[0], table[1] and the library's own copy of fp_exported; the hook is the program's.
      assert.deepEqual(applied.switch.pointers, { retargeted: 3, overwritten: 1, current: 0 });
      const v2 = await roundAfter(t, t.output().length);
      assert.deepEqual([v2.version, v2.a, v2.b, v2.hook], ['2', '12', '102', '7001'], 'table calls v2 code; the program hook is kept');
      assert.equal(v2.exported, '101', "the executable's copy still calls v1 code");

      const status = ok(runCli('ulp-trigger', ['--status', String(t.pid), '--json'])).json;
      const fp = status.libraries.find((l: { soname: string }) => l.soname === SONAME);
      assert.equal(fp.oldReferences.dataPointers, 1, JSON.stringify(fp.oldReferences));
      assert.equal(fp.oldReferences.samples[0].holder, '(executable)');
      assert.match(ok(runCli('ulp-trigger', ['--status', String(t.pid)])).stdout, /1 data pointer into code of builds that are not live/);

      const reverted = ok(runCli('ulp-trigger', [String(t.pid), fix, '--revert', '--json'])).json;
      assert.deepEqual(reverted.switch.pointers, { retargeted: 3, overwritten: 1, current: 0 });
      const back = await roundAfter(t, t.output().length);
      assert.deepEqual([back.version, back.a, back.b, back.hook, back.exported], ['1', '11', '101', '7001', '101']);
      const after = ok(runCli('ulp-trigger', ['--status', String(t.pid), '--json'])).json;
      assert.equal(after.libraries.find((l: { soname: string }) => l.soname === SONAME).oldReferences.dataPointers, 0);
      assert.ok(t.alive());
    });
  });
}
