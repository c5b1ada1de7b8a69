/**
 * The pure planning of a build whose writable region lies at another vaddr
 * than the canonical build's (runtime/loader/region.ts, relocate.ts,
 * code-pointers.ts, relink.ts), on the gcc builds of
 * test/fixtures/region/libmoved.c, without a process: every address the
 * staged build is given into its region must be the canonical copy's, at
 * the same offset from the region start.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parseElf, RelocType, type ElfObject } from '../../../elf/index.js';
import { collectCodePointerSites } from '../../../runtime/loader/code-pointers.js';
import type { Family, ProcessObject } from '../../../runtime/loader/model.js';
import { aliasable, inRegion, ownRegion, sharedAddress } from '../../../runtime/loader/region.js';
import { classifySlot, collectSlots, slotBuild } from '../../../runtime/loader/relink.js';
import { planStage, shiftPlan } from '../../../runtime/loader/relocate.js';
import { targetObject } from '../../../runtime/loader/switch-library.js';
import { compile } from '../../../lab/compile.js';

const SONAME = 'libmoved.so.1';

function lib(v: number, pad: number): ElfObject {
  const path = compile({
    sources: ['region/libmoved.c'],
    out: `libmoved-v${v}.so`,
    flags: [
      '-shared',
      '-fPIC',
      '-O2',
      `-DMOVED_VERSION=${v}`,
      ...(pad ? [`-DMOVED_PAD=${pad}`] : []),
      `-Wl,-soname,${SONAME}`,
      '-Wl,--build-id',
      '-Wl,-z,relro,-z,now',
    ],
  });
  return parseElf(readFileSync(path));
}

const B1 = 0x7f0000000000n;
const B2 = 0x7f1000000000n;

function symbol(elf: ElfObject, name: string): bigint {
  const s = [...elf.symtab, ...elf.dynamicSymbols].find((x) => x.name === name && x.defined);
  assert.ok(s, name);
  return s.value;
}

/** What ld.so stored at the canonical build's relocations: its own symbols and RELATIVE targets (the rest reads as 0). */
function loaded(obj: ProcessObject): (addr: bigint, n: number) => Buffer {
  const words = new Map<bigint, bigint>();
  for (const r of obj.elf.relocations) {
    let v = 0n;
    if (r.type === RelocType.RELATIVE)
      v = obj.bias + (r.table === 'relr' ? obj.elf.readAt(r.offset, 8).readBigUInt64LE(0) : r.addend);
    else if (r.symbol?.defined) v = obj.bias + r.symbol.value + (r.type === RelocType.R64 ? r.addend : 0n);
    words.set(obj.bias + r.offset, v);
  }
  return (addr, n) => {
    const b = Buffer.alloc(n);
    b.writeBigUInt64LE(words.get(addr) ?? 0n);
    return b;
  };
}

