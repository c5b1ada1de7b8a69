/**
 * A writable region that moves by whole pages: the data rules compare it
 * relative to each build's region start. gcc pairs of
 * test/fixtures/packer/libfix.c where the new build grows .rodata by 8 KiB
 * (PAD_RODATA), which places its writable segment two pages further on.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseElf, writableRegion } from '../../../elf/index.js';
import { readBundleFile } from '../../../patches/index.js';
import { libfix, type Variant } from '../../../lab/packer/fixtures.js';
import { codes, tempDir, ulpPack, type Run } from '../../../lab/packer/run.js';

const dir = tempDir();
after(() => dir.dispose());

let n = 0;
function packPair(a: Variant, b: Variant): Run & { out: string } {
  const out = join(dir.path, `region-${++n}.ulp`);
  return { ...ulpPack([libfix(a), libfix(b), '-o', out, '--json']), out };
}

function regionOf(v: Variant) {
  const r = writableRegion(parseElf(readFileSync(libfix(v))))!;
  return { start: `0x${r.start.toString(16)}`, end: `0x${r.end.toString(16)}` };
}

const PAD = 'PAD_RODATA=8192';

describe('ulp-pack: a writable region moved by whole pages', () => {
  for (const relro of ['full', 'partial'] as const) {
    for (const stripped of [false, true]) {
      it(`${relro} RELRO, ${stripped ? 'stripped' : 'with symbols'}: compatible both ways, the move reported with both regions and recorded in the bundle`, () => {
        const oldV: Variant = { relro, stripped };
        const newV: Variant = { relro, stripped, defines: [PAD, 'COMPUTE_ADD=2'] };
        const ra = regionOf(oldV);
        const rb = regionOf(newV);
        // The premise: the fixture really moves the region, by whole pages, keeping its size.
        assert.notEqual(ra.start, rb.start, 'the padded build has its region elsewhere');
        assert.equal(BigInt(ra.end) - BigInt(ra.start), BigInt(rb.end) - BigInt(rb.start));

        const r = packPair(oldV, newV);
        assert.equal(r.code, 0, r.stderr + r.stdout);
        assert.ok(existsSync(r.out));
        for (const [report, from, to] of [
          [r.json.forward, ra, rb],
          [r.json.reverse, rb, ra],
        ] as const) {
          assert.equal(report.verdict, 'compatible', codes(report).join(', '));
          const found = codes(report);
          assert.ok(
            !found.some(
              (c) => c.startsWith('init:') || (c.startsWith('data:') && c !== 'data:DATA_REGION_MOVED'),
            ),
            `only the move is reported for the data: ${found.join(', ')}`,
          );
          const moved = report.categories.data.findings.find(
            (f: { code: string }) => f.code === 'DATA_REGION_MOVED',
          );
          assert.equal(moved.severity, 'info');
          assert.deepEqual(moved.details, { from, to });
          assert.equal(report.categories.init.verdict, 'unchanged');
          assert.deepEqual(report.writable.to, to);
          assert.equal(report.writable.start, from.start);
        }
        // Code referring to the same datum compares equal although its address moved; stripped, crt's
        // __do_global_dtors_aux (the FINI_ARRAY entry, checked above) reads an unnamed .bss byte.
        assert.deepEqual(r.json.forward.functions.changed, ['fix_compute', 'fix_name']);
        if (stripped)
          assert.deepEqual(r.json.forward.functions.unnamedChanged, {
            from: { count: 0, bytes: 0 },
            to: { count: 0, bytes: 0 },
          });

        const m = readBundleFile(r.out).manifest;
        assert.deepEqual(m.forward.report.writable?.to, rb);
        assert.deepEqual(m.reverse.report.writable?.to, ra);
        // Sites are paired by region offset: the same sites as a pair that does not move.
        const fixed = packPair(oldV, { relro, stripped, defines: ['COMPUTE_ADD=2'] });
        assert.equal(fixed.code, 0, fixed.stderr);
        const types = (sites: Array<{ typeName: string }>) => sites.map((s) => s.typeName).sort();
        assert.deepEqual(types(m.forward.report.writable!.sites), types(fixed.json.forward.writable.sites));
        assert.ok(m.forward.report.writable!.sites.length > 0);
      });
    }

    it(`${relro} RELRO: a moved region that also changes size is refused`, () => {
      const r = packPair({ relro }, { relro, defines: [PAD, 'BUFFER_SIZE=5000'] });
      assert.equal(r.code, 2, r.stderr + r.stdout);
      assert.equal(r.json.output, null);
      assert.ok(!existsSync(r.out));
      const found = codes(r.json.forward);
      assert.ok(found.includes('data:DATA_REGION_CHANGED'), found.join(', '));
      assert.ok(!found.includes('data:DATA_REGION_MOVED'), 'a region that differs is not called moved');
    });

    it(`${relro} RELRO: a moved region whose variable changes its offset inside it is refused`, () => {
      const r = packPair({ relro }, { relro, defines: [PAD, 'EXTRA_GLOBAL'] });
      assert.equal(r.code, 2, r.stderr + r.stdout);
      const found = codes(r.json.forward);
      assert.ok(found.includes('data:DATA_SYMBOL_MOVED'), found.join(', '));
      assert.ok(
        !found.includes('data:DATA_REGION_CHANGED'),
        `the region keeps its size: ${found.join(', ')}`,
      );
      const moved = r.json.forward.categories.data.findings.find(
        (f: { code: string }) => f.code === 'DATA_SYMBOL_MOVED',
      );
      assert.deepEqual(moved.symbols, ['limit']);
      assert.match(moved.message, /region\+0x[0-9a-f]+ -> region\+0x[0-9a-f]+/);
    });
  }
});
