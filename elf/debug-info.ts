/**
 * Structure layouts from DWARF (.debug_info), as gcc emits it in versions 2
 * to 5: every struct, union and class with a name (or the name of a typedef
 * for an anonymous one) and a size, with each member's offset, bit-field
 * position, size and type name. The packer compares them between two builds
 * to refuse an update that moves or resizes fields of a structure the code
 * keeps on the heap.
 *
 * The sections come from debug-sections.ts (inflated), the DIE records from
 * dwarf-dies.ts; this module turns records into layouts: names and sizes
 * of member types through typedefs, qualifiers, arrays and type units,
 * anonymous members flattened, definitions deduplicated across units.
 * dwz output is read: partial units, DW_TAG_imported_unit and the
 * supplementary (.gnu_debugaltlink) file when the caller supplies it.
 */
import type { DebugSections } from './debug-sections.js';
import { TAG } from './dwarf-constants.js';
import { ALT, NeedsAllUnits, Reader, type Die, type Unit } from './dwarf-dies.js';

export { debugLinkOf, debugSectionsOf, debugSectionsOfFile, type DebugSections } from './debug-sections.js';

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

/**
 * Turns DIE records into layouts: names and sizes of types are resolved
 * through typedefs, qualifiers and arrays, once per DIE.
 */
class Layouts {
  private readonly names = new Map<number, string>();
  private readonly sizes = new Map<number, number | undefined>();

  constructor(private readonly r: Reader) {}

  /** Drops the memoised names and sizes: while streaming, the DIEs they were computed from are gone. */
  forget(): void {
    this.names.clear();
    this.sizes.clear();
  }

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
      if (
        d.tag !== TAG.typedef &&
        d.tag !== TAG.const &&
        d.tag !== TAG.volatile &&
        d.tag !== TAG.atomic &&
        d.tag !== TAG.restrict &&
        d.tag !== TAG.immutable
      )
        return d;
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
          n =
            this.die(d.type)?.tag === TAG.subroutine
              ? 'function pointer'
              : `${this.typeName(d.type, depth + 1)} *`;
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
        for (const c of d.children ?? [])
          n = c.count !== undefined && c.count >= 0 && n !== undefined ? n * c.count : NaN;
        s = el === undefined || Number.isNaN(n) || (d.children ?? []).length === 0 ? undefined : el * n;
      } else if (
        d.tag !== TAG.subroutine &&
        d.tag !== TAG.structure &&
        d.tag !== TAG.union &&
        d.tag !== TAG.class
      )
        s = this.typeSize(d.type, depth + 1);
    }
    this.sizes.set(off, s);
    return s;
  }

  /** An anonymous structure or union that no typedef names: its fields are shown as the outer structure's. */
  private anonymousAggregate(off: number | undefined): Die | undefined {
    const inner = this.strip(off);
    if (!inner || (inner.tag !== TAG.structure && inner.tag !== TAG.union) || inner.name !== undefined)
      return undefined;
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
          this.members(
            inner,
            base + offset,
            out,
            name === undefined ? prefix : `${prefix}${name}.`,
            depth + 1,
          );
          continue;
        }
      }
      const member: StructMember = {
        name: `${prefix}${name ?? `<unnamed at ${base + offset}>`}`,
        offset: base + offset,
        type: this.typeName(m.type),
      };
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
  /** Keep every unit's DIEs instead of streaming (what a cross-unit reference makes the reader do anyway). */
  keepAllUnits?: boolean;
}

/**
 * The named structure layouts in these debug sections, deduplicated across
 * compile units by name; a name defined differently in different units
 * keeps every definition, each marked ambiguous. Throws ELF_MALFORMED when
 * the DWARF is damaged.
 */
export function readStructLayouts(s: DebugSections, options: ReadOptions = {}): StructLayouts {
  if (options.keepAllUnits) return read(s, options, false);
  try {
    return read(s, options, true);
  } catch (e) {
    if (e instanceof NeedsAllUnits) return read(s, options, false);
    throw e;
  }
}

/**
 * One pass over the units. Streaming builds each compile unit's layouts as
 * soon as it is read and drops its DIEs (gcc refers from one compile unit
 * only to itself, to dwz partial units and to type units, which are kept);
 * it gives up with NeedsAllUnits when a unit refers elsewhere.
 */
function read(s: DebugSections, options: ReadOptions, streaming: boolean): StructLayouts {
  const variants = new Map<string, Map<string, StructLayout>>();
  let L: Layouts | undefined;
  const r: Reader = new Reader(streaming, (u) => {
    if (!streaming || u.partial || u.typeUnit || u.alt) return;
    addUnit(L!, r, u, variants);
    L!.forget();
  });
  L = new Layouts(r);
  const alt = options.supplementary;
  const useAlt =
    alt !== undefined &&
    s.altLink !== undefined &&
    (alt.buildId === undefined || alt.buildId === s.altLink.buildId);
  // The supplementary file first: the units of this file refer to it.
  if (useAlt) r.read({ s: alt, isAlt: true, base: ALT, altBase: undefined, altStr: undefined });
  r.read({
    s,
    isAlt: false,
    base: 0,
    altBase: useAlt ? ALT : undefined,
    altStr: useAlt ? alt.str : undefined,
  });
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
  for (const u of r.units) if (reached.has(u.offset) && !u.done) addUnit(L, r, u, variants);

  const byName = new Map<string, StructLayout[]>();
  for (const [name, m] of variants) {
    const list = [...m.values()];
    if (list.length > 1) for (const l of list) l.ambiguous = true;
    byName.set(name, list);
  }
  const out: StructLayouts = {
    byName,
    units: r.units.filter((u) => !u.alt && !u.typeUnit).length,
    versions: [...r.versions].sort(),
  };
  if (s.altLink && !useAlt) out.missingSupplementary = s.altLink.path;
  return out;
}

/** The layouts of the structures one unit defines, merged into `variants` (name -> shape -> layout). */
function addUnit(L: Layouts, r: Reader, u: Unit, variants: Map<string, Map<string, StructLayout>>): void {
  const unitName = u.typeUnit ? '(type unit)' : u.partial || u.alt ? '(dwz)' : u.name;
  for (const off of u.structs) {
    const d = r.dies.get(off)!;
    const name = L.keyOf(off, d);
    if (name === undefined) continue;
    const members: StructMember[] = [];
    L.members(d, 0, members);
    const kind = d.tag === TAG.union ? 'union' : d.tag === TAG.class ? 'class' : 'struct';
    let sig = `${d.byteSize}`;
    for (const m of members)
      sig += `;${m.name}:${m.offset}:${m.bitOffset ?? ''}:${m.bitSize ?? ''}:${m.size ?? ''}:${m.type}`;
    let byName = variants.get(name);
    if (!byName) variants.set(name, (byName = new Map()));
    const existing = byName.get(sig);
    if (existing) {
      if (!existing.units.includes(unitName)) existing.units.push(unitName);
    } else byName.set(sig, { kind, name, size: d.byteSize!, members, units: [unitName], ambiguous: false });
  }
}
