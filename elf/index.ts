/**
 * The ELF reader's public entry points: parse an object from a file image or
 * from a process's memory, plus the helpers other layers share.
 */
import type { ElfObject, ElfSymbol, ProgramHeader } from './types.js';
import { View } from './bytes.js';
import * as C from './constants.js';
import { ElfErrorCode, elfError, guard, malformed, truncated } from './errors.js';
import { parseHeader } from './header.js';
import { FileImage, MemoryImage, type ReadMemory } from './image.js';
import { ElfImage } from './object.js';
import { addressSymbols, smallerOrGlobal } from './symbol-index.js';
import { checkLoads, checkPhentsize, parsePhdrs } from './segments.js';
import type { LookupRequest } from './hash.js';
import type { Versions } from './versions.js';
import { hex } from '../common/format.js';

export * from './types.js';
export * from './constants.js';
export * from './layout.js';
export { ElfErrorCode } from './errors.js';
export type { LookupRequest } from './hash.js';
export { gnuHashOf, sysvHashOf } from './hash.js';
export { addressSymbols, symbolIndex, type SymbolIndex } from './symbol-index.js';
export { ehFrameEnd, ehFrameStart } from './eh-frame.js';
export { DwarfReader } from './dwarf.js';
export type { ReadMemory } from './image.js';
export type { VersionDef, VersionNeed, Versions } from './versions.js';

export type ExpectKind = 'shared-object' | 'any';

export interface ParseOptions {
  /**
   * 'shared-object' (the default) refuses executables: ET_EXEC, and ET_DYN
   * objects without a DT_SONAME that are position-independent executables
   * (DF_1_PIE; or PT_INTERP when there is no DT_FLAGS_1 at all). An object
   * with a DT_SONAME is a shared object: libc.so.6 and ld.so have PT_INTERP
   * too. 'any' accepts every ELF type.
   */
  expect?: ExpectKind;
}

export interface MemoryParseOptions extends ParseOptions {
  /** The load bias (link_map l_addr): runtime address = bias + link-time vaddr. */
  bias: bigint;
  /** Where the ELF header is mapped; defaults to `bias` (right for every PIC object; a non-PIE executable needs its own, e.g. 0x400000). */
  headerAddr?: bigint;
}

function checkExpect(obj: ElfImage, expect: ExpectKind | undefined): void {
  if ((expect ?? 'shared-object') === 'any') return;
  const hint = 'Give the shared library (.so) the program loads, not the program itself.';
  const t = obj.header.type;
  if (t !== C.ET_DYN) {
    const kind =
      t === C.ET_EXEC
        ? 'ET_EXEC, an executable'
        : t === C.ET_REL
          ? 'ET_REL, an object file'
          : t === C.ET_CORE
            ? 'ET_CORE, a core dump'
            : `${t}`;
    throw elfError(ElfErrorCode.NOT_SHARED_OBJECT, `not a shared object: e_type is ${kind}`, hint, {
      type: t,
    });
  }
  const interp = obj.programHeaders.some((p) => p.type === C.PT_INTERP);
  const d = obj.dynamic;
  if (d?.soname !== undefined) return;
  // DF_1_PIE is the linker's own word. Without DT_FLAGS_1 (linkers older than the flag), PT_INTERP is the
  // best sign; with DT_FLAGS_1 but no DF_1_PIE, PT_INTERP marks a runnable library (pam_cap.so), still a library.
  const flags1Present = d?.entries.some((e) => e.tag === C.DT_FLAGS_1) ?? false;
  const pie = d?.pie || (interp && !flags1Present);
  if (pie) {
    throw elfError(
      ElfErrorCode.NOT_SHARED_OBJECT,
      `not a shared object: a position-independent executable (${d?.pie ? 'DF_1_PIE is set' : 'it has PT_INTERP'} and no DT_SONAME)`,
      hint,
      { type: t },
    );
  }
}

