/**
 * Function pointers inside the shared writable region: RELATIVE relocation
 * sites whose value is an address in the library's own code (a callback
 * table in .data, a default handler in a global). The dynamic loader filled
 * them for the build it loaded, and every build shares these very words, so
 * after a switch they would go on calling the build that was live when the
 * process started. Pure: values are read by the caller, inside the pause.
 *
 * A site still holding the value that loading some build of the family would
 * have given it is the program's untouched load-time pointer: it is moved to
 * the target build's function at the same site. A site holding anything else
 * was written by the program (it installed a callback of its own, or copied
 * a pointer): it is left alone and counted.
 */
import { RelocType, type ElfObject } from '../../elf/types.js';
import { inCode, type Family, type ProcessObject, type Region } from './model.js';
import { inRegion, ownRegion } from './region.js';

export interface CodePointerSite {
  /** Runtime address of the word: in the canonical build's region, which every build maps. */
  addr: bigint;
  /** The value loading each build would store here, for the builds whose value points into their code. */
  loadTime: Array<{ build: ProcessObject; value: bigint }>;
  /** What it must hold once the target is live. */
  targetValue: bigint;
}

export type PointerState =
  | { kind: 'target' }
  /** Holds the load-time value of another build: retarget. */
  | { kind: 'load-time'; build: ProcessObject }
  /** The program wrote something else there: leave it. */
  | { kind: 'overwritten' };

/**
 * Addends of the RELATIVE sites inside a build's own region, by offset from
 * the region start (the region may lie at another vaddr in each build, laid
 * out alike). A RELR site keeps its addend in the file's bytes, which only a
 * build parsed from its file still has (in memory the word holds the
 * shared, live value).
 */
function relativeAddends(elf: ElfObject): Map<bigint, bigint> {
  const out = new Map<bigint, bigint>();
  const region = ownRegion(elf);
  if (!region) return out;
  for (const r of elf.relocations) {
    if (r.type !== RelocType.RELATIVE || !inRegion(region, r.offset)) continue;
    const offset = r.offset - region.start;
    if (r.table !== 'relr') out.set(offset, r.addend);
    else if (elf.origin === 'file') out.set(offset, elf.readAt(r.offset, 8).readBigUInt64LE(0));
  }
  return out;
}

/** The RELATIVE sites of the region whose target-build value points into the target's code; `region` is the canonical build's. */
export function collectCodePointerSites(
  family: Family,
  target: ProcessObject,
  region: Region,
): CodePointerSite[] {
  const targetAddends = relativeAddends(target.elf);
  if (targetAddends.size === 0) return [];
  const others = family.builds
    .filter((b) => b !== target)
    .map((b) => ({ build: b, addends: relativeAddends(b.elf) }));
  const sites: CodePointerSite[] = [];
  for (const [offset, addend] of targetAddends) {
    const targetValue = BigInt.asUintN(64, target.bias + addend);
    if (!inCode(target, targetValue)) continue;
    const loadTime: CodePointerSite['loadTime'] = [];
    for (const o of others) {
      const a = o.addends.get(offset);
      if (a === undefined) continue;
      const value = BigInt.asUintN(64, o.build.bias + a);
      if (inCode(o.build, value)) loadTime.push({ build: o.build, value });
    }
    if (loadTime.length > 0)
      sites.push({ addr: family.canonical.bias + region.start + offset, loadTime, targetValue });
  }
  return sites;
}

export function classifyPointer(site: CodePointerSite, value: bigint): PointerState {
  if (value === site.targetValue) return { kind: 'target' };
  const lt = site.loadTime.find((l) => l.value === value);
  return lt ? { kind: 'load-time', build: lt.build } : { kind: 'overwritten' };
}