describe('loader planning across a moved writable region (pure)', () => {
  let v1: ElfObject;
  let v2: ElfObject;
  let canonical: ProcessObject;
  let family: Family;
  before(() => {
    v1 = lib(1, 0);
    v2 = lib(2, 8192);
    canonical = { ...targetObject(v1, B1, 'libmoved'), name: '/lib/libmoved.so.1', source: 'linkmap' };
    delete canonical.ulp;
    family = { soname: SONAME, canonical, builds: [canonical] };
  });

  it('each build has its own region: same size, two pages apart, aliasable', () => {
    const [r1, r2] = [ownRegion(v1)!, ownRegion(v2)!];
    assert.equal(r2.start - r1.start, 0x2000n);
    assert.ok(aliasable(r1, r2));
    assert.ok(!aliasable(r1, { start: r1.start, end: r1.end + 0x1000n }));
    assert.ok(!aliasable(r1, undefined));
    // A datum of v2's region is found in the canonical copy at the same offset: where v1 keeps it.
    assert.equal(sharedAddress(family, v2, symbol(v2, 'moved_value')), B1 + symbol(v1, 'moved_value'));
    assert.equal(
      sharedAddress(family, v2, symbol(v2, 'moved_version')),
      undefined,
      'code is not in the region',
    );
  });

  it('the staged build reaches its region data in the canonical copy and leaves its shared sites alone', () => {
    const r1 = ownRegion(v1)!;
    const r2 = ownRegion(v2)!;
    const plan = planStage({
      target: v2,
      targetBias: B2,
      family,
      from: canonical,
      scope: [canonical],
      region: r1,
      read: loaded(canonical),
    });
    for (const w of plan.writes)
      assert.ok(
        !inRegion(r2, w.addr - B2),
        `a write into the shared region at 0x${(w.addr - B2).toString(16)}`,
      );
    assert.equal(plan.sharedSites, v2.relocations.filter((r) => inRegion(r2, r.offset)).length);
    assert.ok(plan.sharedSites > 0, 'moved_handler is a site in the region');
    // moved_value: exported .bss reached through the GOT; the slot holds v1's address (the canonical copy).
    const got = plan.writes.find((w) => w.reloc.symbol?.name === 'moved_value');
    assert.ok(got);
    assert.equal(got.value, B1 + symbol(v1, 'moved_value'));
    // note_ptr (.data.rel.ro, RELATIVE) points at moved_note in the canonical copy, not two pages past it.
    const note = plan.writes.find(
      (w) => w.reason === 'relative' && w.reloc.addend === symbol(v2, 'moved_note'),
    );
    assert.ok(note, 'the RELRO pointer to moved_note is relocated');
    assert.equal(note.value, B1 + symbol(v1, 'moved_note'));
  });

  it('the plan made at one base and shifted is the plan made at another: made once, before the process is touched', () => {
    const r1 = ownRegion(v1)!;
    const at = (bias: bigint) =>
      planStage({
        target: v2,
        targetBias: bias,
        family,
        from: canonical,
        scope: [canonical],
        region: r1,
        read: loaded(canonical),
      });
    const PROVISIONAL = 0x7e0000000000n;
    const shifted = shiftPlan(at(PROVISIONAL), B2 - PROVISIONAL);
    assert.deepEqual(shifted, at(B2));
    // The shift moved something of each kind: the sites, a value in the build itself, and left the canonical data's addresses.
    assert.ok(shifted.writes.some((w) => w.own) && shifted.writes.some((w) => !w.own));
    assert.ok(
      shifted.writes.filter((w) => !w.own).some((w) => w.value === B1 + symbol(v1, 'moved_note')),
      'a pointer into the shared region stays where the region is',
    );
  });

  it('function pointers of the region pair up by region offset, at the canonical address', () => {
    const target = targetObject(v2, B2, `ulp:${'ab'.repeat(8)}:new:${SONAME}`);
    const fam: Family = { ...family, builds: [canonical, target] };
    const sites = collectCodePointerSites(fam, target, ownRegion(v1)!);
    assert.equal(sites.length, 1, 'moved_handler');
    assert.equal(sites[0]!.addr, B1 + symbol(v1, 'moved_handler'));
    assert.equal(sites[0]!.targetValue, B2 + symbol(v2, 'handler'));
    assert.deepEqual(
      sites[0]!.loadTime.map((l) => l.value),
      [B1 + symbol(v1, 'handler')],
    );
  });

  it('a slot holding an address in a build’s own region is shared data, whichever build it is', () => {
    const target = targetObject(v2, B2, `ulp:${'ab'.repeat(8)}:new:${SONAME}`);
    const fam: Family = { ...family, builds: [canonical, target] };
    const slots = collectSlots([canonical, target], fam, ownRegion(v1)!);
    const slot = slots.find((s) => s.ref.name === 'moved_value' && s.owner === canonical)!;
    const ctx = { family: fam, target, region: ownRegion(v1)!, scope: [canonical] };
    assert.deepEqual(classifySlot(slot, B2 + symbol(v2, 'moved_value'), ctx), { kind: 'shared-data' });
    assert.deepEqual(classifySlot(slot, B1 + symbol(v1, 'moved_value'), ctx), { kind: 'shared-data' });
    // Under v1's region bounds, v2's copy would have been taken for v2's own data outside the region.
    assert.equal(slotBuild(slot, B2 + symbol(v2, 'moved_value'), fam), undefined);
  });
});
