/** Program headers: the table itself and the segment checks loading relies on. */
import type { ElfHeader, ProgramHeader } from './types.js';
import { View, add64 } from './bytes.js';
import { PHDR_SIZE, PT_LOAD } from './constants.js';
import { malformed, truncated } from './errors.js';

/** Program headers of one ELF64 object never number more than this (e_phnum is 16 bits; PN_XNUM aside). */
export const MAX_PHNUM = 0xffff;

export function parsePhdrs(v: View, count: number): ProgramHeader[] {
  v.need(0, count * PHDR_SIZE, `program header table (${count} entries)`);
  const out: ProgramHeader[] = [];
  for (let i = 0; i < count; i++) {
    const o = i * PHDR_SIZE;
    out.push({
      type: v.buf.readUInt32LE(o),
      flags: v.buf.readUInt32LE(o + 4),
      offset: v.buf.readBigUInt64LE(o + 8),
      vaddr: v.buf.readBigUInt64LE(o + 16),
      paddr: v.buf.readBigUInt64LE(o + 24),
      filesz: v.buf.readBigUInt64LE(o + 32),
      memsz: v.buf.readBigUInt64LE(o + 40),
      align: v.buf.readBigUInt64LE(o + 48),
    });
  }
  return out;
}

export function checkPhentsize(h: ElfHeader, count: number, at: bigint): void {
  if (count > 0 && h.phentsize !== PHDR_SIZE) {
    throw malformed('e_phentsize', `is ${h.phentsize}, expected ${PHDR_SIZE} for ELF64`, at + 54n);
  }
}

/**
 * Checks what every later vaddr read relies on: PT_LOAD ranges do not wrap,
 * file bytes fit in memory bytes, and (for files) the bytes exist.
 */
export function checkLoads(phdrs: ProgramHeader[], fileSize: number | undefined): void {
  phdrs.forEach((p, i) => {
    if (p.type !== PT_LOAD) return;
    const what = `PT_LOAD (program header ${i})`;
    add64(p.vaddr, p.memsz, `${what} p_vaddr + p_memsz`);
    if (p.filesz > p.memsz) throw malformed(what, `p_filesz ${p.filesz} is larger than p_memsz ${p.memsz}`);
    if (fileSize !== undefined) {
      const end = add64(p.offset, p.filesz, `${what} p_offset + p_filesz`);
      if (end > BigInt(fileSize)) {
        const have = p.offset > BigInt(fileSize) ? 0n : BigInt(fileSize) - p.offset;
        throw truncated(`${what} file bytes (the file has ${fileSize} bytes)`, p.offset, p.filesz, have);
      }
    }
  });
}
