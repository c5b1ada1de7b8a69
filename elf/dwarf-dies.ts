/**
 * The DIE walk behind the structure layouts: reads every unit of
 * .debug_info (and .debug_types, and a dwz supplementary file) and keeps a
 * record of each DIE a layout needs, by global offset. Every other DIE is
 * skipped by its abbreviation, most of them with one addition
 * (Abbrev.fixed). Damage is ELF_MALFORMED; valid DWARF this walk does not
 * read is ELF_DWARF_UNSUPPORTED.
 */
import { UlpError } from '../common/errors.js';
import type { DebugSections } from './debug-sections.js';
import { AT, F, TAG } from './dwarf-constants.js';
import { ElfErrorCode, dwarfUnsupported, malformed } from './errors.js';

function badDebug(what: string, detail: string, at?: number): UlpError {
  return malformed(what, detail, at);
}

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
export class Die {
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
export const ALT = 2 ** 40;
/** .debug_types (DWARF 4 type units) offsets start here. */
const TYPES = 2 ** 41;
/** A DW_FORM_ref_sig8 reference becomes SIG + the signature's index until the type units are all read. */
const SIG = 2 ** 42;

export interface Unit {
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
  /** Its layouts were built while streaming, and its DIEs dropped. */
  done: boolean;
}

/**
 * Thrown while streaming when a unit refers to a type outside itself that
 * is not kept (another compile unit, as LTO output does, or a type unit
 * read later): the caller starts again keeping every DIE.
 */
export class NeedsAllUnits extends Error {}

export interface FileCtx {
  s: DebugSections;
  /** This is the dwz supplementary file. */
  isAlt: boolean;
  base: number;
  altBase: number | undefined;
  altStr: Buffer | undefined;
}

/** Reads the DWARF of one file (and its supplementary file) into DIE records. */
export class Reader {
  readonly dies = new Map<number, Die>();
  /** The first typedef naming each anonymous structure. */
  readonly typedefOf = new Map<number, string>();
  readonly units: Unit[] = [];
  readonly versions = new Set<number>();
  /** Type-unit signatures: the placeholder index of each, and the global offset of the type it defines. */
  private readonly sigIndex = new Map<bigint, number>();
  private readonly sigTarget = new Map<bigint, number>();
  private readonly abbrevCache = new Map<string, Abbrev[]>();

  /**
   * Streaming: `onUnit` builds a compile unit's layouts as soon as it is
   * read, and its DIEs are dropped, so memory holds one unit (plus the
   * partial, type and supplementary units, which others refer to).
   */
  constructor(
    private readonly streaming = false,
    private readonly onUnit: (u: Unit) => void = () => {},
  ) {}

  /** The current unit's global range and the DIEs recorded in it. */
  private unitStart = 0;
  private unitEnd = 0;
  private unitDies: number[] = [];

  private buf!: Buffer;
  private pos = 0;
  private offsetSize = 4;
  private addrSize = 8;
  private version = 4;
  private strOffsetsBase = 8;

  read(ctx: FileCtx): void {
    // Type units first: compile units refer to them.
    const types = ctx.s.types;
    let at = 0;
    if (types) {
      const tctx = { ...ctx, base: ctx.base + TYPES };
      while (at < types.length) at = this.unit(tctx, types, at, true);
    }
    const info = ctx.s.info;
    at = 0;
    while (at < info.length) at = this.unit(ctx, info, at, false);
  }

  /** While streaming, a reference out of the current unit must reach a DIE that is kept. */
  private checkRef(v: number): void {
    if (this.streaming && (v < this.unitStart || v >= this.unitEnd) && !this.dies.has(v))
      throw new NeedsAllUnits();
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
    if (!table || off >= table.length)
      this.fail(`refers to offset ${off} of ${what}, which ${table ? 'is shorter' : 'is missing'}`);
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
    if (!t || at + this.offsetSize > t.length)
      this.fail(`string index ${index} is outside .debug_str_offsets`);
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
    // Units usually have a table each; dwz and the linker share some. A few recent ones are what is reused.
    if (this.abbrevCache.size >= 256) this.abbrevCache.clear();
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
        const a: Abbrev = {
          tag,
          children,
          attrs: [],
          forms: [],
          consts: [],
          fixed: 0,
          wanted: TYPE_TAGS.has(tag),
          keep: [],
        };
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
        if (code > 1_000_000)
          throw badDebug('.debug_abbrev', `abbreviation code ${code} is implausibly large`, this.pos);
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
        throw dwarfUnsupported(
          `.debug_info at ${this.pos} uses attribute form 0x${form.toString(16)}, which this reader does not know`,
          { form, offset: this.pos },
        );
    }
    if (this.pos > this.buf.length) this.fail('runs past the end of its unit');
  }

