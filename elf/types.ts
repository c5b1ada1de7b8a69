/**
 * Public shapes of the ELF reader. Every other layer (packer, runtime,
 * trigger) codes against these, so change them only together with callers.
 *
 * Addresses, offsets and sizes that come from the file are `bigint` (ELF64
 * fields are 64-bit and runtime addresses are handled as bigint throughout);
 * counts and indices are `number`.
 */

/** Where the bytes come from: a file image, or a loaded object in a process. */
export type ElfOrigin = 'file' | 'memory';

export interface ElfHeader {
  /** e_type: ET_EXEC = 2, ET_DYN = 3, ... */
  type: number;
  machine: number;
  entry: bigint;
  phoff: bigint;
  shoff: bigint;
  flags: number;
  phentsize: number;
  phnum: number;
  shentsize: number;
  shnum: number;
  shstrndx: number;
}

export interface ProgramHeader {
  type: number;
  flags: number;
  offset: bigint;
  vaddr: bigint;
  paddr: bigint;
  filesz: bigint;
  memsz: bigint;
  align: bigint;
}

export interface SectionHeader {
  index: number;
  name: string;
  type: number;
  flags: bigint;
  addr: bigint;
  offset: bigint;
  size: bigint;
  link: number;
  info: number;
  addralign: bigint;
  entsize: bigint;
}

export interface DynamicEntry {
  tag: bigint;
  /** As stored in the object's vaddr space (memory images: already un-relocated, see reader). */
  value: bigint;
}

export interface AddrRange {
  /** Virtual address in the object's own address space (link-time vaddr). */
  addr: bigint;
  size: bigint;
}

export interface DynamicInfo {
  entries: DynamicEntry[];
  needed: string[];
  soname?: string;
  rpath?: string;
  runpath?: string;
  /** DT_FLAGS and DT_FLAGS_1, 0n when absent. */
  flags: bigint;
  flags1: bigint;
  /** DF_BIND_NOW, DF_1_NOW or DT_BIND_NOW. */
  bindNow: boolean;
  /** DF_SYMBOLIC or DT_SYMBOLIC. */
  symbolic: boolean;
  init?: bigint;
  fini?: bigint;
  initArray?: AddrRange;
  finiArray?: AddrRange;
  preinitArray?: AddrRange;
  pltgot?: bigint;
  /** Ranges of the relocation tables, sizes in bytes. */
  rela?: AddrRange;
  jmprel?: AddrRange;
  relr?: AddrRange;
  /** DT_PLTREL must be DT_RELA on x86-64. */
  symtab?: bigint;
  strtab?: AddrRange;
  gnuHash?: bigint;
  sysvHash?: bigint;
  versym?: bigint;
  verdef?: { addr: bigint; count: number };
  verneed?: { addr: bigint; count: number };
  /** DT_DEBUG: 0 in files; in a running executable, the address of r_debug (ld.so fills it in). */
  debug?: bigint;
  /** DF_TEXTREL or DT_TEXTREL: relocations write into read-only segments. */
  textrel: boolean;
  /** DF_STATIC_TLS: the object uses the initial-exec TLS model. */
  staticTls: boolean;
  /** DF_1_PIE: a position-independent executable. */
  pie: boolean;
}

export interface ElfSymbol {
  /** Index in its table (.dynsym or .symtab). */
  index: number;
  name: string;
  value: bigint;
  size: bigint;
  /** STT_* (constants.ts). */
  type: number;
  /** STB_* (constants.ts). */
  bind: number;
  /** STV_* (st_other & 3). */
  visibility: number;
  /** st_shndx; 0 (SHN_UNDEF) for imports. */
  shndx: number;
  /**
   * Symbol version name, from VERDEF for definitions and VERNEED for
   * references; undefined for unversioned symbols (VER_NDX_LOCAL/GLOBAL).
   */
  version?: string;
  /** For references: the file named in the VERNEED entry (e.g. libc.so.6). */
  versionFile?: string;
  /** True when the version is hidden (not the default `@@` version). */
  versionHidden: boolean;
  defined: boolean;
  /**
   * The raw DT_VERSYM entry (version index | 0x8000 when hidden) of a dynamic
   * symbol in an object with version information; undefined otherwise.
   * Symbol resolution needs it as is (ld.so matches on the index and the bit).
   */
  versym?: number;
}