/** Parses an ELF64 x86-64 object from a file's bytes. Throws only UlpError (codes in docs/ELF.md). */
export function parseElf(buf: Buffer, opts: ParseOptions = {}): ElfObject {
  return guard('ELF header', () => {
    if (!Buffer.isBuffer(buf))
      throw elfError(
        ElfErrorCode.INVALID_ARGUMENT,
        'parseElf expects a Buffer',
        'Read the file with fs.readFileSync and pass the Buffer.',
      );
    const header = parseHeader(buf, 0n);
    const file = new View(buf, 0n, 'file');
    let phnum = header.phnum;
    if (phnum === C.PN_XNUM) {
      // The real count lives in section 0's sh_info when it does not fit 16 bits.
      if (header.shoff === 0n)
        throw malformed('e_phnum', 'is PN_XNUM but there is no section header 0 to hold the count', 56);
      const so = toOffset(header.shoff, buf.length, 'section header 0');
      phnum = file.u32(so + 44, 'section header 0 sh_info (program header count)');
    }
    checkPhentsize(header, phnum, 0n);
    const size = BigInt(phnum) * BigInt(C.PHDR_SIZE);
    if (header.phoff > BigInt(buf.length) || size > BigInt(buf.length) - header.phoff) {
      throw truncated(
        'program header table',
        header.phoff,
        size,
        header.phoff > BigInt(buf.length) ? 0 : BigInt(buf.length) - header.phoff,
      );
    }
    const phdrs = parsePhdrs(file.sub(Number(header.phoff), Number(size), 'program header table'), phnum);
    checkLoads(phdrs, buf.length);
    const obj = new ElfImage('file', header, phdrs, new FileImage(buf, phdrs), undefined);
    checkExpect(obj, opts.expect);
    return obj;
  });
}

function toOffset(v: bigint, size: number, what: string): number {
  if (v > BigInt(size)) throw truncated(what, v, 1, 0);
  return Number(v);
}

/**
 * Parses an object loaded in a process, through `read(address, length)`
 * (process_vm_readv, /proc/PID/mem...). Entries of the dynamic section that
 * ld.so relocated in place are turned back into link-time vaddrs, so the
 * result agrees with parsing the same build's file (docs/ELF.md).
 */
export function parseElfFromMemory(read: ReadMemory, opts: MemoryParseOptions): ElfObject {
  return guard('ELF header in memory', () => {
    if (typeof read !== 'function' || typeof opts?.bias !== 'bigint') {
      throw elfError(
        ElfErrorCode.INVALID_ARGUMENT,
        'parseElfFromMemory expects a read function and a bigint bias',
        'Pass the link_map l_addr as a bigint.',
      );
    }
    const bias = BigInt.asUintN(64, opts.bias);
    const img = new MemoryImage(read, bias);
    const headerAddr = BigInt.asUintN(64, opts.headerAddr ?? bias);
    const header = parseHeader(img.readAbsolute(headerAddr, C.EHDR_SIZE, 'ELF header'), headerAddr);
    if (header.phnum === C.PN_XNUM)
      throw malformed(
        'e_phnum',
        'PN_XNUM needs section headers, which a loaded object does not map',
        headerAddr + 56n,
      );
    checkPhentsize(header, header.phnum, headerAddr);
    if (header.phoff > 0x100000n)
      throw malformed(
        'e_phoff',
        `${hex(header.phoff)} is too far from the header to be mapped with it`,
        headerAddr + 32n,
      );
    const phAddr = headerAddr + header.phoff;
    const phdrs = parsePhdrs(
      new View(
        img.readAbsolute(phAddr, header.phnum * C.PHDR_SIZE, 'program header table'),
        phAddr,
        'program header table',
      ),
      header.phnum,
    );
    checkLoads(phdrs, undefined);
    checkHeaderPlacement(phdrs, bias, headerAddr);
    img.setLoads(phdrs);
    const obj = new ElfImage('memory', header, phdrs, img, bias);
    checkExpect(obj, opts.expect);
    return obj;
  });
}

