/** The dynamic section: the loader's table of contents, read the way ld.so reads it. */
import type { DynamicEntry, DynamicInfo } from './types.js';
import { StringTable, View, add64, toNum } from './bytes.js';
import * as C from './constants.js';
import { malformed } from './errors.js';
import type { Image } from './image.js';

/**
 * The d_ptr entries glibc's elf_get_dynamic_info rewrites in place (adds
 * l_addr) on x86-64 when the object is not at its link address. Reading a
 * loaded object, these are absolute and must be turned back into vaddrs; all
 * other entries (VERDEF, VERNEED, INIT, FINI, the arrays...) stay link-time.
 */
const RELOCATED_BY_LDSO = new Set<bigint>([
  C.DT_HASH,
  C.DT_PLTGOT,
  C.DT_STRTAB,
  C.DT_SYMTAB,
  C.DT_RELA,
  C.DT_REL,
  C.DT_JMPREL,
  C.DT_RELR,
  C.DT_VERSYM,
  C.DT_GNU_HASH,
]);

/**
 * Raw entries up to DT_NULL (or the end of the segment, as ld.so has no other
 * bound either). `relocatedBy` is the bias ld.so added to the entries it
 * relocates, when it did: glibc skips a read-only dynamic section (the vDSO),
 * and other loaders (musl) never write it, hence also the `value >= bias` test.
 */
export function readEntries(v: View, relocatedBy: bigint | undefined): DynamicEntry[] {
  const bias = relocatedBy;
  const out: DynamicEntry[] = [];
  const n = Math.floor(v.length / C.DYN_SIZE);
  for (let i = 0; i < n; i++) {
    const tag = v.buf.readBigInt64LE(i * C.DYN_SIZE);
    let value = v.buf.readBigUInt64LE(i * C.DYN_SIZE + 8);
    if (tag === C.DT_NULL) break;
    if (bias !== undefined && bias !== 0n && value >= bias && RELOCATED_BY_LDSO.has(tag)) value -= bias;
    out.push({ tag, value });
  }
  return out;
}

export interface ParsedDynamic {
  info: DynamicInfo;
  strings: StringTable | undefined;
}

export function parseDynamic(entries: DynamicEntry[], img: Image): ParsedDynamic {
  // ld.so keeps the last entry of each tag (info[tag] = dyn), so do the same.
  const last = new Map<bigint, bigint>();
  for (const e of entries) last.set(e.tag, e.value);
  const get = (t: bigint) => last.get(t);

  let strings: StringTable | undefined;
  const strtab = get(C.DT_STRTAB);
  const strsz = get(C.DT_STRSZ);
  if (strtab !== undefined) {
    const size = toNum(strsz ?? 0n, 'DT_STRSZ', img.maxRead);
    strings = new StringTable(img.read(strtab, size, 'dynamic string table (DT_STRTAB)'));
  }
  const str = (tag: string, off: bigint): string => {
    if (!strings) throw malformed(tag, 'the dynamic section has no DT_STRTAB to name it');
    return strings.get(toNum(off, tag, strings.size), tag);
  };
  const range = (addrTag: bigint, sizeTag: bigint, name: string) => {
    const addr = get(addrTag);
    if (addr === undefined) return undefined;
    const size = get(sizeTag) ?? 0n;
    add64(addr, size, `${name} range`);
    return { addr, size };
  };

  const needed: string[] = [];
  for (const e of entries) if (e.tag === C.DT_NEEDED) needed.push(str('DT_NEEDED', e.value));
  const flags = get(C.DT_FLAGS) ?? 0n;
  const flags1 = get(C.DT_FLAGS_1) ?? 0n;
  const opt = <T>(t: bigint, f: (v: bigint) => T): T | undefined => {
    const v = get(t);
    return v === undefined ? undefined : f(v);
  };
  const count = (t: bigint, name: string) => opt(t, (v) => toNum(v, name, 0xffffffff));

  const info: DynamicInfo = {
    entries,
    needed,
    soname: opt(C.DT_SONAME, (v) => str('DT_SONAME', v)),
    rpath: opt(C.DT_RPATH, (v) => str('DT_RPATH', v)),
    runpath: opt(C.DT_RUNPATH, (v) => str('DT_RUNPATH', v)),
    flags,
    flags1,
    bindNow: (flags & C.DF_BIND_NOW) !== 0n || (flags1 & C.DF_1_NOW) !== 0n || last.has(C.DT_BIND_NOW),
    symbolic: (flags & C.DF_SYMBOLIC) !== 0n || last.has(C.DT_SYMBOLIC),
    textrel: (flags & C.DF_TEXTREL) !== 0n || last.has(C.DT_TEXTREL),
    staticTls: (flags & C.DF_STATIC_TLS) !== 0n,
    pie: (flags1 & C.DF_1_PIE) !== 0n,
    init: get(C.DT_INIT),
    fini: get(C.DT_FINI),
    initArray: range(C.DT_INIT_ARRAY, C.DT_INIT_ARRAYSZ, 'DT_INIT_ARRAY'),
    finiArray: range(C.DT_FINI_ARRAY, C.DT_FINI_ARRAYSZ, 'DT_FINI_ARRAY'),
    preinitArray: range(C.DT_PREINIT_ARRAY, C.DT_PREINIT_ARRAYSZ, 'DT_PREINIT_ARRAY'),
    pltgot: get(C.DT_PLTGOT),
    rela: range(C.DT_RELA, C.DT_RELASZ, 'DT_RELA'),
    jmprel: range(C.DT_JMPREL, C.DT_PLTRELSZ, 'DT_JMPREL'),
    relr: range(C.DT_RELR, C.DT_RELRSZ, 'DT_RELR'),
    symtab: get(C.DT_SYMTAB),
    strtab: strtab === undefined ? undefined : { addr: strtab, size: strsz ?? 0n },
    gnuHash: get(C.DT_GNU_HASH),
    sysvHash: get(C.DT_HASH),
    versym: get(C.DT_VERSYM),
    verdef: opt(C.DT_VERDEF, (addr) => ({ addr, count: count(C.DT_VERDEFNUM, 'DT_VERDEFNUM') ?? 0 })),
    verneed: opt(C.DT_VERNEED, (addr) => ({ addr, count: count(C.DT_VERNEEDNUM, 'DT_VERNEEDNUM') ?? 0 })),
    debug: get(C.DT_DEBUG),
  };
  return { info, strings };
}

/** Value of the last entry with `tag`, as ld.so sees it. */
export function dynValue(info: DynamicInfo, tag: bigint): bigint | undefined {
  let v: bigint | undefined;
  for (const e of info.entries) if (e.tag === tag) v = e.value;
  return v;
}
