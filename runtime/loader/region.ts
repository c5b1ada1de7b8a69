/**
 * Where each build of a library keeps the writable data every build shares.
 * The region is a per-build value, in that build's own link-time vaddrs:
 * builds of one library may place it at different vaddrs (a new build whose
 * code grew by some pages has it further on), but the packer guarantees the
 * same size and the same layout inside it (docs/COMPATIBILITY.md). A datum is
 * therefore known by its offset from its build's region start, and it lives
 * once, in the canonical (loader-mapped) build's copy, which every build's
 * region maps.
 */
import { UlpError } from '../../common/errors.js';
import { dynamicIsWritable, writableRegions, type ElfObject } from '../../elf/index.js';
import type { Family, Region } from './model.js';

/** The one writable region of a build; refuses objects with several (never produced by GNU ld). */
export function regionOf(elf: ElfObject, what: string): Region | undefined {
  const regions = writableRegions(elf);
  if (regions.length > 1) {
    throw new UlpError(
      'LOADER_LAYOUT',
      `${what} has ${regions.length} separate writable regions after RELRO`,
      'Only objects with one writable segment can be aliased; see docs/LIMITATIONS.md.',
    );
  }
  const r = regions[0];
  return r ? { start: r.start, end: r.end } : undefined;
}

/**
 * Refuses a build whose dynamic section lies in its writable region (-z norelro): that region is the
 * shared data, so a staged build would read the loaded build's .dynamic, which ld.so made absolute.
 */
export function refuseWritableDynamic(elf: ElfObject, what: string): void {
  if (!dynamicIsWritable(elf)) return;
  throw new UlpError(
    'LOADER_LAYOUT',
    `${what} keeps its dynamic section in its writable region (linked with -z norelro): that region is shared between builds`,
    'Libraries linked without RELRO cannot be patched; see docs/LIMITATIONS.md.',
  );
}

const memo = new WeakMap<ElfObject, Region | null>();

/**
 * A build's own region, computed once per parse; undefined when nothing of
 * it stays writable after RELRO, or when it has several regions (such a
 * build never got past prepare(), which refuses it with regionOf).
 */
export function ownRegion(elf: ElfObject): Region | undefined {
  let r = memo.get(elf);
  if (r === undefined) {
    const all = writableRegions(elf);
    memo.set(elf, (r = all.length === 1 ? { start: all[0]!.start, end: all[0]!.end } : null));
  }
  return r ?? undefined;
}

export function inRegion(region: Region | undefined, vaddr: bigint): boolean {
  return region !== undefined && vaddr >= region.start && vaddr < region.end;
}

/**
 * The runtime address of the shared datum a build's vaddr designates, or
 * undefined when the vaddr is not in that build's region: the canonical
 * build's copy, at the same offset from its region start.
 */
export function sharedAddress(family: Family, elf: ElfObject, vaddr: bigint): bigint | undefined {
  const own = ownRegion(elf);
  const canonical = ownRegion(family.canonical.elf);
  if (!own || !canonical || !inRegion(own, vaddr)) return undefined;
  return family.canonical.bias + canonical.start + (vaddr - own.start);
}

/** Two regions the same pages can alias: the same length (where each starts is each build's business). */
export function aliasable(a: Region | undefined, b: Region | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return a.end - a.start === b.end - b.start;
}
