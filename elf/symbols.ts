/** Symbol tables (.dynsym through DT_SYMTAB, .symtab through its section) and their versions. */
import type { ElfSymbol } from './types.js';
import { words, type StringTable, type View } from './bytes.js';
import { SHN_UNDEF, SYM_SIZE, VERSYM_HIDDEN, VERSYM_VERSION } from './constants.js';
import type { Versions } from './versions.js';

export interface VersionContext {
  /** DT_VERSYM: one u16 per symbol. */
  versym: View;
  versions: Versions;
}

/**
 * Decodes `count` symbols from `table` (already bounds-checked to count * 24
 * bytes). Versions follow readelf: a definition is named from VERDEF, falling
 * back to VERNEED (a copy-relocated definition in an executable carries the
 * version it was copied from); a reference is named from VERNEED.
 */
export function parseSymbols(
  table: View,
  count: number,
  strings: StringTable,
  what: string,
  ver?: VersionContext,
): ElfSymbol[] {
  table.need(0, count * SYM_SIZE, `${what} (${count} symbols)`);
  if (ver) ver.versym.need(0, count * 2, `DT_VERSYM (${count} entries)`);
  const b = table.buf;
  const stName = `${what}[#] st_name`;
  const out: ElfSymbol[] = new Array(count);
  const u64 = words(b)?.u64;
  for (let i = 0; i < count; i++) {
    const o = i * SYM_SIZE;
    const info = b[o + 4]!;
    const shndx = b.readUInt16LE(o + 6);
    const defined = shndx !== SHN_UNDEF;
    const sym: ElfSymbol = {
      index: i,
      name: strings.get(b.readUInt32LE(o), stName, i),
      value: u64 ? u64[i * 3 + 1]! : b.readBigUInt64LE(o + 8),
      size: u64 ? u64[i * 3 + 2]! : b.readBigUInt64LE(o + 16),
      type: info & 0xf,
      bind: info >> 4,
      visibility: b[o + 5]! & 3,
      shndx,
      versionHidden: false,
      defined,
    };
    if (ver) {
      const raw = ver.versym.buf.readUInt16LE(i * 2);
      const ndx = raw & VERSYM_VERSION;
      sym.versym = raw;
      if (ndx > 1) {
        const def = defined ? ver.versions.defs.get(ndx) : undefined;
        if (def && !def.base) {
          sym.version = def.name;
          sym.versionHidden = (raw & VERSYM_HIDDEN) !== 0;
        } else {
          const need = ver.versions.needs.get(ndx);
          if (need) {
            sym.version = need.name;
            sym.versionFile = need.file;
            sym.versionHidden = (raw & VERSYM_HIDDEN) !== 0;
          }
        }
      }
    }
    out[i] = sym;
  }
  return out;
}
