/**
 * Structure layouts from DWARF (.debug_info), as gcc emits it in versions 2
 * to 5: every struct, union and class with a name (or the name of a typedef
 * for an anonymous one) and a size, with each member's offset, bit-field
 * position, size and type name. The packer compares them between two builds
 * to refuse an update that moves or resizes fields of a structure the code
 * keeps on the heap.
 *
 * Only what a layout needs is decoded: type DIEs are recorded, every other
 * DIE is skipped by its abbreviation (most of them with one addition, see
 * Abbrev.fixed). dwz output is read: partial units, DW_TAG_imported_unit and
 * the supplementary (.gnu_debugaltlink) file when the caller supplies it.
 * Compressed sections (SHF_COMPRESSED with zlib, or the older .zdebug_*) are
 * inflated. Type units (.debug_types, DW_UT_type) are read and
 * DW_FORM_ref_sig8 references followed to them.
 */
import { inflateSync } from 'node:zlib';
import { UlpError } from '../common/errors.js';
import { ElfErrorCode, malformed } from './errors.js';
import { parseHeader } from './header.js';
import { FileImage } from './image.js';
import { ElfImage } from './object.js';
import { parseSections } from './sections.js';
import { SHT_NOBITS } from './constants.js';
import type { ElfObject, SectionHeader } from './types.js';

export interface StructMember {
  /** The member's name; members of an anonymous struct or union member appear in its place, with their own names. */
  name: string;
  /** Byte offset from the start of the structure (a bit-field: the byte holding its first bit). */
  offset: number;
  /** Bit-fields only: the first bit, counted from the start of the structure. */
  bitOffset?: number;
  bitSize?: number;
  /** Byte size of the member's type, when DWARF tells it. */
  size?: number;
  /** The type as C spells it, e.g. `struct foo *`, `unsigned int`, `char[16]`. */
  type: string;
}

export interface StructLayout {
  kind: 'struct' | 'union' | 'class';
  /** `struct foo`, `union u`, a typedef name for an anonymous structure, or a C++ qualified name. */
  name: string;
  size: number;
  members: StructMember[];
  /** Names of the compile units that define it this way (dwz partial units count as `(dwz)`). */
  units: string[];
  /** The build has another definition of the same name (static types of different files). */
  ambiguous: boolean;
}

export interface StructLayouts {
  /** Every layout by name; more than one entry when the name is ambiguous. */
  byName: Map<string, StructLayout[]>;
  /** How many compile units were read. */
  units: number;
  /** The DWARF versions met. */
  versions: number[];
  /** Set when the DWARF refers to a dwz supplementary file that was not given: structures moved there are missing. */
  missingSupplementary?: string;
}

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

function badDebug(what: string, detail: string, at?: number): UlpError {
  return malformed(what, detail, at);
}

/** Valid DWARF this reader does not read (a newer version or form, zstd): not damage, so a code of its own. */
function unsupported(detail: string, details: Record<string, unknown> = {}): UlpError {
  return new UlpError(
    ElfErrorCode.DWARF_UNSUPPORTED,
    `debug information: ${detail}`,
    'Pack without it: give a build without .debug_* sections (strip --strip-debug) and no --debug-dir, so that the layout evidence comes from the machine code.',
    details,
  );
}

/** A section's bytes, inflated when compressed. */
function sectionData(buf: Buffer, s: SectionHeader): Buffer {
  if (s.type === SHT_NOBITS) return Buffer.alloc(0);
  const img = new FileImage(buf, []);
  const raw = img.atOffset(s.offset, s.size, `section ${s.name}`).buf;
  if (s.flags & SHF_COMPRESSED) {
    if (raw.length < 24) throw badDebug(`section ${s.name}`, 'is marked compressed but has no compression header');
    const type = raw.readUInt32LE(0);
    const size = raw.readBigUInt64LE(8);
    if (type === ELFCOMPRESS_ZSTD) {
      throw unsupported(`section ${s.name} is compressed with zstd, which this Node.js cannot inflate (objcopy --decompress-debug-sections makes it readable)`, { section: s.name });
    }
    if (type !== ELFCOMPRESS_ZLIB) throw badDebug(`section ${s.name}`, `unknown compression type ${type}`);
    return inflate(raw.subarray(24), size, s.name);
  }
  if (s.name.startsWith('.zdebug_')) {
    // The GNU format before SHF_COMPRESSED: "ZLIB", then the size as a big-endian u64.
    if (raw.length < 12 || raw.toString('latin1', 0, 4) !== 'ZLIB') throw badDebug(`section ${s.name}`, 'has no ZLIB header');
    return inflate(raw.subarray(12), raw.readBigUInt64BE(4), s.name);
  }
  return raw;
}

