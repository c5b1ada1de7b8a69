/**
 * One build as the analysis sees it: the parsed object plus the facts every
 * category asks for, computed once and shared by both directions (old->new
 * and new->old): where code, read-only, RELRO and writable bytes are, which
 * relocation writes where, the exports and imports, and the functions.
 */
import { createHash } from 'node:crypto';
import {
  PF_W,
  PF_X,
  SHF_EXECINSTR,
  SHN_ABS,
  STB_LOCAL,
  STT_FILE,
  STT_FUNC,
  STT_GNU_IFUNC,
  writableRegion,
  type ElfObject,
  type ElfSymbol,
  type Relocation,
  type WritableRegion,
} from '../elf/index.js';
import { unwindRanges } from './code/ehframe.js';

export type SegmentKind = 'code' | 'writable' | 'relro' | 'readonly' | 'none';
export type RelroMode = 'full' | 'partial' | 'none';

export interface FunctionInfo {
  /** Unique within the build: a symbol name, qualified by its source file when a local name repeats; undefined when unnamed. */
  name: string | undefined;
  start: number;
  end: number;
  exported: boolean;
}

export interface Build {
  /** 'old' or 'new': how messages name this build. */
  label: string;
  path: string;
  bytes: Buffer;
  obj: ElfObject;
  sha256: string;
  relro: RelroMode;
  /** No .symtab. */
  stripped: boolean;
  writable: WritableRegion | undefined;
  /** Every relocation by the vaddr it writes (the last one wins, as in ld.so). */
  relocAt: Map<number, Relocation>;
  /** The relocations writing inside [start, end), by address. */
  relocsIn(start: number, end: number): Relocation[];
  /** Defined, visible dynamic symbols by `name@version` (or `name`). */
  exports: Map<string, ElfSymbol>;
  /** Undefined dynamic symbols by `name@version` (or `name`). */
  imports: Map<string, ElfSymbol>;
  kindAt(vaddr: number): SegmentKind;
  /**
   * `length` bytes at a vaddr, without copying when they lie in one segment's
   * file image; past the file image (.bss) they read as zeros. Throws (a
   * UlpError) when the range is not mapped.
   */
  bytesAt(vaddr: number, length: number): Buffer;
  /** How many bytes from `vaddr` to the end of its segment (0 when unmapped). */
  extentAt(vaddr: number): number;
  /** A readable name for a symbol (local names that repeat get their source file). */
  nameOf(sym: ElfSymbol): string;
  functions(): FunctionInfo[];
}

export function symbolKey(sym: { name: string; version?: string | undefined }): string {
  return sym.version ? `${sym.name}@${sym.version}` : sym.name;
}

const STV_DEFAULT = 0;
const STV_PROTECTED = 3;

export interface BuildOptions {
  /** Reported stripped state, when `obj` hides a .symtab the file has (withoutSymtab). */
  stripped?: boolean;
}

/**
 * The same object with its .symtab hidden: every lookup (including the ELF
 * reader's symbolContaining, which indexes per object) sees the dynamic
 * symbols only.
 */
export function withoutSymtab(obj: ElfObject): ElfObject {
  return Object.create(obj, { symtab: { value: [], enumerable: true } }) as ElfObject;
}

