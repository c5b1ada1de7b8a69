/**
 * Where a loaded object's code is, in its link-time vaddrs, read from what
 * memory holds (no section headers). Pure.
 *
 * An object linked with -z noseparate-code has one executable segment that
 * also holds its ELF header, its dynamic-linking tables and, past its code,
 * its read-only data and unwind tables. Words pointing there are no code
 * pointers (ld.so keeps pointers into a library's symbol tables), so the
 * segment is cut: before, at the end of the last relocation or string table
 * that lies in it (ld places .init, .plt and .text after them); after, at
 * .eh_frame_hdr (PT_GNU_EH_FRAME), which ld places after .rodata. Neither
 * cut ever passes a known code address (DT_INIT, DT_FINI, a function
 * symbol): a segment laid out otherwise keeps its whole range. With
 * -z separate-code the tables lie in other segments and nothing is cut.
 */
import { PF_X, PT_GNU_EH_FRAME, STT_FUNC, STT_GNU_IFUNC, type ElfObject } from '../../elf/index.js';

export interface CodeRange {
  start: bigint;
  end: bigint;
}

type CodeSource = Pick<
  ElfObject,
  'loadSegments' | 'programHeaders' | 'dynamic' | 'dynamicSymbols' | 'symtab'
>;

/** Per parsed object: `--all` meets the same parsed libraries (ElfCache) in every process. */
const computed = new WeakMap<CodeSource, readonly CodeRange[]>();

export function codeOf(elf: CodeSource): readonly CodeRange[] {
  let ranges = computed.get(elf);
  if (!ranges) computed.set(elf, (ranges = codeRanges(elf)));
  return ranges;
}

function codeRanges(elf: CodeSource): CodeRange[] {
  const d = elf.dynamic;
  const tableEnds = [d?.rela, d?.jmprel, d?.relr, d?.strtab]
    .filter((t) => t !== undefined && t.size > 0n)
    .map((t) => t!.addr + t!.size);
  // Known code: [address, end] pairs; an address without a size counts as one byte.
  const known: Array<[bigint, bigint]> = [];
  if (d?.init !== undefined && d.init !== 0n) known.push([d.init, d.init + 1n]);
  if (d?.fini !== undefined && d.fini !== 0n) known.push([d.fini, d.fini + 1n]);
  for (const s of [...elf.dynamicSymbols, ...elf.symtab])
    if (s.defined && s.value !== 0n && (s.type === STT_FUNC || s.type === STT_GNU_IFUNC))
      known.push([s.value, s.value + (s.size > 0n ? s.size : 1n)]);
  const ehFrameHdr = elf.programHeaders.find((p) => p.type === PT_GNU_EH_FRAME)?.vaddr;
  return elf.loadSegments
    .filter((p) => (p.flags & PF_X) !== 0)
    .map((p) => {
      let start = p.vaddr;
      let end = p.vaddr + p.memsz;
      const inside = known.filter(([a]) => a >= start && a < end);
      if (inside.length === 0) return { start, end };
      const first = inside.reduce((m, [a]) => (a < m ? a : m), end);
      const last = inside.reduce((m, [, e]) => (e > m ? e : m), start);
      for (const t of tableEnds) if (t > start && t <= first) start = t;
      if (ehFrameHdr !== undefined && ehFrameHdr >= last && ehFrameHdr < end) end = ehFrameHdr;
      return { start, end };
    });
}