/** R_X86_64_* numbers of the relocation types the reader names. */
export const enum RelocType {
  NONE = 0,
  R64 = 1,
  PC32 = 2,
  GOT32 = 3,
  PLT32 = 4,
  COPY = 5,
  GLOB_DAT = 6,
  JUMP_SLOT = 7,
  RELATIVE = 8,
  GOTPCREL = 9,
  R32 = 10,
  R32S = 11,
  DTPMOD64 = 16,
  DTPOFF64 = 17,
  TPOFF64 = 18,
  TLSGD = 19,
  TLSLD = 20,
  DTPOFF32 = 21,
  GOTTPOFF = 22,
  TPOFF32 = 23,
  PC64 = 24,
  GOTOFF64 = 25,
  GOTPC32 = 26,
  SIZE32 = 32,
  SIZE64 = 33,
  GOTPC32_TLSDESC = 34,
  TLSDESC_CALL = 35,
  TLSDESC = 36,
  IRELATIVE = 37,
  RELATIVE64 = 38,
}

export interface Relocation {
  /** Where the relocation writes, as a vaddr of the object. */
  offset: bigint;
  type: number;
  /** Index into .dynsym; 0 when the relocation has no symbol. */
  symIndex: number;
  /** The referenced dynamic symbol, when symIndex != 0. */
  symbol?: ElfSymbol;
  /** RELR entries have an implicit addend (the word in place); reported as 0n. */
  addend: bigint;
  table: 'rela' | 'jmprel' | 'relr';
}

export interface ElfNote {
  name: string;
  type: number;
  desc: Buffer;
}

/** Parsed TLS template (PT_TLS). */
export interface TlsInfo {
  vaddr: bigint;
  filesz: bigint;
  memsz: bigint;
  align: bigint;
}

/**
 * A parsed ELF64 little-endian x86-64 object. Construction checks the header
 * and program headers; the rest is parsed on first access and cached, and
 * every accessor throws UlpError (never another exception type) on bad data.
 */
export interface ElfObject {
  readonly origin: ElfOrigin;
  readonly header: ElfHeader;
  readonly programHeaders: ProgramHeader[];
  /** Empty when the object has none (stripped of them, or read from memory). */
  readonly sections: SectionHeader[];
  readonly dynamic: DynamicInfo | undefined;
  readonly dynamicSymbols: ElfSymbol[];
  /** .symtab when present (files only). */
  readonly symtab: ElfSymbol[];
  /** RELA, then JMPREL, then RELR, in table order. */
  readonly relocations: Relocation[];
  readonly notes: ElfNote[];
  /** Lower-case hex of NT_GNU_BUILD_ID, or undefined. */
  readonly buildId: string | undefined;
  readonly soname: string | undefined;
  readonly tls: TlsInfo | undefined;
  /** PT_GNU_RELRO, if any. */
  readonly relro: ProgramHeader | undefined;
  /** The PT_LOAD segments, in order. */
  readonly loadSegments: ProgramHeader[];
  /** Reads `length` bytes at a vaddr of the object (through PT_LOAD for files). */
  readAt(vaddr: bigint, length: number): Buffer;
  /** Section by name (files with section headers only). */
  section(name: string): SectionHeader | undefined;
  /**
   * Looks a defined dynamic symbol up through DT_GNU_HASH (or DT_HASH), the
   * way ld.so does: by name and, when given, by version name. Without a
   * version, the default (non-hidden) version or an unversioned definition
   * matches.
   */
  lookup(name: string, version?: string): ElfSymbol | undefined;
}
