/**
 * The relink's classification (runtime/loader/relink.ts) on a hand-built
 * process: an executable importing a library, the library's loader-mapped
 * build v1 and a staged build v2 whose functions moved. Each case states
 * what a slot holds and what the switch must make of it; the integration
 * tests (test/integration/trigger) run the same rules on compiled programs.
 */
import assert from 'node:assert/strict';
import { RelocType } from '../../../../elf/types.js';
import { STT_FUNC, STT_GNU_IFUNC, STT_OBJECT } from '../../../../elf/constants.js';
import {
  classifySlot,
  collectSlots,
  countByBuild,
  ifuncResolvers,
  slotBuild,
  type ClassifyContext,
  type Slot,
} from '../../../../runtime/loader/relink.js';
import { ownRegion } from '../../../../runtime/loader/region.js';
import { family, placed, syntheticElf, type ElfSpec } from '../../../../lab/process-model.js';

const V1 = 0x7f00_0000_0000n;
const V2 = 0x7f00_0010_0000n;
const EXE = 0x5555_5555_4000n;
const OTHER = 0x7f00_0020_0000n;

/** Both builds: code below 0x3000, RELRO .got at 0x4000, the shared region (.data/.bss) from 0x5000. */
function lib(version: 1 | 2): ElfSpec {
  return {
    soname: 'libx.so.1',
    buildId: String(version).repeat(40),
    text: { vaddr: 0n, size: 0x3000n },
    data: { vaddr: 0x4000n, size: 0x2000n },
    relro: { vaddr: 0x4000n, size: 0x1000n },
    symbols: [
      { name: 'f', value: version === 1 ? 0x1100n : 0x1180n },
      ...(version === 1 ? [{ name: 'g', value: 0x1200n }] : []),
      { name: 'h', value: 0x1300n },
      { name: 'pick', value: 0x1400n, type: version === 2 ? STT_GNU_IFUNC : STT_FUNC },
      { name: 'd', value: 0x5010n, type: STT_OBJECT },
    ],
    relocs: [
      // The library calls its own export through its PLT (RELRO .got: outside the shared region).
      { offset: 0x4010n, type: RelocType.JUMP_SLOT, symbol: 'f' },
      // The address of its own datum, in a .data word: inside the shared region.
      { offset: 0x5020n, type: RelocType.R64, symbol: 'd' },
    ],
  };
}

const exeSpec: ElfSpec = {
  text: { vaddr: 0n, size: 0x2000n },
  data: { vaddr: 0x3000n, size: 0x1000n },
  needed: ['libx.so.1'],
  relocs: [
    { offset: 0x3008n, type: RelocType.GLOB_DAT, symbol: 'f' },
    { offset: 0x3010n, type: RelocType.JUMP_SLOT, symbol: 'h' },
    { offset: 0x3018n, type: RelocType.GLOB_DAT, symbol: 'g' },
    { offset: 0x3020n, type: RelocType.R64, symbol: 'f', addend: 8n },
    { offset: 0x3028n, type: RelocType.GLOB_DAT, symbol: 'pick' },
    { offset: 0x3030n, type: RelocType.GLOB_DAT, symbol: 'strlen' },
  ],
};

function world() {
  const exe = placed(syntheticElf(exeSpec), { name: '', bias: EXE });
  const v1 = placed(syntheticElf(lib(1)), { name: '/usr/lib/libx.so.1', bias: V1 });
  const v2 = placed(syntheticElf(lib(2)), { name: '/memfd:ulp:…', bias: V2, source: 'ulp' });
  const libc = placed(
    syntheticElf({
      soname: 'libc.so.6',
      text: { vaddr: 0n, size: 0x1000n },
      symbols: [
        { name: 'strlen', value: 0x500n },
        { name: 'h', value: 0x600n },
      ],
    }),
    { bias: OTHER },
  );
  const fam = family(v1, v2);
  const region = ownRegion(v1.elf)!;
  const ctx: ClassifyContext = { family: fam, target: v2, region, scope: [exe, v1, libc] };
  const slots = collectSlots([exe, v1, libc, v2], fam, region);
  const slot = (owner: typeof exe, offset: bigint): Slot => {
    const s = slots.find((x) => x.owner === owner && x.addr === owner.bias + offset);
    assert.ok(s, `a slot at 0x${offset.toString(16)} of ${owner.name || 'the executable'}`);
    return s;
  };
  return { exe, v1, v2, libc, fam, region, ctx, slots, slot };
}

