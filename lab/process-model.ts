/**
 * Hand-built loader models (runtime/loader/model.ts) for unit tests of the
 * pure planning code: an ElfObject with only what the planners read (load
 * segments, RELRO, dynamic symbols, relocations, DT_NEEDED, a symbol lookup)
 * and a ProcessObject placing it at a bias. Nothing is compiled or run, so a
 * test states exactly the process it reasons about, including shapes gcc
 * would rarely produce on demand (an interposer, a slot bound to nothing).
 */
import { imageSpan } from '../elf/layout.js';
import { PF_R, PF_W, PF_X, PT_LOAD, STB_GLOBAL, STT_FUNC } from '../elf/constants.js';
import type { ElfObject, ElfSymbol, ProgramHeader, Relocation } from '../elf/types.js';
import type { Family, ProcessObject } from '../runtime/loader/model.js';
import type { BuildName } from '../runtime/memfd-names.js';

export interface SymSpec {
  name: string;
  /** st_value; ignored for an import. */
  value?: bigint;
  type?: number;
  bind?: number;
  version?: string;
  /** A non-default (`@`) version. */
  hidden?: boolean;
}

export interface RelocSpec {
  offset: bigint;
  type: number;
  /** A symbol this object defines (`symbols`), else an import of that name. */
  symbol?: string;
  addend?: bigint;
  table?: Relocation['table'];
}

export interface ElfSpec {
  soname?: string;
  needed?: string[];
  /** The executable segment's [vaddr, vaddr + size). */
  text: { vaddr: bigint; size: bigint };
  /** The writable segment, if any. */
  data?: { vaddr: bigint; size: bigint };
  /** PT_GNU_RELRO, inside `data`. */
  relro?: { vaddr: bigint; size: bigint };
  symbols?: SymSpec[];
  imports?: SymSpec[];
  relocs?: RelocSpec[];
  /** DT_SYMBOLIC. */
  symbolic?: boolean;
  /** Words readAt finds (the in-place addends of RELR sites), by vaddr. */
  words?: Record<string, bigint>;
  /** Byte images readAt finds, e.g. the .tdata initialisation image. */
  images?: Array<{ vaddr: bigint; bytes: Buffer }>;
  /** PT_TLS. */
  tls?: { vaddr: bigint; filesz: bigint; memsz: bigint; align: bigint };
  /** DF_STATIC_TLS. */
  staticTls?: boolean;
  buildId?: string;
}

const segment = (flags: number, vaddr: bigint, size: bigint): ProgramHeader => ({
  type: PT_LOAD,
  flags,
  offset: vaddr,
  vaddr,
  paddr: vaddr,
  filesz: size,
  memsz: size,
  align: 0x1000n,
});

function symbol(index: number, s: SymSpec, defined: boolean): ElfSymbol {
  return {
    index,
    name: s.name,
    value: defined ? (s.value ?? 0n) : 0n,
    size: 8n,
    type: s.type ?? STT_FUNC,
    bind: s.bind ?? STB_GLOBAL,
    visibility: 0,
    shndx: defined ? 1 : 0,
    ...(s.version !== undefined ? { version: s.version } : {}),
    versionHidden: s.hidden ?? false,
    defined,
  } as ElfSymbol;
}

