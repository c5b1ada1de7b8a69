/**
 * Function pointers in the shared writable region (runtime/loader/code-pointers.ts)
 * on hand-built builds: which RELATIVE sites are load-time pointers into a
 * build's code, what each must hold once the target is live, and how a word
 * the program overwrote is told apart.
 */
import assert from 'node:assert/strict';
import { RelocType } from '../../../../elf/types.js';
import { classifyPointer, collectCodePointerSites } from '../../../../runtime/loader/code-pointers.js';
import { ownRegion } from '../../../../runtime/loader/region.js';
import { family, placed, syntheticElf, type RelocSpec } from '../../../../lab/process-model.js';

const V1 = 0x7f00_0000_0000n;
const V2 = 0x7f00_0010_0000n;

/** Code below 0x3000, writable from 0x4000 with RELRO up to `regionStart`. */
function build(regionStart: bigint, relocs: RelocSpec[], words: Record<string, bigint> = {}) {
  return syntheticElf({
    soname: 'libcb.so.1',
    text: { vaddr: 0n, size: 0x3000n },
    data: { vaddr: 0x4000n, size: regionStart - 0x4000n + 0x1000n },
    relro: { vaddr: 0x4000n, size: regionStart - 0x4000n },
    relocs,
    words,
  });
}

describe('code pointers in the shared region', () => {
  it('retargets the load-time pointers of every build, at the same offset in each region', () => {
    // v2's code grew a page: its region starts at 0x6000 instead of 0x5000, laid out alike.
    const v1 = placed(
      build(0x5000n, [
        { offset: 0x5008n, type: RelocType.RELATIVE, addend: 0x1100n }, // a callback table entry
        { offset: 0x5010n, type: RelocType.RELATIVE, addend: 0x5100n }, // a pointer to data, not code
        { offset: 0x4008n, type: RelocType.RELATIVE, addend: 0x1200n }, // under RELRO: each build's own word
      ]),
      { bias: V1 },
    );
    const v2 = placed(
      build(0x6000n, [
        { offset: 0x6008n, type: RelocType.RELATIVE, addend: 0x1180n },
        { offset: 0x6010n, type: RelocType.RELATIVE, addend: 0x6100n },
        { offset: 0x6018n, type: RelocType.RELATIVE, addend: 0x1300n }, // new in v2: no build's load-time value to recognise
        { offset: 0x4008n, type: RelocType.RELATIVE, addend: 0x1280n },
      ]),
      { bias: V2, source: 'ulp' },
    );
    const fam = family(v1, v2);
    const region = ownRegion(v1.elf)!;
    const sites = collectCodePointerSites(fam, v2, region);
    assert.deepEqual(sites, [
      { addr: V1 + 0x5008n, loadTime: [{ build: v1, value: V1 + 0x1100n }], targetValue: V2 + 0x1180n },
    ]);

    const [site] = sites;
    assert.deepEqual(classifyPointer(site!, V1 + 0x1100n), { kind: 'load-time', build: v1 });
    assert.deepEqual(classifyPointer(site!, V2 + 0x1180n), { kind: 'target' });
    assert.deepEqual(
      classifyPointer(site!, 0x5555_0000_1000n),
      { kind: 'overwritten' },
      'the program installed its own callback: left alone',
    );

    // Reverting: the same site, seen from v1 as the target.
    assert.deepEqual(collectCodePointerSites(fam, v1, region), [
      { addr: V1 + 0x5008n, loadTime: [{ build: v2, value: V2 + 0x1180n }], targetValue: V1 + 0x1100n },
    ]);
  });

  it('reads a RELR site’s addend from the file, where the word in place still holds it', () => {
    const v1 = placed(
      build(0x5000n, [{ offset: 0x5008n, type: RelocType.RELATIVE, table: 'relr' }], { '0x5008': 0x1100n }),
      { bias: V1 },
    );
    const v2 = placed(
      build(0x5000n, [{ offset: 0x5008n, type: RelocType.RELATIVE, table: 'relr' }], { '0x5008': 0x1140n }),
      { bias: V2, source: 'ulp' },
    );
    const sites = collectCodePointerSites(family(v1, v2), v2, ownRegion(v1.elf)!);
    assert.deepEqual(
      sites.map((s) => [s.loadTime[0]!.value, s.targetValue]),
      [[V1 + 0x1100n, V2 + 0x1140n]],
    );
  });

  it('a build without a shared region has no such sites', () => {
    const noData = placed(syntheticElf({ soname: 'libcb.so.1', text: { vaddr: 0n, size: 0x3000n } }), {
      bias: V1,
    });
    const v2 = placed(build(0x5000n, [{ offset: 0x5008n, type: RelocType.RELATIVE, addend: 0x1100n }]), {
      bias: V2,
    });
    assert.deepEqual(collectCodePointerSites(family(v2, noData), noData, ownRegion(v2.elf)!), []);
  });
});