describe('relink: which slots may hold the library and what each must become', () => {
  it('collects the symbol slots naming the library’s exports, a shared-region site once, and nothing about other libraries', () => {
    const { exe, v1, v2, slots, region } = world();
    assert.deepEqual(region, { start: 0x5000n, end: 0x6000n });
    const seen = slots.map(
      (s) =>
        `${s.owner === exe ? 'exe' : s.owner === v1 ? 'v1' : s.owner === v2 ? 'v2' : '?'}@0x${(s.addr - s.owner.bias).toString(16)}:${s.ref.name}`,
    );
    assert.deepEqual(
      seen.sort(),
      [
        'exe@0x3008:f',
        'exe@0x3010:h',
        'exe@0x3018:g',
        'exe@0x3020:f',
        'exe@0x3028:pick',
        'v1@0x4010:f',
        'v1@0x5020:d',
        'v2@0x4010:f',
      ].sort(),
    );
  });

  it('a slot bound to the old build’s function is stale and gets the target’s address; one bound to the target is done', () => {
    const { exe, ctx, slot } = world();
    assert.deepEqual(classifySlot(slot(exe, 0x3008n), V1 + 0x1100n, ctx), {
      kind: 'stale',
      build: ctx.family.canonical,
      value: V2 + 0x1180n,
    });
    assert.deepEqual(classifySlot(slot(exe, 0x3008n), V2 + 0x1180n, ctx), { kind: 'target' });
  });

  it('keeps the addend of an R_X86_64_64 slot', () => {
    const { exe, ctx, slot } = world();
    assert.deepEqual(classifySlot(slot(exe, 0x3020n), V1 + 0x1100n + 8n, ctx), {
      kind: 'stale',
      build: ctx.family.canonical,
      value: V2 + 0x1180n + 8n,
    });
    assert.deepEqual(
      classifySlot(slot(exe, 0x3020n), V1 + 0x1100n, ctx),
      { kind: 'unmatched', build: ctx.family.canonical },
      'without its addend the value is no symbol address',
    );
  });

  it('a value inside the shared region is data every build shares: nothing to do', () => {
    const { v1, ctx, slot } = world();
    assert.deepEqual(classifySlot(slot(v1, 0x5020n), V1 + 0x5010n, ctx), { kind: 'shared-data' });
  });

  it('a value in the old build’s code that is not the symbol (a PLT stub, an IFUNC choice) is left alone and reported', () => {
    const { exe, ctx, slot } = world();
    assert.deepEqual(classifySlot(slot(exe, 0x3008n), V1 + 0x2000n, ctx), {
      kind: 'unmatched',
      build: ctx.family.canonical,
    });
  });

  it('a symbol the target lacks: missing for another object’s slot, not a residue for the old build’s own', () => {
    const { exe, v1, ctx, slot } = world();
    assert.deepEqual(classifySlot(slot(exe, 0x3018n), V1 + 0x1200n, ctx), { kind: 'missing', build: v1 });
    const own: Slot = {
      ...slot(v1, 0x4010n),
      ref: { name: 'g' },
      reloc: { ...slot(v1, 0x4010n).reloc, symbol: v1.elf.lookup('g')! },
    };
    assert.deepEqual(classifySlot(own, V1 + 0x1200n, ctx), { kind: 'other' });
  });

  it('an unbound lazy slot pointing back into its owner’s PLT is bound now when ld.so would bind it into the library', () => {
    const { exe, ctx, slot } = world();
    const plt = EXE + 0x1030n;
    assert.deepEqual(classifySlot(slot(exe, 0x3010n), plt, ctx), { kind: 'lazy', value: V2 + 0x1300n });
    // libc comes first in scope and defines h too: ld.so would bind it there, so it is not the library's.
    const interposed = { ...ctx, scope: [ctx.scope[0]!, ctx.scope[2]!, ctx.scope[1]!] };
    assert.deepEqual(classifySlot(slot(exe, 0x3010n), plt, interposed), { kind: 'other' });
  });

  it('a slot whose value lies outside every build is not the library’s business', () => {
    const { exe, ctx, slot } = world();
    assert.deepEqual(classifySlot(slot(exe, 0x3008n), OTHER + 0x500n, ctx), { kind: 'other' });
    assert.deepEqual(classifySlot(slot(exe, 0x3008n), 0n, ctx), { kind: 'other' });
  });

  it('a target IFUNC: the resolver’s choice when it was asked, missing otherwise', () => {
    const { exe, v1, v2, ctx, slot, slots } = world();
    const s = slot(exe, 0x3028n);
    assert.deepEqual(ifuncResolvers(slots, v2), [{ key: 'pick@', resolver: V2 + 0x1400n }]);
    assert.deepEqual(classifySlot(s, V1 + 0x1400n, ctx), { kind: 'missing', build: v1 });
    assert.deepEqual(classifySlot(s, V1 + 0x1400n, { ...ctx, ifuncs: new Map([['pick@', V2 + 0x1450n]]) }), {
      kind: 'stale',
      build: v1,
      value: V2 + 0x1450n,
    });
  });

  it('the live build is the one other objects’ slots point at; a build’s own slots do not vote', () => {
    const { exe, v1, v2, fam, slot } = world();
    assert.equal(slotBuild(slot(exe, 0x3008n), V2 + 0x1180n, fam), v2);
    assert.equal(slotBuild(slot(exe, 0x3008n), V1 + 0x2000n, fam), undefined);
    const votes = [slot(exe, 0x3008n), slot(exe, 0x3020n), slot(v1, 0x4010n), slot(v2, 0x4010n)];
    const counts = countByBuild(votes, [V2 + 0x1180n, V1 + 0x1108n, V1 + 0x1100n, V2 + 0x1180n], fam);
    assert.deepEqual([...counts].map(([b, n]) => [b === v1 ? 'v1' : 'v2', n]).sort(), [
      ['v1', 1],
      ['v2', 1],
    ]);
  });
});