function inflate(data: Buffer, size: bigint, name: string): Buffer {
  if (size > BigInt(MAX_INFLATED)) throw badDebug(`section ${name}`, `claims ${size} bytes once inflated`);
  let out: Buffer;
  try {
    out = inflateSync(data, { maxOutputLength: Number(size) + 1 });
  } catch (e) {
    throw badDebug(`section ${name}`, `does not inflate: ${(e as Error).message}`);
  }
  if (out.length !== Number(size)) throw badDebug(`section ${name}`, `inflates to ${out.length} bytes, its header says ${size}`);
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
  const find = (name: string) => sections.find((s) => s.name === `.debug_${name}` || s.name === `.zdebug_${name}`);
  const info = find('info');
  if (!info || info.type === SHT_NOBITS || info.size === 0n) return undefined;
  const abbrev = find('abbrev');
  if (!abbrev || abbrev.type === SHT_NOBITS) throw badDebug('.debug_abbrev', 'is missing while .debug_info is present');
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
    if (end > 0) out.altLink = { path: b.toString('utf8', 0, end), buildId: b.subarray(end + 1).toString('hex') };
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

// ---- DWARF constants (DWARF 5, section 7) ----
const TAG = {
  array: 0x01,
  class: 0x02,
  enumeration: 0x04,
  member: 0x0d,
  pointer: 0x0f,
  reference: 0x10,
  compileUnit: 0x11,
  structure: 0x13,
  subroutine: 0x15,
  typedef: 0x16,
  union: 0x17,
  inheritance: 0x1c,
  ptrToMember: 0x1f,
  subrange: 0x21,
  base: 0x24,
  const: 0x26,
  volatile: 0x35,
  restrict: 0x37,
  namespace: 0x39,
  importedUnit: 0x3d,
  unspecified: 0x3b,
  partialUnit: 0x3c,
  rvalueReference: 0x42,
  typeUnit: 0x41,
  atomic: 0x47,
  immutable: 0x4b,
} as const;

const AT = {
  name: 0x03,
  byteSize: 0x0b,
  bitOffset: 0x0c,
  bitSize: 0x0d,
  lowerBound: 0x22,
  upperBound: 0x2f,
  count: 0x37,
  dataMemberLocation: 0x38,
  declaration: 0x3c,
  language: 0x13,
  type: 0x49,
  import: 0x18,
  strOffsetsBase: 0x72,
  signature: 0x69,
  dataBitOffset: 0x6b,
} as const;

const F = {
  addr: 0x01,
  block2: 0x03,
  block4: 0x04,
  data2: 0x05,
  data4: 0x06,
  data8: 0x07,
  string: 0x08,
  block: 0x09,
  block1: 0x0a,
  data1: 0x0b,
  flag: 0x0c,
  sdata: 0x0d,
  strp: 0x0e,
  udata: 0x0f,
  refAddr: 0x10,
  ref1: 0x11,
  ref2: 0x12,
  ref4: 0x13,
  ref8: 0x14,
  refUdata: 0x15,
  indirect: 0x16,
  secOffset: 0x17,
  exprloc: 0x18,
  flagPresent: 0x19,
  strx: 0x1a,
  addrx: 0x1b,
  refSup4: 0x1c,
  strpSup: 0x1d,
  data16: 0x1e,
  lineStrp: 0x1f,
  refSig8: 0x20,
  implicitConst: 0x21,
  loclistx: 0x22,
  rnglistx: 0x23,
  refSup8: 0x24,
  strx1: 0x25,
  strx2: 0x26,
  strx3: 0x27,
  strx4: 0x28,
  addrx1: 0x29,
  addrx2: 0x2a,
  addrx3: 0x2b,
  addrx4: 0x2c,
  gnuAddrIndex: 0x1f01,
  gnuStrIndex: 0x1f02,
  gnuRefAlt: 0x1f20,
  gnuStrpAlt: 0x1f21,
} as const;

const CPP_LANGUAGES = new Set([0x04, 0x1a, 0x21, 0x2a, 0x2b]);

/** Tags whose DIEs the layout needs. */
const TYPE_TAGS = new Set<number>([
  TAG.array,
  TAG.class,
  TAG.enumeration,
  TAG.member,
  TAG.pointer,
  TAG.reference,
  TAG.structure,
  TAG.subroutine,
  TAG.typedef,
  TAG.union,
  TAG.inheritance,
  TAG.ptrToMember,
  TAG.subrange,
  TAG.base,
  TAG.const,
  TAG.volatile,
  TAG.restrict,
  TAG.namespace,
  TAG.unspecified,
  TAG.rvalueReference,
  TAG.atomic,
  TAG.immutable,
  TAG.compileUnit,
  TAG.partialUnit,
  TAG.typeUnit,
  TAG.importedUnit,
]);

/** Attributes the layout needs; every other one is skipped. */
const WANTED = new Set<number>([
  AT.name,
  AT.byteSize,
  AT.bitOffset,
  AT.bitSize,
  AT.lowerBound,
  AT.upperBound,
  AT.count,
  AT.dataMemberLocation,
  AT.declaration,
  AT.language,
  AT.type,
  AT.import,
  AT.strOffsetsBase,
  AT.dataBitOffset,
  AT.signature,
]);

interface Abbrev {
  tag: number;
  children: boolean;
  attrs: number[];
  forms: number[];
  consts: number[];
  /** Byte length of all attributes when every form has a fixed size for this unit, else -1. */
  fixed: number;
  wanted: boolean;
  /** Per attribute: does the layout need its value (else it is skipped). */
  keep: boolean[];
}

/**
 * One type-related DIE. Offsets are global: .debug_info offset, plus ALT
 * for the supplementary file. A class with every field set up front keeps
 * the hundreds of thousands of records one shape (and cheaper to collect).
 */
class Die {
  name: string | undefined = undefined;
  byteSize: number | undefined = undefined;
  type: number | undefined = undefined;
  /** Members (struct/union/class) or subranges (array). */
  children: Die[] | undefined = undefined;
  declaration = false;
  memberLocation: number | undefined = undefined;
  bitSize: number | undefined = undefined;
  dataBitOffset: number | undefined = undefined;
  bitOffset: number | undefined = undefined;
  count: number | undefined = undefined;
  /** Qualified name prefix (C++ namespaces and enclosing classes). */
  scope: string | undefined = undefined;
  /** A declaration standing for a type defined in a type unit (DW_AT_signature): that type's placeholder offset. */
  signature: number | undefined = undefined;
  constructor(readonly tag: number) {}
}

/** Offsets in the supplementary file are kept apart from the main file's by this base. */
const ALT = 2 ** 40;
/** .debug_types (DWARF 4 type units) offsets start here. */
const TYPES = 2 ** 41;
/** A DW_FORM_ref_sig8 reference becomes SIG + the signature's index until the type units are all read. */
const SIG = 2 ** 42;

interface Unit {
  /** Where the unit's header starts. */
  offset: number;
  /** In the dwz supplementary file. */
  alt: boolean;
  /** A type unit (DWARF 4 .debug_types, or DWARF 5 DW_UT_type). */
  typeUnit: boolean;
  /** Where its first DIE starts: what DW_AT_import of an imported unit refers to. */
  die: number;
  name: string;
  partial: boolean;
  imports: number[];
  structs: number[];
}

interface FileCtx {
  s: DebugSections;
  /** This is the dwz supplementary file. */
  isAlt: boolean;
  base: number;
  altBase: number | undefined;
  altStr: Buffer | undefined;
}

/** Reads the DWARF of one file (and its supplementary file) into DIE records. */
class Reader {
  readonly dies = new Map<number, Die>();
  /** The first typedef naming each anonymous structure. */
  readonly typedefOf = new Map<number, string>();
  readonly units: Unit[] = [];
  readonly versions = new Set<number>();
  /** Type-unit signatures: the placeholder index of each, and the global offset of the type it defines. */
  private readonly sigIndex = new Map<bigint, number>();
  private readonly sigTarget = new Map<bigint, number>();
  private readonly abbrevCache = new Map<string, Abbrev[]>();

  private buf!: Buffer;
  private pos = 0;
  private offsetSize = 4;
  private addrSize = 8;
  private version = 4;
  private strOffsetsBase = 8;

  read(ctx: FileCtx): void {
    const info = ctx.s.info;
    let at = 0;
    while (at < info.length) at = this.unit(ctx, info, at, false);
    const types = ctx.s.types;
    if (types) {
      const tctx = { ...ctx, base: ctx.base + TYPES };
      at = 0;
      while (at < types.length) at = this.unit(tctx, types, at, true);
    }
  }

  /**
   * Makes every DW_FORM_ref_sig8 placeholder stand for the DIE of the type
   * unit it designates, and moves typedef names given through a placeholder
   * or a DW_AT_signature declaration onto that DIE.
   */
  linkSignatures(): void {
    const targets: Array<number | undefined> = [];
    for (const [sig, idx] of this.sigIndex) {
      const target = this.sigTarget.get(sig);
      const d = target === undefined ? undefined : this.dies.get(target);
      if (!d) continue;
      targets[idx] = target;
      this.dies.set(SIG + idx, d);
    }
    for (const [off, name] of [...this.typedefOf]) {
      const sig = off >= SIG ? off : this.dies.get(off)?.signature;
      const target = sig === undefined ? undefined : targets[sig - SIG];
      if (target !== undefined && !this.typedefOf.has(target)) this.typedefOf.set(target, name);
    }
  }

  private signature(sig: bigint): number {
    let idx = this.sigIndex.get(sig);
    if (idx === undefined) this.sigIndex.set(sig, (idx = this.sigIndex.size));
    return SIG + idx;
  }

  private fail(detail: string, at = this.pos): never {
    throw badDebug('.debug_info', detail, at);
  }

  private u8(): number {
    if (this.pos >= this.buf.length) this.fail('runs past the end of its unit');
    return this.buf[this.pos++]!;
  }

  private uleb(): number {
    const b = this.buf;
    let result = 0;
    let mul = 1;
    for (;;) {
      if (this.pos >= b.length) this.fail('runs past the end of its unit');
      const x = b[this.pos++]!;
      result += (x & 0x7f) * mul;
      if ((x & 0x80) === 0) return result;
      mul *= 128;
      if (mul > 2 ** 63) this.fail('has an over-long LEB128 number');
    }
  }

  private sleb(): number {
    const b = this.buf;
    let result = 0;
    let mul = 1;
    let x: number;
    do {
      if (this.pos >= b.length) this.fail('runs past the end of its unit');
      x = b[this.pos++]!;
      result += (x & 0x7f) * mul;
      mul *= 128;
      if (mul > 2 ** 70) this.fail('has an over-long LEB128 number');
    } while (x & 0x80);
    if (x & 0x40) result -= mul;
    return result;
  }

  private fixed(n: number): number {
    const b = this.buf;
    const p = this.pos;
    if (p + n > b.length) this.fail('runs past the end of its unit');
    this.pos = p + n;
    switch (n) {
      case 1:
        return b[p]!;
      case 2:
        return b.readUInt16LE(p);
      case 4:
        return b.readUInt32LE(p);
      case 8: {
        const lo = b.readUInt32LE(p);
        const hi = b.readUInt32LE(p + 4);
        return hi * 2 ** 32 + lo;
      }
      default:
        return 0;
    }
  }

  /** Units share the linker-merged string tables: each string is decoded once. */
  private readonly strings = new Map<Buffer, Map<number, string>>();

  private cstr(table: Buffer | undefined, off: number, what: string): string {
    if (!table || off >= table.length) this.fail(`refers to offset ${off} of ${what}, which ${table ? 'is shorter' : 'is missing'}`);
    let cache = this.strings.get(table);
    if (!cache) this.strings.set(table, (cache = new Map()));
    let s = cache.get(off);
    if (s === undefined) {
      const end = table.indexOf(0, off);
      s = table.toString('utf8', off, end < 0 ? table.length : end);
      cache.set(off, s);
    }
    return s;
  }

  private strx(ctx: FileCtx, index: number): string {
    const t = ctx.s.strOffsets;
    const at = this.strOffsetsBase + index * this.offsetSize;
    if (!t || at + this.offsetSize > t.length) this.fail(`string index ${index} is outside .debug_str_offsets`);
    const off = this.offsetSize === 8 ? Number(t.readBigUInt64LE(at)) : t.readUInt32LE(at);
    return this.cstr(ctx.s.str, off, '.debug_str');
  }

  /** The fixed size of a form in this unit, or -1. */
  private formSize(form: number): number {
    switch (form) {
      case F.flagPresent:
      case F.implicitConst:
        return 0;
      case F.data1:
      case F.ref1:
      case F.flag:
      case F.strx1:
      case F.addrx1:
        return 1;
      case F.data2:
      case F.ref2:
      case F.strx2:
      case F.addrx2:
        return 2;
      case F.strx3:
      case F.addrx3:
        return 3;
      case F.data4:
      case F.ref4:
      case F.refSup4:
      case F.strx4:
      case F.addrx4:
        return 4;
      case F.data8:
      case F.ref8:
      case F.refSig8:
      case F.refSup8:
        return 8;
      case F.data16:
        return 16;
      case F.addr:
        return this.addrSize;
      case F.refAddr:
        return this.version <= 2 ? this.addrSize : this.offsetSize;
      case F.strp:
      case F.lineStrp:
      case F.secOffset:
      case F.strpSup:
      case F.gnuRefAlt:
      case F.gnuStrpAlt:
        return this.offsetSize;
      default:
        return -1;
    }
  }

  private abbrevs(ctx: FileCtx, offset: number): Abbrev[] {
    const key = `${ctx.base}:${offset}:${this.version}:${this.offsetSize}:${this.addrSize}`;
    let table = this.abbrevCache.get(key);
    if (table) return table;
    table = [];
    const saved = this.buf;
    const savedPos = this.pos;
    this.buf = ctx.s.abbrev;
    this.pos = offset;
    try {
      for (;;) {
        const code = this.uleb();
        if (code === 0) break;
        const tag = this.uleb();
        const children = this.u8() !== 0;
        const a: Abbrev = { tag, children, attrs: [], forms: [], consts: [], fixed: 0, wanted: TYPE_TAGS.has(tag), keep: [] };
        for (;;) {
          const attr = this.uleb();
          const form = this.uleb();
          if (attr === 0 && form === 0) break;
          a.attrs.push(attr);
          a.forms.push(form);
          a.keep.push(WANTED.has(attr));
          a.consts.push(form === F.implicitConst ? this.sleb() : 0);
          const size = this.formSize(form);
          a.fixed = a.fixed < 0 || size < 0 ? -1 : a.fixed + size;
        }
        if (code > 1_000_000) throw badDebug('.debug_abbrev', `abbreviation code ${code} is implausibly large`, this.pos);
        table[code] = a;
      }
    } catch (e) {
      if (e instanceof UlpError && e.code === ElfErrorCode.MALFORMED && this.buf === ctx.s.abbrev) {
        throw badDebug('.debug_abbrev', `the table at ${offset} is cut short or damaged`);
      }
      throw e;
    } finally {
      this.buf = saved;
      this.pos = savedPos;
    }
    this.abbrevCache.set(key, table);
    return table;
  }

  /** Skips one attribute value of `form`. */
  private skip(form: number): void {
    const size = this.formSize(form);
    if (size >= 0) {
      this.pos += size;
      if (this.pos > this.buf.length) this.fail('runs past the end of its unit');
      return;
    }
    switch (form) {
      case F.string: {
        const end = this.buf.indexOf(0, this.pos);
        if (end < 0) this.fail('has an unterminated string');
        this.pos = end + 1;
        return;
      }
      // The length is read before pos is: `this.pos += this.uleb()` would add to the old pos.
      case F.block1: {
        const n = this.u8();
        this.pos += n;
        break;
      }
      case F.block2: {
        const n = this.fixed(2);
        this.pos += n;
        break;
      }
      case F.block4: {
        const n = this.fixed(4);
        this.pos += n;
        break;
      }
      case F.block:
      case F.exprloc: {
        const n = this.uleb();
        this.pos += n;
        break;
      }
      case F.sdata:
        this.sleb();
        return;
      case F.udata:
      case F.refUdata:
      case F.strx:
      case F.addrx:
      case F.loclistx:
      case F.rnglistx:
      case F.gnuAddrIndex:
      case F.gnuStrIndex:
        this.uleb();
        return;
      case F.indirect:
        this.skip(this.uleb());
        return;
      default:
        throw unsupported(`.debug_info at ${this.pos} uses attribute form 0x${form.toString(16)}, which this reader does not know`, { form, offset: this.pos });
    }
    if (this.pos > this.buf.length) this.fail('runs past the end of its unit');
  }

  /**
   * One attribute value: a number (constants, references made global,
   * member locations), a string (names), true (flags), or undefined for
   * forms the layout cannot use (blocks, type-unit signatures).
   */
  private value(ctx: FileCtx, form: number, implicit: number, unitOffset: number): number | string | boolean | undefined {
    switch (form) {
      case F.data1:
      case F.data2:
      case F.data4:
      case F.data8:
      case F.udata:
        return form === F.udata ? this.uleb() : this.fixed(this.formSize(form));
      case F.sdata:
        return this.sleb();
      case F.implicitConst:
        return implicit;
      case F.flag:
        return this.u8() !== 0;
      case F.flagPresent:
        return true;
      case F.ref1:
      case F.ref2:
      case F.ref4:
      case F.ref8:
        return ctx.base + unitOffset + this.fixed(this.formSize(form));
      case F.refUdata:
        return ctx.base + unitOffset + this.uleb();
      case F.refAddr:
        return ctx.base + this.fixed(this.formSize(form));
      case F.gnuRefAlt: {
        const off = this.fixed(this.offsetSize);
        return ctx.altBase === undefined ? undefined : ctx.altBase + off;
      }
      case F.string: {
        const end = this.buf.indexOf(0, this.pos);
        if (end < 0) this.fail('has an unterminated string');
        const s = this.buf.toString('utf8', this.pos, end);
        this.pos = end + 1;
        return s;
      }
      case F.strp:
        return this.cstr(ctx.s.str, this.fixed(this.offsetSize), '.debug_str');
      case F.lineStrp:
        return this.cstr(ctx.s.lineStr, this.fixed(this.offsetSize), '.debug_line_str');
      case F.gnuStrpAlt: {
        const off = this.fixed(this.offsetSize);
        return ctx.altStr ? this.cstr(ctx.altStr, off, 'the supplementary .debug_str') : undefined;
      }
      case F.strx:
      case F.gnuStrIndex:
        return this.strx(ctx, this.uleb());
      case F.strx1:
      case F.strx2:
      case F.strx3:
      case F.strx4: {
        const n = form - F.strx1 + 1;
        let idx = 0;
        for (let i = 0; i < n; i++) idx += this.u8() * 256 ** i;
        return this.strx(ctx, idx);
      }
      case F.exprloc:
      case F.block1: {
        // A member location may be an expression: DW_OP_plus_uconst N is the plain "at offset N".
        const len = form === F.exprloc ? this.uleb() : this.u8();
        const end = this.pos + len;
        if (end > this.buf.length) this.fail('runs past the end of its unit');
        let v: number | undefined;
        if (len > 0 && this.buf[this.pos] === 0x23) {
          this.pos++;
          v = this.uleb();
          if (this.pos !== end) v = undefined;
        }
        this.pos = end;
        return v;
      }
      case F.refSig8: {
        if (this.pos + 8 > this.buf.length) this.fail('runs past the end of its unit');
        const sig = this.buf.readBigUInt64LE(this.pos);
        this.pos += 8;
        return this.signature(sig);
      }
      case F.indirect:
        return this.value(ctx, this.uleb(), implicit, unitOffset);
      default:
        this.skip(form);
        return undefined;
    }
  }

  /** Reads the unit at `start` of .debug_info (or .debug_types); returns where the next one begins. */
  private unit(ctx: FileCtx, info: Buffer, start: number, typesSection: boolean): number {
    this.buf = info;
    this.pos = start;
    if (start + 4 > info.length) this.fail('ends inside a unit header', start);
    let length = info.readUInt32LE(start);
    this.pos += 4;
    this.offsetSize = 4;
    if (length === 0xffffffff) {
      this.offsetSize = 8;
      length = this.fixed(8);
    } else if (length >= 0xfffffff0) {
      this.fail(`unit length 0x${length.toString(16)} is reserved`, start);
    }
    const end = this.pos + length;
    if (end > info.length || length < 2) this.fail(`unit of ${length} bytes does not fit the section`, start);
    // Everything in the unit is read inside its bounds.
    const outer = this.buf;
    this.buf = info.subarray(0, end);
    this.version = this.fixed(2);
    if (this.version < 2 || this.version > 5) throw unsupported(`the unit at ${start} of .debug_info is DWARF version ${this.version}; versions 2 to 5 are read`, { offset: start });
    this.versions.add(this.version);
    let abbrevOffset: number;
    let typeUnit = typesSection;
    const typeHeader = () => {
      if (this.pos + 8 > this.buf.length) this.fail('ends inside a unit header', start);
      const sig = this.buf.readBigUInt64LE(this.pos);
      this.pos += 8;
      const typeOffset = this.fixed(this.offsetSize);
      if (!this.sigTarget.has(sig)) this.sigTarget.set(sig, ctx.base + start + typeOffset);
    };
    if (this.version === 5) {
      const unitType = this.u8();
      this.addrSize = this.u8();
      abbrevOffset = this.fixed(this.offsetSize);
      if (unitType === 2 || unitType === 6) {
        typeUnit = true;
        typeHeader();
      } else if (unitType === 4 || unitType === 5) this.pos += 8; // skeleton, split compile: dwo id
    } else {
      abbrevOffset = this.fixed(this.offsetSize);
      this.addrSize = this.u8();
      if (typesSection) typeHeader();
    }
    if (this.addrSize !== 4 && this.addrSize !== 8) this.fail(`address size ${this.addrSize} is impossible`, start);
    if (abbrevOffset >= ctx.s.abbrev.length) this.fail(`abbreviation offset ${abbrevOffset} is outside .debug_abbrev`, start);
    const table = this.abbrevs(ctx, abbrevOffset);
    this.strOffsetsBase = 8;
    this.dies1(ctx, table, start, typeUnit);
    this.buf = outer;
    return end;
  }

  /** Walks the DIEs of one unit. */
  private dies1(ctx: FileCtx, table: Abbrev[], unitOffset: number, typeUnit: boolean): void {
    const unit: Unit = { offset: ctx.base + unitOffset, alt: ctx.isAlt, typeUnit, die: ctx.base + this.pos, name: '', partial: false, imports: [], structs: [] };
    let cpp = false;
    // Per depth: the record DIEs become children of (struct members, array subranges), and the scope prefix.
    const parents: Array<Die | undefined> = [];
    const scopes: string[] = [''];
    let first = true;
    const b = this.buf;
    while (this.pos < b.length) {
      const dieOffset = this.pos;
      const code = this.uleb();
      if (code === 0) {
        parents.pop();
        scopes.pop();
        if (parents.length === 0 && !first) break;
        continue;
      }
      const a = table[code];
      if (!a) this.fail(`DIE uses abbreviation ${code}, which its table does not define`, dieOffset);
      if (!a.wanted) {
        if (a.fixed >= 0) {
          this.pos += a.fixed;
          if (this.pos > b.length) this.fail('runs past the end of its unit');
        } else {
          for (let i = 0; i < a.forms.length; i++) this.skip(a.forms[i]!);
        }
        if (a.children) {
          parents.push(undefined);
          scopes.push(scopes[scopes.length - 1]!);
        }
        continue;
      }
      const die = new Die(a.tag);
      let strx: number | undefined;
      let upper: number | undefined;
      let lower = 0;
      for (let i = 0; i < a.forms.length; i++) {
        const attr = a.attrs[i]!;
        const form = a.forms[i]!;
        if (!a.keep[i]) {
          this.skip(form);
          continue;
        }
        if (first && attr === AT.name && (form === F.strx || (form >= F.strx1 && form <= F.strx4))) {
          // The unit DIE may name itself before it says where its string offsets start.
          strx = form === F.strx ? this.uleb() : this.fixed(form - F.strx1 + 1);
          continue;
        }
        const v = this.value(ctx, form, a.consts[i]!, unitOffset);
        if (v === undefined) continue;
        switch (attr) {
          case AT.name:
            if (typeof v === 'string') die.name = v;
            break;
          case AT.byteSize:
            if (typeof v === 'number') die.byteSize = v;
            break;
          case AT.type:
            if (typeof v === 'number') die.type = v;
            break;
          case AT.dataMemberLocation:
            if (typeof v === 'number') die.memberLocation = v;
            break;
          case AT.bitSize:
            if (typeof v === 'number') die.bitSize = v;
            break;
          case AT.dataBitOffset:
            if (typeof v === 'number') die.dataBitOffset = v;
            break;
          case AT.bitOffset:
            if (typeof v === 'number') die.bitOffset = v;
            break;
          case AT.declaration:
            die.declaration = v === true || (typeof v === 'number' && v !== 0);
            break;
          case AT.count:
            if (typeof v === 'number') die.count = v;
            break;
          case AT.upperBound:
            if (typeof v === 'number') upper = v;
            break;
          case AT.lowerBound:
            if (typeof v === 'number') lower = v;
            break;
          case AT.language:
            if (typeof v === 'number') cpp = CPP_LANGUAGES.has(v);
            break;
          case AT.import:
            if (typeof v === 'number') unit.imports.push(v);
            break;
          case AT.signature:
            if (typeof v === 'number') die.signature = v;
            break;
          case AT.strOffsetsBase:
            if (typeof v === 'number') this.strOffsetsBase = v;
            break;
        }
      }
      // A flexible array member has no bound; gcc writes upper_bound -1 (as data8 0xff..ff) for zero-length ones.
      if (upper !== undefined && die.count === undefined && upper >= lower && upper < 2 ** 48) die.count = upper - lower + 1;
      if (first) {
        first = false;
        if (strx !== undefined) die.name = this.strx(ctx, strx);
        unit.name = die.name ?? '';
        unit.partial = a.tag === TAG.partialUnit;
        if (!a.children) break;
        parents.push(undefined);
        scopes.push('');
        continue;
      }
      const parent = parents[parents.length - 1];
      const scope = scopes[scopes.length - 1]!;
      if (scope) die.scope = scope;
      const off = ctx.base + dieOffset;
      if (a.tag === TAG.member || a.tag === TAG.inheritance || a.tag === TAG.subrange) {
        if (parent) (parent.children ??= []).push(die);
      } else if (a.tag !== TAG.namespace && a.tag !== TAG.importedUnit) {
        this.dies.set(off, die);
      }
      if (a.tag === TAG.typedef && die.name !== undefined && die.type !== undefined && !this.typedefOf.has(die.type)) this.typedefOf.set(die.type, die.name);
      if ((a.tag === TAG.structure || a.tag === TAG.union || a.tag === TAG.class) && !die.declaration && die.byteSize !== undefined) unit.structs.push(off);
      if (a.children) {
        const aggregate = a.tag === TAG.structure || a.tag === TAG.union || a.tag === TAG.class;
        parents.push(aggregate || a.tag === TAG.array ? die : undefined);
        let inner = scope;
        if (a.tag === TAG.namespace) inner = `${scope}${die.name ?? '(anonymous namespace)'}::`;
        else if (aggregate && cpp && die.name) inner = `${scope}${die.name}::`;
        scopes.push(inner);
      }
    }
    this.units.push(unit);
  }
}

/**
 * Turns DIE records into layouts: names and sizes of types are resolved
 * through typedefs, qualifiers and arrays, once per DIE.
 */
class Layouts {
  private readonly names = new Map<number, string>();
  private readonly sizes = new Map<number, number | undefined>();

  constructor(private readonly r: Reader) {}

  /** The DIE at `off`; a declaration that names a type unit's type stands for that type. */
  private die(off: number | undefined): Die | undefined {
    if (off === undefined) return undefined;
    const d = this.r.dies.get(off);
    return d?.signature !== undefined ? (this.r.dies.get(d.signature) ?? d) : d;
  }

  /** The offset a type reference finally designates (through a DW_AT_signature declaration). */
  private target(off: number | undefined): number | undefined {
    const d = off === undefined ? undefined : this.r.dies.get(off);
    return d?.signature !== undefined && this.r.dies.has(d.signature) ? d.signature : off;
  }

  private strip(off: number | undefined): Die | undefined {
    for (let i = 0; i < 64 && off !== undefined; i++) {
      const d = this.die(off);
      if (!d) return undefined;
      if (d.tag !== TAG.typedef && d.tag !== TAG.const && d.tag !== TAG.volatile && d.tag !== TAG.atomic && d.tag !== TAG.restrict && d.tag !== TAG.immutable) return d;
      off = d.type;
    }
    return undefined;
  }

  /** The key a structure is known by, or undefined for an anonymous one no typedef names. */
  keyOf(off: number, d: Die): string | undefined {
    const kind = d.tag === TAG.union ? 'union' : d.tag === TAG.class ? 'class' : 'struct';
    if (d.name !== undefined) return d.scope ? `${d.scope}${d.name}` : `${kind} ${d.name}`;
    const t = this.r.typedefOf.get(off);
    return t === undefined ? undefined : `${d.scope ?? ''}${t}`;
  }

  typeName(ref: number | undefined, depth = 0): string {
    const off = this.target(ref);
    if (off === undefined) return 'void';
    const known = this.names.get(off);
    if (known !== undefined) return known;
    const d = this.r.dies.get(off);
    let n: string;
    if (!d || depth > 32) n = '?';
    else {
      switch (d.tag) {
        case TAG.structure:
        case TAG.union:
        case TAG.class:
          n = this.keyOf(off, d) ?? `${d.tag === TAG.union ? 'union' : 'struct'} <anonymous>`;
          break;
        case TAG.enumeration:
          n = d.name !== undefined ? `enum ${d.scope ?? ''}${d.name}` : 'enum <anonymous>';
          break;
        case TAG.pointer:
          n = this.die(d.type)?.tag === TAG.subroutine ? 'function pointer' : `${this.typeName(d.type, depth + 1)} *`;
          break;
        case TAG.reference:
          n = `${this.typeName(d.type, depth + 1)} &`;
          break;
        case TAG.rvalueReference:
          n = `${this.typeName(d.type, depth + 1)} &&`;
          break;
        case TAG.const:
          n = `const ${this.typeName(d.type, depth + 1)}`;
          break;
        case TAG.volatile:
          n = `volatile ${this.typeName(d.type, depth + 1)}`;
          break;
        case TAG.atomic:
          n = `_Atomic ${this.typeName(d.type, depth + 1)}`;
          break;
        case TAG.restrict:
          n = `${this.typeName(d.type, depth + 1)} restrict`;
          break;
        case TAG.array:
          n = `${this.typeName(d.type, depth + 1)}${(d.children ?? []).map((c) => (c.count !== undefined && c.count >= 0 ? `[${c.count}]` : '[]')).join('') || '[]'}`;
          break;
        case TAG.subroutine:
          n = 'function';
          break;
        case TAG.ptrToMember:
          n = 'member pointer';
          break;
        default:
          n = d.name !== undefined ? `${d.scope ?? ''}${d.name}` : '?';
      }
    }
    this.names.set(off, n);
    return n;
  }

  typeSize(ref: number | undefined, depth = 0): number | undefined {
    const off = this.target(ref);
    if (off === undefined) return undefined;
    if (this.sizes.has(off)) return this.sizes.get(off);
    const d = this.r.dies.get(off);
    let s: number | undefined;
    if (d && depth <= 32) {
      if (d.byteSize !== undefined) s = d.byteSize;
      else if (d.tag === TAG.pointer || d.tag === TAG.reference || d.tag === TAG.rvalueReference) s = 8;
      else if (d.tag === TAG.array) {
        const el = this.typeSize(d.type, depth + 1);
        let n = 1;
        for (const c of d.children ?? []) n = c.count !== undefined && c.count >= 0 && n !== undefined ? n * c.count : NaN;
        s = el === undefined || Number.isNaN(n) || (d.children ?? []).length === 0 ? undefined : el * n;
      } else if (d.tag !== TAG.subroutine && d.tag !== TAG.structure && d.tag !== TAG.union && d.tag !== TAG.class) s = this.typeSize(d.type, depth + 1);
    }
    this.sizes.set(off, s);
    return s;
  }

  /** An anonymous structure or union that no typedef names: its fields are shown as the outer structure's. */
  private anonymousAggregate(off: number | undefined): Die | undefined {
    const inner = this.strip(off);
    if (!inner || (inner.tag !== TAG.structure && inner.tag !== TAG.union) || inner.name !== undefined) return undefined;
    for (let i = 0, o = this.target(off); i < 64 && o !== undefined; i++) {
      if (this.r.typedefOf.has(o)) return undefined;
      const d = this.die(o);
      if (!d || d === inner) break;
      o = this.target(d.type);
    }
    return inner;
  }

  /**
   * The members of `d` at `base` bytes into the outer structure. Members of
   * anonymous aggregates are listed in their place: a C11 anonymous member
   * by its fields' own names, a named one as `outer.field`.
   */
  members(d: Die, base: number, out: StructMember[], prefix = '', depth = 0): void {
    for (const m of d.children ?? []) {
      if (m.tag === TAG.subrange) continue;
      // DWARF 4 C++ static members are members without a location and with DW_AT_declaration.
      if (m.declaration) continue;
      let bitOffset: number | undefined;
      let offset = m.memberLocation;
      if (m.dataBitOffset !== undefined) {
        bitOffset = m.dataBitOffset;
        offset = Math.floor(m.dataBitOffset / 8);
      } else if (m.bitSize !== undefined && m.bitOffset !== undefined) {
        // DWARF 2/3 style: counted from the most significant bit of a storage unit of byte_size bytes.
        const unitBytes = m.byteSize ?? this.typeSize(m.type) ?? 0;
        bitOffset = (m.memberLocation ?? 0) * 8 + unitBytes * 8 - m.bitOffset - m.bitSize;
        offset = Math.floor(bitOffset / 8);
      }
      if (offset === undefined) {
        if (d.tag !== TAG.union) continue; // a location DWARF does not give as a constant (virtual base)
        offset = 0;
      }
      const name = m.tag === TAG.inheritance ? `<base ${this.typeName(m.type)}>` : m.name;
      if (m.bitSize === undefined && depth < 16) {
        const inner = this.anonymousAggregate(m.type);
        if (inner) {
          this.members(inner, base + offset, out, name === undefined ? prefix : `${prefix}${name}.`, depth + 1);
          continue;
        }
      }
      const member: StructMember = { name: `${prefix}${name ?? `<unnamed at ${base + offset}>`}`, offset: base + offset, type: this.typeName(m.type) };
      if (bitOffset !== undefined) member.bitOffset = base * 8 + bitOffset;
      if (m.bitSize !== undefined) member.bitSize = m.bitSize;
      const size = this.typeSize(m.type);
      if (size !== undefined) member.size = size;
      out.push(member);
    }
  }
}

export interface ReadOptions {
  /** The dwz supplementary file's debug sections (the file .gnu_debugaltlink names), when it was found. */
  supplementary?: DebugSections;
}

/**
 * The named structure layouts in these debug sections, deduplicated across
 * compile units by name; a name defined differently in different units
 * keeps every definition, each marked ambiguous. Throws ELF_MALFORMED when
 * the DWARF is damaged.
 */
export function readStructLayouts(s: DebugSections, options: ReadOptions = {}): StructLayouts {
  const r = new Reader();
  const alt = options.supplementary;
  const useAlt = alt !== undefined && s.altLink !== undefined && (alt.buildId === undefined || alt.buildId === s.altLink.buildId);
  r.read({ s, isAlt: false, base: 0, altBase: useAlt ? ALT : undefined, altStr: useAlt ? alt.str : undefined });
  if (useAlt) r.read({ s: alt, isAlt: true, base: ALT, altBase: undefined, altStr: undefined });
  r.linkSignatures();

  // Units of the supplementary file count only when this file imports them (directly or through each other).
  const byOffset = new Map(r.units.map((u) => [u.die, u]));
  const reached = new Set<number>();
  const visit = (u: Unit) => {
    if (reached.has(u.offset)) return;
    reached.add(u.offset);
    for (const i of u.imports) {
      const v = byOffset.get(i);
      if (v) visit(v);
    }
  };
  for (const u of r.units) if (!u.alt || u.typeUnit) visit(u);

  const L = new Layouts(r);
  const variants = new Map<string, Map<string, StructLayout>>();
  for (const u of r.units) {
    if (!reached.has(u.offset)) continue;
    for (const off of u.structs) {
      const d = r.dies.get(off)!;
      const name = L.keyOf(off, d);
      if (name === undefined) continue;
      const members: StructMember[] = [];
      L.members(d, 0, members);
      const kind = d.tag === TAG.union ? 'union' : d.tag === TAG.class ? 'class' : 'struct';
      let sig = `${d.byteSize}`;
      for (const m of members) sig += `;${m.name}:${m.offset}:${m.bitOffset ?? ''}:${m.bitSize ?? ''}:${m.size ?? ''}:${m.type}`;
      let byName = variants.get(name);
      if (!byName) variants.set(name, (byName = new Map()));
      const unitName = u.typeUnit ? '(type unit)' : u.partial || u.alt ? '(dwz)' : u.name;
      const existing = byName.get(sig);
      if (existing) {
        if (!existing.units.includes(unitName)) existing.units.push(unitName);
      } else byName.set(sig, { kind, name, size: d.byteSize!, members, units: [unitName], ambiguous: false });
    }
  }
  const byName = new Map<string, StructLayout[]>();
  for (const [name, m] of variants) {
    const list = [...m.values()];
    if (list.length > 1) for (const l of list) l.ambiguous = true;
    byName.set(name, list);
  }
  const out: StructLayouts = { byName, units: r.units.filter((u) => !u.alt && !u.typeUnit).length, versions: [...r.versions].sort() };
  if (s.altLink && !useAlt) out.missingSupplementary = s.altLink.path;
  return out;
}
