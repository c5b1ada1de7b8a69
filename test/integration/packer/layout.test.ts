/**
 * The layout check (packer/analyze/layout.ts) on gcc builds of one library
 * whose heap struct is reached only through an opaque handle: a field added
 * in the middle, one added at the end, and a code-only fix, each stripped
 * (evidence from the code alone) and with symbols and DWARF (-g).
 */
import assert from 'node:assert/strict';
import { compile } from '../../../lab/compile.js';
import { codes, ulpPack } from '../../../lab/packer/run.js';

type Variant = 'BASE' | 'FIELD_MIDDLE' | 'FIELD_END' | 'CODE_ONLY';

function libshape(variant: Variant, debug: boolean): string {
  const flags = [
    '-shared',
    '-fPIC',
    '-O2',
    '-Wl,-soname,libshape.so.1',
    '-Wl,--build-id',
    '-Wl,-z,relro,-z,now',
    `-D${variant}`,
    ...(debug ? ['-g'] : ['-s']),
  ];
  return compile({
    sources: ['layout/libshape.c'],
    out: `libshape-${variant}-${debug ? 'g' : 's'}.so`,
    flags,
  });
}

function check(from: Variant, to: Variant, debug: boolean) {
  const r = ulpPack([libshape(from, debug), libshape(to, debug), '--check', '--json']);
  return { r, f: r.json?.forward, b: r.json?.reverse };
}

for (const debug of [false, true]) {
  describe(`ulp-pack layout check, ${debug ? 'with symbols and -g' : 'stripped'}`, function () {
    this.timeout(120_000);

    it('a field inserted in the middle of a heap struct: refused, naming the functions and the shifted offsets', () => {
      const { r, f, b } = check('BASE', 'FIELD_MIDDLE', debug);
      assert.equal(r.code, 2, r.stderr);
      assert.equal(f.verdict, 'incompatible');
      assert.equal(b.verdict, 'incompatible', 'the revert is refused for the same reason');
      const moved = f.categories.layout.findings.find(
        (x: { code: string }) => x.code === 'LAYOUT_FIELD_MOVED',
      );
      assert.ok(moved, JSON.stringify(f.categories.layout));
      // Every later field moved by sizeof(long): timeout 0x40 -> 0x48 in the getter, sent 0x20 -> 0x28...
      const shifts = moved.details.shifts as Array<{ function: string; from: string; to: string }>;
      assert.ok(shifts.length > 0);
      for (const s of shifts) assert.equal(parseInt(s.to, 16) - parseInt(s.from, 16), 8, JSON.stringify(s));
      assert.ok(
        moved.symbols.includes('conn_timeout') || moved.symbols.includes('conn_sent'),
        moved.symbols.join(','),
      );
      assert.match(r.stdout, /LAYOUT_FIELD_MOVED/);
      // With DWARF the structure layouts decide, and say so; the code's evidence is listed beside them.
      const dwarf = f.categories.layout.findings.find(
        (x: { code: string }) => x.code === 'LAYOUT_STRUCT_CHANGED',
      );
      if (debug) {
        assert.match(dwarf?.symbols?.[0] ?? '', /conn/);
        assert.equal(dwarf.severity, 'error');
        assert.equal(moved.severity, 'info');
        assert.match(f.categories.layout.summary, /^decided from DWARF/);
      } else {
        assert.equal(dwarf, undefined);
        assert.equal(moved.severity, 'error');
      }
    });

    it('a field appended to a heap struct: refused because objects grow (the allocation size changed)', () => {
      const { r, f } = check('BASE', 'FIELD_END', debug);
      assert.equal(r.code, 2, r.stderr);
      const grew = f.categories.layout.findings.find(
        (x: { code: string }) => x.code === 'LAYOUT_SIZE_CHANGED',
      );
      assert.ok(grew, JSON.stringify(f.categories.layout));
      assert.deepEqual(grew.symbols, ['conn_new']);
      assert.ok(
        grew.details.sizes.some((s: { from: number; to: number }) => s.to > s.from),
        JSON.stringify(grew.details),
      );
    });

    it('a code-only fix: compatible, the layout unchanged', () => {
      const { r, f } = check('BASE', 'CODE_ONLY', debug);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(f.verdict, 'compatible');
      assert.equal(f.categories.layout.verdict, 'unchanged', JSON.stringify(f.categories.layout));
      assert.ok(!codes(f).some((c) => c.startsWith('layout:')));
    });
  });
}