/** The segment that maps file offset 0 holds the header: it must sit where the caller says the header is. */
function checkHeaderPlacement(phdrs: ProgramHeader[], bias: bigint, headerAddr: bigint): void {
  const first = phdrs.find((p) => p.type === C.PT_LOAD && p.offset === 0n);
  if (!first) return;
  const expected = BigInt.asUintN(64, bias + first.vaddr);
  if (expected !== headerAddr) {
    throw elfError(
      ElfErrorCode.INVALID_ARGUMENT,
      `the header was read at ${hex(headerAddr)} but with bias ${hex(bias)} the segment holding it would be mapped at ${hex(expected)}`,
      'Pass the link_map l_addr as bias, and headerAddr only for objects not linked at address 0 (non-PIE executables).',
      { bias: hex(bias), headerAddr: hex(headerAddr) },
    );
  }
}

/**
 * ld.so's symbol lookup with all its inputs: a hidden versioned reference
 * (`hidden: true`) matches only that exact version, and `table` forces the
 * GNU or the SysV hash table.
 */
export function lookupSymbol(
  obj: ElfObject,
  req: LookupRequest,
  table?: 'gnu' | 'sysv',
): ElfSymbol | undefined {
  if (obj instanceof ElfImage) return obj.lookupSymbol(req, table);
  return obj.lookup(req.name, req.version);
}

/**
 * The object's version tables by index: what it defines (VERDEF, including
 * the VER_FLG_BASE entry naming the object) and what it requires from which
 * file (VERNEED). Undefined without DT_VERSYM. Resolution needs them to
 * match a reference's version the way ld.so's l_versions does.
 */
export function versionTables(obj: ElfObject): Versions | undefined {
  return obj instanceof ElfImage ? obj.versions : undefined;
}

interface SymIndex {
  syms: readonly ElfSymbol[];
  /** maxEnd[i] = max over syms[0..i] of value + size: lets a backward scan stop early. */
  maxEnd: bigint[];
}
const symIndexes = new WeakMap<ElfObject, SymIndex>();

function buildIndex(obj: ElfObject): SymIndex {
  const syms = addressSymbols(obj);
  const maxEnd: bigint[] = [];
  let m = 0n;
  for (const s of syms) {
    const e = s.value + (s.size === 0n ? 1n : s.size);
    if (e > m) m = e;
    maxEnd.push(m);
  }
  return { syms, maxEnd };
}

/**
 * The defined function or object symbol whose [value, value + size) covers
 * `vaddr`, from .symtab and .dynsym. Among nested candidates the smallest
 * wins, then a global over a local one; a zero-sized symbol matches only its
 * own address. (symbolIndex answers the same with numbers, for many lookups.)
 */
export function symbolContaining(obj: ElfObject, vaddr: bigint): ElfSymbol | undefined {
  return guard('symbolContaining', () => {
    let idx = symIndexes.get(obj);
    if (!idx) symIndexes.set(obj, (idx = buildIndex(obj)));
    const { syms, maxEnd } = idx;
    let lo = 0;
    let hi = syms.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (syms[mid]!.value <= vaddr) lo = mid + 1;
      else hi = mid;
    }
    let best: ElfSymbol | undefined;
    for (let i = lo - 1; i >= 0 && maxEnd[i]! > vaddr; i--) {
      const s = syms[i]!;
      const covers = s.size === 0n ? s.value === vaddr : vaddr < s.value + s.size;
      if (covers && (!best || smallerOrGlobal(s, best))) best = s;
    }
    return best;
  });
}

/** readelf's name of an x86-64 relocation type (R_X86_64_...). */
export function relocTypeName(type: number): string {
  return C.RELOC_NAMES[type] ?? `R_X86_64_unknown_${type}`;
}
