/**
 * The state of one library in a process, reconstructed from the process
 * itself: which builds are mapped, which one the slots point at (live), and
 * what still refers to the others. No state file exists, so this cannot go
 * stale; `--status`, the apply/revert decision and the dry run all use it.
 */
import { RelocType, writableRegions } from '../../elf/index.js';
import type { RemoteMemory } from '../memory.js';
import { contains, inCode, type Family, type ProcessObject, type Region } from './model.js';
import { collectSlots, countByBuild, type Slot } from './relink.js';
import { readSlots } from './switch.js';
import { regionOf } from './region.js';

export { regionOf };
import { familyOf, type Snapshot } from './snapshot.js';
import { lineageOf, type Lineage } from './lineage.js';

export { lineageOf, stackedOn, type Lineage } from './lineage.js';

export interface LibraryState {
  family: Family;
  /** The canonical build's writable region (its vaddrs), or undefined when nothing stays writable after RELRO. Other builds have theirs at their own vaddrs (region.ts). */
  region: Region | undefined;
  /** True once the canonical build's writable region is a shared memfd mapping. */
  aliased: boolean;
  slots: Slot[];
  values: bigint[];
  /** Slots pointing at each build's symbols. */
  counts: Map<ProcessObject, number>;
  /** The build the slots point at; the canonical one when no slot points anywhere. */
  live: ProcessObject;
  /** Slots point at more than one build: an interrupted switch. */
  mixed: boolean;
  /** Which build was stacked on which, as the names of the builds ulp mapped record it. */
  lineage: Lineage;
}

const EMPTY: Region = { start: 0n, end: 0n };

export function readLibraryState(
  snapshot: Snapshot,
  soname: string,
  mem: RemoteMemory,
): LibraryState | undefined {
  const family = familyOf(snapshot, soname);
  if (!family) return undefined;
  const region = regionOf(family.canonical.elf, soname);
  const slots = collectSlots(snapshot.objects, family, region ?? EMPTY);
  const values = readSlots(mem, slots);
  const counts = countByBuild(slots, values, family);
  let live = family.canonical;
  for (const [b, n] of counts) if (n > (counts.get(live) ?? 0)) live = b;
  const aliased =
    region !== undefined &&
    snapshot.maps.some(
      (m) =>
        m.shared &&
        m.start === family.canonical.bias + region.start &&
        snapshot.dataMappings.get(soname)?.includes(m),
    );
  return {
    family,
    region,
    aliased,
    slots,
    values,
    counts,
    live,
    mixed: [...counts.values()].filter((n) => n > 0).length > 1,
    lineage: lineageOf(family),
  };
}

export interface DataPointer {
  /** Where the pointer is stored. */
  at: bigint;
  /** Object whose writable data holds it. */
  holder: string;
  value: bigint;
  /** The build whose code it points into. */
  build: ProcessObject;
}

/**
 * Words in the writable data of every loaded object that point into the code
 * of a build that is not live: function pointers the program took before a
 * switch (or relocated data the loader filled). They keep calling old code
 * until the program overwrites them; status reports them.
 */
export function findDataPointers(
  snapshot: Snapshot,
  state: LibraryState,
  mem: RemoteMemory,
  limit = 10_000,
): DataPointer[] {
  const stale = state.family.builds.filter((b) => b !== state.live);
  if (stale.length === 0) return [];
  const out: DataPointer[] = [];
  for (const obj of snapshot.objects) {
    // Every build of the family maps the same shared region: scan it once, through the canonical build.
    if (state.family.builds.includes(obj) && obj !== state.family.canonical) continue;
    // GOT slots are not program data: the library's own are counted as slots, and a lazy slot of
    // an import that still points at the old build's PLT stub resolves correctly on its first call.
    const sites = new Set(
      obj.elf.relocations
        .filter((r) => r.type === RelocType.GLOB_DAT || r.type === RelocType.JUMP_SLOT)
        .map((r) => obj.bias + r.offset),
    );
    for (const r of writableRegions(obj.elf)) {
      const start = obj.bias + r.start;
      const buf = mem.tryRead(start, Number(r.end - r.start));
      if (!buf) continue;
      for (let off = 0; off + 8 <= buf.length; off += 8) {
        const at = start + BigInt(off);
        const v = buf.readBigUInt64LE(off);
        if (sites.has(at)) continue;
        const build = stale.find((b) => contains(b.span, v) && inCode(b, v));
        if (!build) continue;
        out.push({ at, holder: obj.soname ?? (obj.name || '(executable)'), value: v, build });
        if (out.length >= limit) return out;
      }
    }
  }
  return out;
}
