/**
 * The shared writable region (runtime/loader/region.ts) on hand-built
 * builds: where each build keeps it, where a datum of any build lives (the
 * canonical copy), which builds can alias it, and the layouts refused.
 */
import assert from 'node:assert/strict';
import { isUlpError } from '../../../../common/errors.js';
import { PT_DYNAMIC } from '../../../../elf/index.js';
import {
  aliasable,
  inRegion,
  ownRegion,
  refuseWritableDynamic,
  regionOf,
  sharedAddress,
} from '../../../../runtime/loader/region.js';
import { family, placed, syntheticElf } from '../../../../lab/process-model.js';

const V1 = 0x7f00_0000_0000n;
const V2 = 0x7f00_0010_0000n;

/** Code, then a writable segment at `data` whose first `relro` bytes become read-only after RELRO. */
const build = (data: bigint, size: bigint, relro = 0n) =>
  syntheticElf({
    soname: 'libr.so.1',
    text: { vaddr: 0n, size: 0x3000n },
    data: { vaddr: data, size },
    ...(relro ? { relro: { vaddr: data, size: relro } } : {}),
  });

describe('the shared writable region', () => {
  it('is what stays writable after RELRO, in whole pages', () => {
    assert.deepEqual(ownRegion(build(0x4000n, 0x2000n, 0x1000n)), { start: 0x5000n, end: 0x6000n });
    assert.deepEqual(
      ownRegion(build(0x4000n, 0x1800n)),
      { start: 0x4000n, end: 0x6000n },
      'no RELRO: the whole segment, its end rounded up',
    );
    assert.equal(ownRegion(build(0x4000n, 0x1000n, 0x1000n)), undefined, 'all of it read-only after RELRO');
    assert.equal(ownRegion(syntheticElf({ text: { vaddr: 0n, size: 0x1000n } })), undefined);
  });

  it('a datum of any build lives in the canonical build’s copy, at the same offset from the region start', () => {
    const v1 = placed(build(0x4000n, 0x2000n, 0x1000n), { bias: V1 });
    const v2 = placed(build(0x6000n, 0x2000n, 0x1000n), { bias: V2 }); // its code grew: the region lies two pages higher
    const fam = family(v1, v2);
    assert.equal(sharedAddress(fam, v2.elf, 0x7010n), V1 + 0x5010n);
    assert.equal(sharedAddress(fam, v1.elf, 0x5010n), V1 + 0x5010n);
    assert.equal(sharedAddress(fam, v2.elf, 0x6010n), undefined, 'under RELRO each build keeps its own');
    assert.equal(inRegion(ownRegion(v2.elf), 0x7fffn), true);
    assert.equal(inRegion(ownRegion(v2.elf), 0x8000n), false);
  });

  it('two builds can alias it when it has the same length, wherever each places it', () => {
    assert.equal(aliasable({ start: 0x5000n, end: 0x6000n }, { start: 0x7000n, end: 0x8000n }), true);
    assert.equal(aliasable({ start: 0x5000n, end: 0x6000n }, { start: 0x5000n, end: 0x7000n }), false);
    assert.equal(aliasable(undefined, undefined), true, 'neither has one: nothing to share');
    assert.equal(aliasable({ start: 0x5000n, end: 0x6000n }, undefined), false);
  });

  it('refuses an object whose writable pages are split by RELRO into two regions', () => {
    // RELRO in the middle of the writable segment leaves writable pages on both sides.
    const split = syntheticElf({
      soname: 'libsplit.so',
      text: { vaddr: 0n, size: 0x1000n },
      data: { vaddr: 0x2000n, size: 0x3000n },
      relro: { vaddr: 0x3000n, size: 0x1000n },
    });
    assert.throws(
      () => regionOf(split, 'libsplit.so'),
      (e: unknown) => isUlpError(e) && e.code === 'LOADER_LAYOUT',
    );
    assert.equal(ownRegion(split), undefined);
  });

  it('refuses an object whose dynamic section stays writable (-z norelro), and only that one', () => {
    const withDynamic = (relro: boolean) => {
      const elf = build(0x4000n, 0x2000n, relro ? 0x1000n : 0n);
      const dynamic = { ...elf.loadSegments[1]!, type: PT_DYNAMIC, vaddr: 0x4100n, memsz: 0x1b0n };
      return { ...elf, programHeaders: [...elf.programHeaders, dynamic] };
    };
    assert.throws(
      () => refuseWritableDynamic(withDynamic(false), 'libr.so.1'),
      (e: unknown) => isUlpError(e) && e.code === 'LOADER_LAYOUT' && /-z norelro/.test(e.message),
    );
    assert.doesNotThrow(() => refuseWritableDynamic(withDynamic(true), 'libr.so.1'), 'under RELRO');
    assert.doesNotThrow(() => refuseWritableDynamic(build(0x4000n, 0x2000n), 'libr.so.1'), 'no PT_DYNAMIC');
  });
});
