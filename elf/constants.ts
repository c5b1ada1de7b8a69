/**
 * ELF numbers the reader needs (from the System V gABI, the x86-64 psABI and
 * glibc's elf.h). Plain numeric constants: they are matched against raw
 * fields, and tests compare them with readelf's spelled-out names.
 */

export const ELFCLASS64 = 2;
export const ELFDATA2LSB = 1;
export const EV_CURRENT = 1;
export const EM_X86_64 = 62;

export const ET_NONE = 0;
export const ET_REL = 1;
export const ET_EXEC = 2;
export const ET_DYN = 3;
export const ET_CORE = 4;

export const EHDR_SIZE = 64;
export const PHDR_SIZE = 56;
export const SHDR_SIZE = 64;
export const SYM_SIZE = 24;
export const RELA_SIZE = 24;
export const DYN_SIZE = 16;

/** e_phnum value meaning "the real count is in section 0's sh_info". */
export const PN_XNUM = 0xffff;
export const SHN_UNDEF = 0;
export const SHN_LORESERVE = 0xff00;
export const SHN_ABS = 0xfff1;
export const SHN_COMMON = 0xfff2;
export const SHN_XINDEX = 0xffff;

export const PT_NULL = 0;
export const PT_LOAD = 1;
export const PT_DYNAMIC = 2;
export const PT_INTERP = 3;
export const PT_NOTE = 4;
export const PT_SHLIB = 5;
export const PT_PHDR = 6;
export const PT_TLS = 7;
export const PT_GNU_EH_FRAME = 0x6474e550;
export const PT_GNU_STACK = 0x6474e551;
export const PT_GNU_RELRO = 0x6474e552;
export const PT_GNU_PROPERTY = 0x6474e553;

export const PF_X = 1;
export const PF_W = 2;
export const PF_R = 4;

export const SHT_NULL = 0;
export const SHT_PROGBITS = 1;
export const SHT_SYMTAB = 2;
export const SHT_STRTAB = 3;
export const SHT_RELA = 4;
export const SHT_HASH = 5;
export const SHT_DYNAMIC = 6;
export const SHT_NOTE = 7;
export const SHT_NOBITS = 8;
export const SHT_DYNSYM = 11;
export const SHT_RELR = 19;
export const SHT_GNU_HASH = 0x6ffffff6;
export const SHT_GNU_VERDEF = 0x6ffffffd;
export const SHT_GNU_VERNEED = 0x6ffffffe;
export const SHT_GNU_VERSYM = 0x6fffffff;

export const SHF_WRITE = 0x1n;
export const SHF_ALLOC = 0x2n;
export const SHF_EXECINSTR = 0x4n;
export const SHF_TLS = 0x400n;

export const DT_NULL = 0n;
export const DT_NEEDED = 1n;
export const DT_PLTRELSZ = 2n;
export const DT_PLTGOT = 3n;
export const DT_HASH = 4n;
export const DT_STRTAB = 5n;
export const DT_SYMTAB = 6n;
export const DT_RELA = 7n;
export const DT_RELASZ = 8n;
export const DT_RELAENT = 9n;
export const DT_STRSZ = 10n;
export const DT_SYMENT = 11n;
export const DT_INIT = 12n;
export const DT_FINI = 13n;
export const DT_SONAME = 14n;
export const DT_RPATH = 15n;
export const DT_SYMBOLIC = 16n;
export const DT_REL = 17n;
export const DT_RELSZ = 18n;
export const DT_RELENT = 19n;
export const DT_PLTREL = 20n;
export const DT_DEBUG = 21n;
export const DT_TEXTREL = 22n;
export const DT_JMPREL = 23n;
export const DT_BIND_NOW = 24n;
export const DT_INIT_ARRAY = 25n;
export const DT_FINI_ARRAY = 26n;
export const DT_INIT_ARRAYSZ = 27n;
export const DT_FINI_ARRAYSZ = 28n;
export const DT_RUNPATH = 29n;
export const DT_FLAGS = 30n;
export const DT_PREINIT_ARRAY = 32n;
export const DT_PREINIT_ARRAYSZ = 33n;
export const DT_RELRSZ = 35n;
export const DT_RELR = 36n;
export const DT_RELRENT = 37n;
export const DT_GNU_HASH = 0x6ffffef5n;
export const DT_VERSYM = 0x6ffffff0n;
export const DT_RELACOUNT = 0x6ffffff9n;
export const DT_FLAGS_1 = 0x6ffffffbn;
export const DT_VERDEF = 0x6ffffffcn;
export const DT_VERDEFNUM = 0x6ffffffdn;
export const DT_VERNEED = 0x6ffffffen;
export const DT_VERNEEDNUM = 0x6fffffffn;