export function syntheticElf(spec: ElfSpec): ElfObject {
  const loadSegments = [segment(PF_R | PF_X, spec.text.vaddr, spec.text.size)];
  if (spec.data) loadSegments.push(segment(PF_R | PF_W, spec.data.vaddr, spec.data.size));
  const relro = spec.relro
    ? { ...segment(PF_R, spec.relro.vaddr, spec.relro.size), type: 0x6474e552 }
    : undefined;
  const dynamicSymbols = [
    ...(spec.symbols ?? []).map((s, i) => symbol(i + 1, s, true)),
    ...(spec.imports ?? []).map((s, i) => symbol((spec.symbols?.length ?? 0) + i + 1, s, false)),
  ];
  const relocations: Relocation[] = (spec.relocs ?? []).map((r) => {
    let sym =
      r.symbol === undefined ? undefined : dynamicSymbols.find((s) => s.name === r.symbol && s.defined);
    if (r.symbol !== undefined && !sym) {
      sym = dynamicSymbols.find((s) => s.name === r.symbol);
      if (!sym) dynamicSymbols.push((sym = symbol(dynamicSymbols.length + 1, { name: r.symbol }, false)));
    }
    return {
      offset: r.offset,
      type: r.type,
      symIndex: sym?.index ?? 0,
      ...(sym ? { symbol: sym } : {}),
      addend: r.addend ?? 0n,
      table: r.table ?? 'rela',
    };
  });
  const elf = {
    origin: 'file',
    programHeaders: [...loadSegments, ...(relro ? [relro] : [])],
    sections: [],
    dynamic: {
      entries: [],
      needed: spec.needed ?? [],
      soname: spec.soname,
      flags: 0n,
      flags1: 0n,
      bindNow: true,
      symbolic: spec.symbolic ?? false,
      staticTls: spec.staticTls ?? false,
    },
    dynamicSymbols,
    symtab: [],
    relocations,
    notes: [],
    buildId: spec.buildId,
    soname: spec.soname,
    tls: spec.tls,
    relro,
    loadSegments,
    readAt(vaddr: bigint, length: number): Buffer {
      const image = spec.images?.find(
        (i) => vaddr >= i.vaddr && vaddr + BigInt(length) <= i.vaddr + BigInt(i.bytes.length),
      );
      if (image)
        return Buffer.from(
          image.bytes.subarray(Number(vaddr - image.vaddr), Number(vaddr - image.vaddr) + length),
        );
      const w = spec.words?.[`0x${vaddr.toString(16)}`];
      if (w === undefined || length !== 8)
        throw new Error(`synthetic ELF: no word at 0x${vaddr.toString(16)}`);
      const b = Buffer.alloc(8);
      b.writeBigUInt64LE(w);
      return b;
    },
    section: () => undefined,
    lookup(name: string, version?: string): ElfSymbol | undefined {
      return dynamicSymbols.find(
        (s) =>
          s.defined && s.name === name && (version === undefined ? !s.versionHidden : s.version === version),
      );
    },
  };
  // The planners read only the fields above; the header and sections stay absent.
  return elf as unknown as ElfObject;
}

export interface Placement {
  /** Link-map path ('' for the executable) or memfd name. */
  name?: string;
  bias: bigint;
  source?: ProcessObject['source'];
  ulp?: BuildName;
}

/** `elf` mapped at `bias`, as a snapshot of the process would describe it. */
export function placed(elf: ElfObject, at: Placement): ProcessObject {
  const span = imageSpan(elf);
  return {
    name: at.name ?? elf.soname ?? '',
    bias: at.bias,
    elf,
    buildId: elf.buildId,
    soname: elf.soname,
    source: at.source ?? 'linkmap',
    ...(at.ulp ? { ulp: at.ulp } : {}),
    code: elf.loadSegments
      .filter((p) => (p.flags & PF_X) !== 0)
      .map((p) => ({ start: at.bias + p.vaddr, end: at.bias + p.vaddr + p.memsz })),
    span: { start: at.bias + span.start, end: at.bias + span.end },
  };
}

export function family(canonical: ProcessObject, ...others: ProcessObject[]): Family {
  return { soname: canonical.soname ?? '', canonical, builds: [canonical, ...others] };
}

/** A memory reader over a map of 8-byte words by runtime address (what planStage reads through). */
export function wordReader(words: ReadonlyMap<bigint, bigint>): (addr: bigint, length: number) => Buffer {
  return (addr, length) => {
    const v = words.get(addr);
    if (v === undefined || length !== 8)
      throw new Error(`unmapped read of ${length} bytes at 0x${addr.toString(16)}`);
    const b = Buffer.alloc(8);
    b.writeBigUInt64LE(v);
    return b;
  };
}
