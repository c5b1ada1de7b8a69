/**
 * The pure half of one address per datum (runtime/loader/datarefs.ts): the
 * bias window every displacement reaches from, the choice of a hole in the
 * address space, and the rewrite of a real gcc build's displacements.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parseElf } from '../../../elf/index.js';
import { dataRefMap } from '../../../packer/code/datarefs.js';
import { loadBuild } from '../../../packer/pack.js';
import { parseMaps } from '../../../runtime/maps.js';
import { baseNear, biasWindow, rewriteCode } from '../../../runtime/loader/datarefs.js';
import { compile } from '../../../lab/compile.js';

const GiB2 = 2n ** 31n;

const maps = (text: string) =>
  parseMaps(
    text
      .trim()
      .split('\n')
      .map((l) => l.trim())
      .join('\n'),
  );

describe('one address per datum: placement and rewrite (pure)', () => {
  const refs = {
    region: { start: 0x4000, end: 0x5000 },
    code: [
      { site: 0x1100, end: 0x1104, offset: 0x10 },
      { site: 0x1f00, end: 0x1f05, offset: 0xff0 },
    ],
  };
  const canonical = 0x7f0000100000n;

  it("biasWindow: every displacement fits in int32 exactly at the window's ends", () => {
    const w = biasWindow(refs, canonical)!;
    for (const bias of [w.min, w.max]) {
      for (const r of refs.code) {
        const disp = canonical + BigInt(r.offset) - (bias + BigInt(r.end));
        assert.ok(disp >= -GiB2 && disp < GiB2, `bias 0x${bias.toString(16)}`);
      }
    }
    const outside = (bias: bigint) =>
      refs.code.some((r) => {
        const disp = canonical + BigInt(r.offset) - (bias + BigInt(r.end));
        return disp < -GiB2 || disp >= GiB2;
      });
    assert.ok(outside(w.max + 1n) && outside(w.min - 1n));
    assert.equal(biasWindow({ ...refs, code: [] }, canonical), undefined);
  });

  it("baseNear: the free hole closest to the data, never over a mapping, the heap's growth or the stack", () => {
    const m = maps(`
      555500000000-555500001000 r--p 00000000 fe:00 1 /bin/prog
      555500100000-555500200000 rw-p 00000000 00:00 0 [heap]
      7f00000f0000-7f0000100000 r--p 00000000 fe:00 2 /lib/libx.so
      7f0000100000-7f0000101000 rw-p 00000000 fe:00 2 /lib/libx.so
      7f0000101000-7f0000110000 r--p 00000000 fe:00 3 /lib/liby.so
      7ffff0000000-7ffff0021000 rw-p 00000000 00:00 0 [stack]`);
    const w = biasWindow(refs, canonical)!;
    const a = baseNear(m, 0x5000n, 0n, w, canonical)!;
    assert.equal(a, 0x7f0000110000n, 'right above the last library mapping');
    for (const x of m) assert.ok(a + 0x5000n <= x.start || a >= x.end, 'in a hole');
    // With the space above taken, the hole below the library.
    const full = maps(`
      7f00000f0000-7f0000100000 r--p 00000000 fe:00 2 /lib/libx.so
      7f0000100000-7f0000101000 rw-p 00000000 fe:00 2 /lib/libx.so
      7f0000101000-7ffff0000000 ---p 00000000 00:00 0
      7ffff0000000-7ffff0021000 rw-p 00000000 00:00 0 [stack]`);
    assert.equal(baseNear(full, 0x5000n, 0n, w, canonical), 0x7f00000eb000n);
    // Nothing free within ±2 GiB: no base.
    const walled = maps(`
      7eff00000000-7f00000f0000 ---p 00000000 00:00 0
      7f00000f0000-7f0000101000 r--p 00000000 fe:00 2 /lib/libx.so
      7f0000101000-7f0100000000 ---p 00000000 00:00 0`);
    assert.equal(baseNear(walled, 0x5000n, 0n, w, canonical), undefined);
    // Only the upper half of the hole above the heap, and nothing in the 256 MiB below the stack.
    const low = maps(`
      555400000000-555500100000 r--p 00000000 fe:00 1 /bin/prog
      555500100000-555500200000 rw-p 00000000 00:00 0 [heap]
      555580200000-7ffff0000000 ---p 00000000 00:00 0`);
    const nearHeap = { min: 0x555500000000n, max: 0x555600000000n };
    assert.equal(baseNear(low, 0x5000n, 0n, nearHeap, 0x555500200000n), 0x555540200000n);
    const stackOnly = maps('7ffff0000000-7ffff0021000 rw-p 00000000 00:00 0 [stack]');
    const a2 = baseNear(
      stackOnly,
      0x5000n,
      0n,
      { min: 0x7fffe0000000n, max: 0x7fffefffb000n },
      0x7ffff0000000n,
    );
    assert.equal(a2, undefined, 'within 256 MiB of the stack');
  });

  it('rewriteCode: every listed operand of a real build reaches the canonical copy, nothing else changes', () => {
    const path = compile({
      sources: ['datarefs/libident.c'],
      out: 'libident.so.1',
      flags: [
        '-shared',
        '-fPIC',
        '-O2',
        '-DVERSION=1',
        '-Wl,-soname,libident.so.1',
        '-Wl,--build-id',
        '-Wl,-z,relro,-z,now',
        '-pthread',
      ],
    });
    const bytes = readFileSync(path);
    const elf = parseElf(bytes);
    const map = dataRefMap(loadBuild('new', path))!;
    const staged = { region: map.region, code: map.code };
    const bias = 0x7f0000200000n;
    const region = 0x7f0000100000n + 0x4000n;
    const out = rewriteCode(bytes, elf, staged, bias, region);
    const text = elf.loadSegments.find((p) => (p.flags & 1) !== 0)!;
    const fileOf = (v: number) => Number(text.offset) + v - Number(text.vaddr);
    let changed = 0;
    for (let i = 0; i < bytes.length; i++) if (bytes[i] !== out[i]) changed++;
    assert.ok(changed > 0 && changed <= map.code.length * 4);
    for (const r of map.code) {
      const disp = out.readInt32LE(fileOf(r.site));
      assert.equal(bias + BigInt(r.end) + BigInt(disp), region + BigInt(r.offset));
    }
    // A map that does not fit the build is refused, and so is a base out of reach.
    const wrong = { region: map.region, code: [{ ...map.code[0]!, offset: map.code[0]!.offset + 8 }] };
    assert.throws(
      () => rewriteCode(bytes, elf, wrong, bias, region),
      (e: { code?: string }) => e.code === 'LOADER_DATAREFS_MISMATCH',
    );
    assert.throws(
      () => rewriteCode(bytes, elf, staged, bias + 4n * GiB2, region),
      (e: { code?: string }) => e.code === 'LOADER_DATAREFS_OUT_OF_REACH',
    );
  });
});