  /**
   * One attribute value: a number (constants, references made global,
   * member locations), a string (names), true (flags), or undefined for
   * forms the layout cannot use (blocks, type-unit signatures).
   */
  private value(
    ctx: FileCtx,
    form: number,
    implicit: number,
    unitOffset: number,
  ): number | string | boolean | undefined {
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
    if (this.version < 2 || this.version > 5)
      throw dwarfUnsupported(
        `the unit at ${start} of .debug_info is DWARF version ${this.version}; versions 2 to 5 are read`,
        { offset: start },
      );
    this.versions.add(this.version);
    let abbrevOffset: number;
    let typeUnit = typesSection;
    let typeSig: bigint | undefined;
    const typeHeader = () => {
      if (this.pos + 8 > this.buf.length) this.fail('ends inside a unit header', start);
      const sig = this.buf.readBigUInt64LE(this.pos);
      typeSig = sig;
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
    if (this.addrSize !== 4 && this.addrSize !== 8)
      this.fail(`address size ${this.addrSize} is impossible`, start);
    if (abbrevOffset >= ctx.s.abbrev.length)
      this.fail(`abbreviation offset ${abbrevOffset} is outside .debug_abbrev`, start);
    const table = this.abbrevs(ctx, abbrevOffset);
    this.strOffsetsBase = 8;
    this.unitStart = ctx.base + start;
    this.unitEnd = ctx.base + end;
    this.unitDies = [];
    const unit = this.dies1(ctx, table, start, typeUnit);
    this.buf = outer;
    if (typeUnit && typeSig !== undefined) {
      // Later units refer to this type by signature: make the reference resolvable now.
      const d = this.dies.get(this.sigTarget.get(typeSig)!);
      if (d) this.dies.set(this.signature(typeSig), d);
    }
    this.onUnit(unit);
    if (this.streaming && !unit.partial && !unit.typeUnit && !unit.alt) {
      for (const off of this.unitDies) {
        const t = this.typedefOf.get(off);
        const sig = this.dies.get(off)?.signature;
        // A typedef naming a type unit's type through this unit's declaration: keep the name on the signature.
        if (t !== undefined && sig !== undefined && !this.typedefOf.has(sig)) this.typedefOf.set(sig, t);
        this.dies.delete(off);
        this.typedefOf.delete(off);
      }
      unit.done = true;
    }
    return end;
  }

  /** Walks the DIEs of one unit. */
  private dies1(ctx: FileCtx, table: Abbrev[], unitOffset: number, typeUnit: boolean): Unit {
    const unit: Unit = {
      offset: ctx.base + unitOffset,
      alt: ctx.isAlt,
      typeUnit,
      die: ctx.base + this.pos,
      name: '',
      partial: false,
      imports: [],
      structs: [],
      done: false,
    };
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
            if (typeof v === 'number') {
              die.type = v;
              this.checkRef(v);
            }
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
            if (typeof v === 'number') {
              die.signature = v;
              this.checkRef(v);
            }
            break;
          case AT.strOffsetsBase:
            if (typeof v === 'number') this.strOffsetsBase = v;
            break;
        }
      }
      // A flexible array member has no bound; gcc writes upper_bound -1 (as data8 0xff..ff) for zero-length ones.
      if (upper !== undefined && die.count === undefined && upper >= lower && upper < 2 ** 48)
        die.count = upper - lower + 1;
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
        this.unitDies.push(off);
      }
      if (
        a.tag === TAG.typedef &&
        die.name !== undefined &&
        die.type !== undefined &&
        !this.typedefOf.has(die.type)
      )
        this.typedefOf.set(die.type, die.name);
      if (
        (a.tag === TAG.structure || a.tag === TAG.union || a.tag === TAG.class) &&
        !die.declaration &&
        die.byteSize !== undefined
      )
        unit.structs.push(off);
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
    return unit;
  }
}