export function createBuild(
  label: string,
  path: string,
  bytes: Buffer,
  obj: ElfObject,
  options: BuildOptions = {},
): Build {
  const dyn = obj.dynamic;
  const relroMode: RelroMode = obj.relro ? (dyn?.bindNow ? 'full' : 'partial') : 'none';
  const relro = obj.relro;
  const relroStart = relro ? Number(relro.vaddr) : 0;
  const relroEnd = relro ? Number(relro.vaddr + relro.memsz) : 0;
  const segs = obj.loadSegments.map((p) => ({
    start: Number(p.vaddr),
    end: Number(p.vaddr + p.memsz),
    fileEnd: Number(p.vaddr + p.filesz),
    offset: Number(p.offset),
    flags: p.flags,
  }));
  const writable = writableRegion(obj);
  const code = codeAreas(obj);
  const inCode = (v: number) => {
    for (const a of code) if (v >= a.start && v < a.end) return true;
    return false;
  };

  // Link-time addresses of a shared object fit in a double exactly; numbers keep the hot paths free of BigInt.
  const relocs = obj.relocations;
  const relocAt = new Map<number, Relocation>();
  const all = new Float64Array(relocs.length);
  for (let i = 0; i < relocs.length; i++) {
    const r = relocs[i]!;
    const o = Number(r.offset);
    all[i] = o;
    relocAt.set(o, r);
  }
  // Offsets rarely repeat: then every offset is a key, and sorting them needs no walk of the map's keys.
  const offsets = relocAt.size === relocs.length ? all.sort() : sortedNumbers(relocAt.keys());
  const sorted = Array.from(offsets, (o) => relocAt.get(o)!);

  const exports = new Map<string, ElfSymbol>();
  const imports = new Map<string, ElfSymbol>();
  for (const s of obj.dynamicSymbols) {
    if (s.index === 0 || s.name === '') continue;
    if (!s.defined) imports.set(symbolKey(s), s);
    else if (
      s.bind !== STB_LOCAL &&
      (s.visibility === STV_DEFAULT || s.visibility === STV_PROTECTED) &&
      !(s.shndx === SHN_ABS && s.name === s.version)
    ) {
      exports.set(symbolKey(s), s);
    }
  }

  const names = qualifiedNames(obj.symtab);
  let functions: FunctionInfo[] | undefined;

  return {
    label,
    path,
    bytes,
    obj,
    sha256: createHash('sha256').update(bytes).digest('hex'),
    relro: relroMode,
    stripped: options.stripped ?? obj.symtab.length === 0,
    writable,
    relocAt,
    relocsIn: (start, end) => sorted.slice(lowerBound(offsets, start), lowerBound(offsets, end)),
    exports,
    imports,
    bytesAt(vaddr, length) {
      for (const s of segs) {
        if (vaddr >= s.start && vaddr + length <= s.fileEnd)
          return bytes.subarray(s.offset + vaddr - s.start, s.offset + vaddr - s.start + length);
      }
      return obj.readAt(BigInt(vaddr), length);
    },
    extentAt(vaddr) {
      for (const s of segs) if (vaddr >= s.start && vaddr < s.end) return s.end - vaddr;
      return 0;
    },
    kindAt(vaddr) {
      for (const s of segs) {
        if (vaddr < s.start || vaddr >= s.end) continue;
        if (s.flags & PF_X) return inCode(vaddr) ? 'code' : 'readonly';
        if (!(s.flags & PF_W)) return 'readonly';
        if (vaddr >= relroStart && vaddr < relroEnd) return 'relro';
        return 'writable';
      }
      return 'none';
    },
    nameOf(sym) {
      return names.get(sym) ?? (sym.version && sym.versionHidden ? `${sym.name}@${sym.version}` : sym.name);
    },
    functions() {
      return (functions ??= listFunctions(obj, this.nameOf, exports, code, inCode));
    },
  };
}

/** Local symbols whose name repeats (static functions of different files) get " (file.c)". */
function qualifiedNames(symtab: ElfSymbol[]): Map<ElfSymbol, string> {
  const counts = new Map<string, number>();
  for (const s of symtab)
    if (s.defined && s.type !== STT_FILE) counts.set(s.name, (counts.get(s.name) ?? 0) + 1);
  const out = new Map<ElfSymbol, string>();
  let file = '';
  const seen = new Map<string, number>();
  for (const s of symtab) {
    if (s.type === STT_FILE) {
      file = s.name;
      continue;
    }
    if (s.bind !== STB_LOCAL || (counts.get(s.name) ?? 0) < 2) continue;
    let q = file ? `${s.name} (${file})` : s.name;
    const n = (seen.get(q) ?? 0) + 1;
    seen.set(q, n);
    if (n > 1) q = `${q}#${n}`;
    out.set(s, q);
  }
  return out;
}

