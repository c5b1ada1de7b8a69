/**
 * Page-level layout facts the packer and the runtime both need, derived the
 * way the kernel and ld.so map and protect an object.
 */
import type { ElfObject, ProgramHeader, SectionHeader } from './types.js';
import { PF_W, PT_DYNAMIC, SHF_ALLOC, SHF_TLS, SHT_NOBITS } from './constants.js';
import { ElfErrorCode, elfError, malformed } from './errors.js';

function checkPage(pageSize: bigint): void {
  if (pageSize <= 0n || (pageSize & (pageSize - 1n)) !== 0n) {
    throw elfError(
      ElfErrorCode.INVALID_ARGUMENT,
      `page size ${pageSize} is not a power of two`,
      'Pass the page size of the target machine (4096 on x86-64).',
    );
  }
}

/** The page size of x86-64, the only machine the reader and the runtime support. */
export const PAGE_SIZE = 4096n;

export function pageAlignDown(x: bigint, pageSize = PAGE_SIZE): bigint {
  checkPage(pageSize);
  return x & ~(pageSize - 1n);
}

export function pageAlignUp(x: bigint, pageSize = PAGE_SIZE): bigint {
  checkPage(pageSize);
  return (x + pageSize - 1n) & ~(pageSize - 1n);
}

export interface Span {
  start: bigint;
  end: bigint;
}

/** The page-aligned vaddr span [start, end) that mapping all PT_LOADs reserves. */
export function imageSpan(obj: ElfObject, pageSize = 4096n): Span {
  const loads = obj.loadSegments;
  if (loads.length === 0) throw malformed('program headers', 'the object has no PT_LOAD segment');
  let start = loads[0]!.vaddr;
  let end = 0n;
  for (const p of loads) {
    if (p.vaddr < start) start = p.vaddr;
    if (p.vaddr + p.memsz > end) end = p.vaddr + p.memsz;
  }
  return { start: pageAlignDown(start, pageSize), end: pageAlignUp(end, pageSize) };
}

export interface WritableRegion extends Span {
  /** The writable PT_LOAD this region belongs to (the first one when regions were merged). */
  segment: ProgramHeader;
  /** Allocated sections overlapping the region (empty when the object has no section headers). */
  sections: SectionHeader[];
}

function sectionsIn(obj: ElfObject, start: bigint, end: bigint): SectionHeader[] {
  return obj.sections.filter((s) => {
    if ((s.flags & SHF_ALLOC) === 0n || s.size === 0n) return false;
    // .tbss occupies no address space of its own: it is only a TLS template size.
    if ((s.flags & SHF_TLS) !== 0n && s.type === SHT_NOBITS) return false;
    return s.addr < end && s.addr + s.size > start;
  });
}

/**
 * Every page range of a writable PT_LOAD that stays writable after ld.so
 * applies RELRO. glibc's _dl_protect_relro protects
 * [alignDown(relro.vaddr), alignDown(relro.vaddr + relro.memsz)): the end is
 * rounded down, so a partial last page stays writable.
 */
export function writableRegions(obj: ElfObject, pageSize = 4096n): WritableRegion[] {
  const relro = obj.relro;
  const out: WritableRegion[] = [];
  for (const seg of obj.loadSegments) {
    if ((seg.flags & PF_W) === 0) continue;
    const s = pageAlignDown(seg.vaddr, pageSize);
    const e = pageAlignUp(seg.vaddr + seg.memsz, pageSize);
    const parts: Span[] = [];
    if (
      relro &&
      relro.memsz > 0n &&
      relro.vaddr < seg.vaddr + seg.memsz &&
      relro.vaddr + relro.memsz > seg.vaddr
    ) {
      const ps = pageAlignDown(relro.vaddr, pageSize);
      const pe = pageAlignDown(relro.vaddr + relro.memsz, pageSize);
      if (ps >= pe) parts.push({ start: s, end: e });
      else {
        if (ps > s) parts.push({ start: s, end: ps < e ? ps : e });
        if (pe < e) parts.push({ start: pe > s ? pe : s, end: e });
      }
    } else {
      parts.push({ start: s, end: e });
    }
    for (const p of parts)
      if (p.end > p.start) out.push({ ...p, segment: seg, sections: sectionsIn(obj, p.start, p.end) });
  }
  return out;
}

/**
 * Whether the object's dynamic section lies in a region that stays writable
 * after RELRO (an object linked with -z norelro). ld.so rewrites some of its
 * entries into absolute addresses, and builds that share the region would
 * all read the loaded build's copy.
 */
export function dynamicIsWritable(obj: ElfObject, pageSize = 4096n): boolean {
  const dyn = obj.programHeaders.find((p) => p.type === PT_DYNAMIC);
  if (!dyn || dyn.memsz === 0n) return false;
  return writableRegions(obj, pageSize).some((r) => dyn.vaddr < r.end && dyn.vaddr + dyn.memsz > r.start);
}

/**
 * The one region of the object that stays writable after RELRO (.data,
 * .bss, and a partial-RELRO .got.plt), or undefined when nothing does.
 * Regions of several writable segments are merged when they touch; an
 * object whose writable pages are scattered is refused.
 */
export function writableRegion(obj: ElfObject, pageSize = 4096n): WritableRegion | undefined {
  const all = writableRegions(obj, pageSize).sort((a, b) =>
    a.start < b.start ? -1 : a.start > b.start ? 1 : 0,
  );
  if (all.length === 0) return undefined;
  const first = all[0]!;
  let end = first.end;
  for (const r of all.slice(1)) {
    if (r.start > end) {
      throw elfError(
        ElfErrorCode.UNSUPPORTED_LAYOUT,
        `the object has separate writable regions [0x${first.start.toString(16)}, 0x${end.toString(16)}) and [0x${r.start.toString(16)}, 0x${r.end.toString(16)})`,
        'Only objects whose writable data after RELRO is one contiguous range are supported.',
      );
    }
    if (r.end > end) end = r.end;
  }
  return { start: first.start, end, segment: first.segment, sections: sectionsIn(obj, first.start, end) };
}
