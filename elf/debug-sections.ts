/**
 * The debug sections of an ELF file, as the DWARF reader needs them:
 * .debug_info and its companions, inflated when compressed (SHF_COMPRESSED
 * with zlib, or the older .zdebug_* form), with the dwz supplementary link
 * and the build-id that tie a separate debug file to its build.
 */
import { inflateSync } from 'node:zlib';
import { SHT_NOBITS } from './constants.js';
import { dwarfUnsupported, malformed } from './errors.js';
import { parseHeader } from './header.js';
import { FileImage } from './image.js';
import { ElfImage } from './object.js';
import { parseSections } from './sections.js';
import type { ElfObject, SectionHeader } from './types.js';

/** The sections the reader needs, decompressed. */
export interface DebugSections {
  info: Buffer;
  /** DWARF 4 type units (-fdebug-types-section). */
  types?: Buffer;
  abbrev: Buffer;
  str?: Buffer;
  lineStr?: Buffer;
  strOffsets?: Buffer;
  /** .gnu_debugaltlink: the dwz supplementary file's name and build-id. */
  altLink?: { path: string; buildId: string };
  buildId?: string;
}

const SHF_COMPRESSED = 0x800n;
const ELFCOMPRESS_ZLIB = 1;
const ELFCOMPRESS_ZSTD = 2;
/** No real .debug_info inflates beyond this; it bounds what a forged ch_size can make us allocate. */
const MAX_INFLATED = 2 ** 31 - 1;

/** A section's bytes, inflated when compressed. */
function sectionData(buf: Buffer, s: SectionHeader): Buffer {
  if (s.type === SHT_NOBITS) return Buffer.alloc(0);
  const img = new FileImage(buf, []);
  const raw = img.atOffset(s.offset, s.size, `section ${s.name}`).buf;
  if (s.flags & SHF_COMPRESSED) {
    if (raw.length < 24)
      throw malformed(`section ${s.name}`, 'is marked compressed but has no compression header');
    const type = raw.readUInt32LE(0);
    const size = raw.readBigUInt64LE(8);
    if (type === ELFCOMPRESS_ZSTD) {
      throw dwarfUnsupported(
        `section ${s.name} is compressed with zstd, which this Node.js cannot inflate (objcopy --decompress-debug-sections makes it readable)`,
        { section: s.name },
      );
    }
    if (type !== ELFCOMPRESS_ZLIB) throw malformed(`section ${s.name}`, `unknown compression type ${type}`);
    return inflate(raw.subarray(24), size, s.name);
  }
  if (s.name.startsWith('.zdebug_')) {
    // The GNU format before SHF_COMPRESSED: "ZLIB", then the size as a big-endian u64.
    if (raw.length < 12 || raw.toString('latin1', 0, 4) !== 'ZLIB')
      throw malformed(`section ${s.name}`, 'has no ZLIB header');
    return inflate(raw.subarray(12), raw.readBigUInt64BE(4), s.name);
  }
  return raw;
}

function inflate(data: Buffer, size: bigint, name: string): Buffer {
  if (size > BigInt(MAX_INFLATED)) throw malformed(`section ${name}`, `claims ${size} bytes once inflated`);
  let out: Buffer;
  try {
    out = inflateSync(data, { maxOutputLength: Number(size) + 1 });
  } catch (e) {
    throw malformed(`section ${name}`, `does not inflate: ${(e as Error).message}`);
  }
  if (out.length !== Number(size))
    throw malformed(`section ${name}`, `inflates to ${out.length} bytes, its header says ${size}`);
  return out;
}

/**
 * The debug sections of an ELF file's bytes (a build, or a separate debug
 * file whose program headers need not match its contents), or undefined
 * when it has no .debug_info with bytes.
 */
export function debugSectionsOfFile(buf: Buffer): DebugSections | undefined {
  const header = parseHeader(buf, 0n);
  const sections = parseSections(new FileImage(buf, []), header);
  return debugSectionsFrom(buf, sections);
}

/** The same for a parsed object; a loaded object (no section headers) has none. */
export function debugSectionsOf(obj: ElfObject): DebugSections | undefined {
  if (!(obj instanceof ElfImage) || !(obj.image instanceof FileImage)) return undefined;
  return debugSectionsFrom(obj.image.buf, obj.sections);
}

function debugSectionsFrom(buf: Buffer, sections: SectionHeader[]): DebugSections | undefined {
  const find = (name: string) =>
    sections.find((s) => s.name === `.debug_${name}` || s.name === `.zdebug_${name}`);
  const info = find('info');
  if (!info || info.type === SHT_NOBITS || info.size === 0n) return undefined;
  const abbrev = find('abbrev');
  if (!abbrev || abbrev.type === SHT_NOBITS)
    throw malformed('.debug_abbrev', 'is missing while .debug_info is present');
  const out: DebugSections = { info: sectionData(buf, info), abbrev: sectionData(buf, abbrev) };
  const opt = (name: string) => {
    const s = find(name);
    return s && s.type !== SHT_NOBITS ? sectionData(buf, s) : undefined;
  };
  const str = opt('str');
  if (str) out.str = str;
  const lineStr = opt('line_str');
  if (lineStr) out.lineStr = lineStr;
  const types = opt('types');
  if (types) out.types = types;
  const strOffsets = opt('str_offsets');
  if (strOffsets) out.strOffsets = strOffsets;
  const alt = sections.find((s) => s.name === '.gnu_debugaltlink');
  if (alt && alt.type !== SHT_NOBITS) {
    const b = sectionData(buf, alt);
    const end = b.indexOf(0);
    if (end > 0)
      out.altLink = { path: b.toString('utf8', 0, end), buildId: b.subarray(end + 1).toString('hex') };
  }
  const note = sections.find((s) => s.name === '.note.gnu.build-id');
  if (note && note.type !== SHT_NOBITS) {
    const b = sectionData(buf, note);
    if (b.length >= 16) {
      const namesz = b.readUInt32LE(0);
      const descsz = b.readUInt32LE(4);
      const start = 12 + ((namesz + 3) & ~3);
      if (start + descsz <= b.length) out.buildId = b.subarray(start, start + descsz).toString('hex');
    }
  }
  return out;
}

/**
 * The file name .gnu_debuglink gives (objcopy --add-gnu-debuglink), if any:
 * the name a separate debug file was given when it was split off.
 */
export function debugLinkOf(obj: ElfObject): string | undefined {
  if (!(obj instanceof ElfImage) || !(obj.image instanceof FileImage)) return undefined;
  const s = obj.sections.find((x) => x.name === '.gnu_debuglink');
  if (!s || s.type === SHT_NOBITS || s.size === 0n) return undefined;
  const b = sectionData(obj.image.buf, s);
  const end = b.indexOf(0);
  const name = b.toString('utf8', 0, end < 0 ? b.length : end);
  return name && !name.includes('/') && name !== '.' && name !== '..' ? name : undefined;
}