/**
 * Functions of the build: sized FUNC/IFUNC symbols of .symtab and .dynsym
 * (one entry per address, the global name preferred), and, for code that no
 * symbol covers (stripped builds), the unwind table's ranges without a name.
 */
function listFunctions(
  obj: ElfObject,
  nameOf: (s: ElfSymbol) => string,
  exports: Map<string, ElfSymbol>,
  code: readonly Area[],
  isCode: (v: number) => boolean,
): FunctionInfo[] {
  const exported = new Set<number>();
  for (const s of exports.values())
    if (s.type === STT_FUNC || s.type === STT_GNU_IFUNC) exported.add(Number(s.value));
  const byStart = new Map<number, FunctionInfo>();
  const unsized: FunctionInfo[] = [];
  const consider = (s: ElfSymbol, rank: number, ranks: Map<number, number>) => {
    if (!s.defined || (s.type !== STT_FUNC && s.type !== STT_GNU_IFUNC)) return;
    const start = Number(s.value);
    if (!isCode(start)) return;
    const prev = ranks.get(start);
    if (prev !== undefined && prev <= rank) return;
    ranks.set(start, rank);
    const f = { name: nameOf(s), start, end: start + Number(s.size), exported: exported.has(start) };
    byStart.set(start, f);
    if (s.size === 0n) unsized.push(f);
  };
  const ranks = new Map<number, number>();
  for (const s of obj.symtab) consider(s, s.bind === STB_LOCAL ? 2 : 0, ranks);
  for (const s of obj.dynamicSymbols) consider(s, s.versionHidden ? 3 : 1, ranks);
  const unwind = unwindRanges(obj);
  if (unsized.length > 0) {
    // Assembly and crt functions often have size 0: they end where the next known code starts.
    const starts = sortedNumbers(
      new Set([...byStart.keys(), ...unwind.map((r) => r.start), ...code.map((s) => s.end)]),
    );
    for (const f of unsized) {
      const i = lowerBound(starts, f.start + 1);
      if (i === starts.length) byStart.delete(f.start);
      else f.end = starts[i]!;
    }
  }
  const namedStarts = sortedNumbers(byStart.keys());
  const named = Array.from(namedStarts, (s) => byStart.get(s)!);
  const covered = (v: number) => {
    const f = named[lowerBound(namedStarts, v + 1) - 1];
    return f !== undefined && v < f.end;
  };
  for (const r of unwind) {
    if (!isCode(r.start) || byStart.has(r.start) || covered(r.start)) continue;
    byStart.set(r.start, { name: undefined, start: r.start, end: r.end, exported: false });
  }
  return Array.from(sortedNumbers(byStart.keys()), (s) => byStart.get(s)!);
}

interface Area {
  start: number;
  end: number;
}

/**
 * Where the build's code is: its SHF_EXECINSTR sections, or its PF_X segments
 * when it has no section headers. Not the PF_X segments when there are
 * sections: without -z separate-code the one executable segment also holds
 * the ELF header, the dynamic symbols, .rodata and .eh_frame, which are data
 * (a size-0 function such as _fini would otherwise run on into .rodata).
 */
function codeAreas(obj: ElfObject): Area[] {
  const secs = obj.sections.filter((s) => (s.flags & SHF_EXECINSTR) !== 0n && s.size > 0n);
  if (secs.length > 0)
    return secs
      .map((s) => ({ start: Number(s.addr), end: Number(s.addr + s.size) }))
      .sort((a, b) => a.start - b.start);
  return obj.loadSegments
    .filter((p) => (p.flags & PF_X) !== 0)
    .map((p) => ({ start: Number(p.vaddr), end: Number(p.vaddr + p.memsz) }));
}

/** Numbers in ascending order: a typed array sorts natively, without calling a comparator per step. */
function sortedNumbers(xs: Iterable<number>): Float64Array {
  return Float64Array.from(xs).sort();
}

/** Index of the first element of the sorted `xs` not below `v` (addresses are integers: v + 1 gives "above v"). */
function lowerBound(xs: ArrayLike<number>, v: number): number {
  let lo = 0;
  let hi = xs.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (xs[mid]! < v) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
