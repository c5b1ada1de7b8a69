/** Section headers (files only: a loaded object rarely has them mapped). */
import type { ElfHeader, SectionHeader } from './types.js';
import { StringTable, toNum } from './bytes.js';
import { SHDR_SIZE, SHN_UNDEF, SHN_XINDEX, SHT_NOBITS } from './constants.js';
import { malformed } from './errors.js';
import type { FileImage } from './image.js';

export function parseSections(img: FileImage, h: ElfHeader): SectionHeader[] {
  if (h.shoff === 0n) return [];
  if (h.shentsize !== SHDR_SIZE)
    throw malformed('e_shentsize', `is ${h.shentsize}, expected ${SHDR_SIZE} for ELF64`, 58);
  // Section 0 holds the real count and string-table index when they overflow 16 bits.
  const first = img.atOffset(h.shoff, BigInt(SHDR_SIZE), 'section header 0');
  let count = h.shnum;
  if (count === 0)
    count = toNum(first.u64(32), 'section header 0 sh_size (section count)', img.buf.length / SHDR_SIZE);
  let strndx = h.shstrndx;
  if (strndx === SHN_XINDEX) strndx = first.u32(40);
  const v = img.atOffset(
    h.shoff,
    BigInt(count) * BigInt(SHDR_SIZE),
    `section header table (${count} entries)`,
  );

  const raw: Array<Omit<SectionHeader, 'name'> & { nameOff: number }> = [];
  for (let i = 0; i < count; i++) {
    const o = i * SHDR_SIZE;
    const b = v.buf;
    raw.push({
      index: i,
      nameOff: b.readUInt32LE(o),
      type: b.readUInt32LE(o + 4),
      flags: b.readBigUInt64LE(o + 8),
      addr: b.readBigUInt64LE(o + 16),
      offset: b.readBigUInt64LE(o + 24),
      size: b.readBigUInt64LE(o + 32),
      link: b.readUInt32LE(o + 40),
      info: b.readUInt32LE(o + 44),
      addralign: b.readBigUInt64LE(o + 48),
      entsize: b.readBigUInt64LE(o + 56),
    });
  }
  let names: StringTable | undefined;
  if (strndx !== SHN_UNDEF) {
    const s = raw[strndx];
    if (!s) throw malformed('e_shstrndx', `section ${strndx} does not exist (${count} sections)`);
    if (s.type === SHT_NOBITS) throw malformed('e_shstrndx', `section ${strndx} has no file bytes`);
    names = new StringTable(img.atOffset(s.offset, s.size, `section name table (section ${strndx})`));
  }
  return raw.map((r) => ({
    index: r.index,
    name: names ? names.get(r.nameOff, 'section # sh_name', r.index) : '',
    type: r.type,
    flags: r.flags,
    addr: r.addr,
    offset: r.offset,
    size: r.size,
    link: r.link,
    info: r.info,
    addralign: r.addralign,
    entsize: r.entsize,
  }));
}