export const DF_SYMBOLIC = 0x2n;
export const DF_TEXTREL = 0x4n;
export const DF_BIND_NOW = 0x8n;
export const DF_STATIC_TLS = 0x10n;
export const DF_1_NOW = 0x1n;
export const DF_1_PIE = 0x08000000n;

export const STT_NOTYPE = 0;
export const STT_OBJECT = 1;
export const STT_FUNC = 2;
export const STT_SECTION = 3;
export const STT_FILE = 4;
export const STT_COMMON = 5;
export const STT_TLS = 6;
export const STT_GNU_IFUNC = 10;

export const STB_LOCAL = 0;
export const STB_GLOBAL = 1;
export const STB_WEAK = 2;
export const STB_GNU_UNIQUE = 10;

export const STV_DEFAULT = 0;
export const STV_INTERNAL = 1;
export const STV_HIDDEN = 2;
export const STV_PROTECTED = 3;

export const VER_NDX_LOCAL = 0;
export const VER_NDX_GLOBAL = 1;
export const VERSYM_HIDDEN = 0x8000;
export const VERSYM_VERSION = 0x7fff;
export const VER_FLG_BASE = 0x1;

export const NT_GNU_BUILD_ID = 3;

/** readelf's names for the x86-64 relocation types (tests and messages use them). */
export const RELOC_NAMES: Readonly<Record<number, string>> = {
  0: 'R_X86_64_NONE',
  1: 'R_X86_64_64',
  2: 'R_X86_64_PC32',
  3: 'R_X86_64_GOT32',
  4: 'R_X86_64_PLT32',
  5: 'R_X86_64_COPY',
  6: 'R_X86_64_GLOB_DAT',
  7: 'R_X86_64_JUMP_SLOT',
  8: 'R_X86_64_RELATIVE',
  9: 'R_X86_64_GOTPCREL',
  10: 'R_X86_64_32',
  11: 'R_X86_64_32S',
  12: 'R_X86_64_16',
  13: 'R_X86_64_PC16',
  14: 'R_X86_64_8',
  15: 'R_X86_64_PC8',
  16: 'R_X86_64_DTPMOD64',
  17: 'R_X86_64_DTPOFF64',
  18: 'R_X86_64_TPOFF64',
  19: 'R_X86_64_TLSGD',
  20: 'R_X86_64_TLSLD',
  21: 'R_X86_64_DTPOFF32',
  22: 'R_X86_64_GOTTPOFF',
  23: 'R_X86_64_TPOFF32',
  24: 'R_X86_64_PC64',
  25: 'R_X86_64_GOTOFF64',
  26: 'R_X86_64_GOTPC32',
  32: 'R_X86_64_SIZE32',
  33: 'R_X86_64_SIZE64',
  34: 'R_X86_64_GOTPC32_TLSDESC',
  35: 'R_X86_64_TLSDESC_CALL',
  36: 'R_X86_64_TLSDESC',
  37: 'R_X86_64_IRELATIVE',
  38: 'R_X86_64_RELATIVE64',
};
