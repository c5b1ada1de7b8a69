/**
 * The oracle: runs binutils' `readelf -W` on a file and parses what it prints
 * into plain data the tests compare the reader with. Parsing is strict about
 * the lines it knows, so a format surprise fails loudly instead of silently
 * dropping entries.
 */
import { execFile, execFileSync } from 'node:child_process';

export interface RSymbol {
  num: number;
  value: bigint;
  size: bigint;
  type: string;
  bind: string;
  vis: string;
  ndx: string;
  /** The name without the version suffix (for .dynsym; .symtab names are kept whole). */
  name: string;
  version?: string;
  /** `@` without `@@`: a hidden definition or a reference. */
  hidden?: boolean;
  /** `name@VER (N)`: a version from VERNEED, N its index. */
  needIndex?: number;
}

export interface RSymtab {
  count: number;
  symbols: RSymbol[];
}

export interface RReloc {
  section: string;
  offset: bigint;
  type: string;
  /** Symbol name as printed (with @version), '' when there is none. */
  symbol: string;
  addend?: bigint;
}

export interface RPhdr {
  type: string;
  offset: bigint;
  vaddr: bigint;
  paddr: bigint;
  filesz: bigint;
  memsz: bigint;
  flags: string;
  align: bigint;
}

export interface RSection {
  index: number;
  name: string;
  type: string;
  addr: bigint;
  offset: bigint;
  size: bigint;
  entsize: bigint;
  flags: string;
  link: number;
  info: number;
  align: bigint;
}

export interface RDyn {
  tag: bigint;
  name: string;
  value: string;
}

export interface Readelf {
  type?: string;
  buildId?: string;
  soname?: string;
  needed: string[];
  interp?: string;
  phdrs: RPhdr[];
  sections: RSection[];
  dynamic: RDyn[];
  dynsym?: RSymtab;
  symtab?: RSymtab;
  relocs: RReloc[];
  /** Section name -> entry count from the section heading (for RELR: the number of offsets). */
  relocSections: Map<string, number>;
}

export const READELF_FLAGS = ['-W', '-h', '-l', '-S', '-d', '-s', '-r', '-n'];

// Type and Bind print as "<OS specific>: 10" when the object's OSABI is not GNU.
const SYM_RE =
  /^\s*(\d+): ([0-9a-f]{16})\s+(\d+|0x[0-9a-f]+)\s+(<[^>]+>: \d+|\S+)\s+(<[^>]+>: \d+|\S+)\s+(\S+)\s+(\S+)(?: (.*))?$/;
const OS_SPECIFIC_TYPE: Record<string, string> = { '<OS specific>: 10': 'IFUNC' };
const OS_SPECIFIC_BIND: Record<string, string> = { '<OS specific>: 10': 'UNIQUE' };
const RELA_RE = /^([0-9a-f]{16})\s+([0-9a-f]{16})\s+(\S+)\s*(.*)$/;
const PHDR_RE =
  /^\s+(\S+)\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+([RWE ]{3})\s+0x([0-9a-f]+)$/;
const SHDR_RE =
  /^\s+\[\s*(\d+)\]\s(.*?)\s+(\S+)\s+([0-9a-f]{16})\s+([0-9a-f]{6,})\s+([0-9a-f]{6,})\s+([0-9a-f]{2,})\s+([A-Za-z]*)\s+(\d+)\s+(\d+)\s+(\d+)$/;
const DYN_RE = /^\s*0x([0-9a-f]{16})\s+\((\S+)\)\s+(.*)$/;

const big = (s: string) => BigInt(s.startsWith('0x') ? s : `0x${s}`);
const dec = (s: string) => (s.startsWith('0x') ? BigInt(s) : BigInt(s));

function parseSymbolLine(m: RegExpMatchArray, dynamic: boolean): RSymbol {
  const raw = m[8] ?? '';
  const s: RSymbol = {
    num: Number(m[1]),
    value: big(m[2]!),
    size: dec(m[3]!),
    type: OS_SPECIFIC_TYPE[m[4]!] ?? m[4]!,
    bind: OS_SPECIFIC_BIND[m[5]!] ?? m[5]!,
    vis: m[6]!,
    ndx: m[7]!,
    name: raw,
  };
  if (!dynamic) return s;
  const ref = /^(.*?)@([^@\s]+) \((\d+)\)$/.exec(raw);
  if (ref) return { ...s, name: ref[1]!, version: ref[2]!, hidden: true, needIndex: Number(ref[3]) };
  const at = raw.indexOf('@');
  if (at > 0) {
    const def = raw.startsWith('@', at + 1);
    return { ...s, name: raw.slice(0, at), version: raw.slice(at + (def ? 2 : 1)), hidden: !def };
  }
  return s;
}

export function parseReadelf(out: string): Readelf {
  const r: Readelf = {
    needed: [],
    phdrs: [],
    sections: [],
    dynamic: [],
    relocs: [],
    relocSections: new Map(),
  };
  const lines = out.split('\n');
  type Mode = 'none' | 'phdr' | 'shdr' | 'dyn' | 'sym' | 'rela' | 'relr' | 'notes';
  let mode: Mode = 'none';
  let symtab: RSymtab | undefined;
  let symDynamic = false;
  let relocSection = '';
  for (const line of lines) {
    let m: RegExpExecArray | null;
    if ((m = /^\s+Type:\s+(\S+)/.exec(line)) && mode === 'none') {
      r.type = m[1];
      continue;
    }
    if (line.startsWith('Program Headers:')) {
      mode = 'phdr';
      continue;
    }
    if (line.startsWith('Section Headers:')) {
      mode = 'shdr';
      continue;
    }
    if (/^Dynamic section at offset/.test(line)) {
      mode = 'dyn';
      continue;
    }
    if ((m = /^Symbol table '([^']+)' contains (\d+) entr/.exec(line))) {
      mode = 'sym';
      symtab = { count: Number(m[2]), symbols: [] };
      symDynamic = m[1] === '.dynsym';
      if (symDynamic) r.dynsym = symtab;
      else if (m[1] === '.symtab') r.symtab = symtab;
      continue;
    }
    if ((m = /^Relocation section '([^']+)' at offset \S+ contains (\d+) entr/.exec(line))) {
      relocSection = m[1]!;
      mode = relocSection.startsWith('.relr') ? 'relr' : 'rela';
      r.relocSections.set(relocSection, Number(m[2]));
      continue;
    }
    if (/^Displaying notes found/.test(line)) {
      mode = 'notes';
      continue;
    }
    if (/^(Elf file type|Key to Flags|There are no|Section to Segment|Version|Histogram)/.test(line)) {
      mode = 'none';
      continue;
    }
    if ((m = /\[Requesting program interpreter: (.*)\]/.exec(line))) {
      r.interp = m[1];
      continue;
    }
    switch (mode) {
      case 'phdr':
        if ((m = PHDR_RE.exec(line))) {
          r.phdrs.push({
            type: m[1]!,
            offset: big(m[2]!),
            vaddr: big(m[3]!),
            paddr: big(m[4]!),
            filesz: big(m[5]!),
            memsz: big(m[6]!),
            flags: m[7]!.replace(/ /g, ''),
            align: big(m[8]!),
          });
        }
        break;
      case 'shdr':
        if ((m = SHDR_RE.exec(line))) {
          r.sections.push({
            index: Number(m[1]),
            name: m[2]!.trim(),
            type: m[3]!,
            addr: big(m[4]!),
            offset: big(m[5]!),
            size: big(m[6]!),
            entsize: big(m[7]!),
            flags: m[8]!,
            link: Number(m[9]),
            info: Number(m[10]),
            align: BigInt(m[11]!),
          });
        }
        break;
      case 'dyn':
        if ((m = DYN_RE.exec(line))) {
          r.dynamic.push({ tag: big(m[1]!), name: m[2]!, value: m[3]!.trim() });
          const lib = /^Shared library: \[(.*)\]$/.exec(m[3]!.trim());
          if (lib) r.needed.push(lib[1]!);
          const so = /^Library soname: \[(.*)\]$/.exec(m[3]!.trim());
          if (so) r.soname = so[1];
        }
        break;
      case 'sym':
        if ((m = SYM_RE.exec(line))) symtab!.symbols.push(parseSymbolLine(m, symDynamic));
        break;
      case 'rela':
        if ((m = RELA_RE.exec(line))) {
          const rest = m[4]!;
          // "value name + addend" (an IFUNC's value prints as "name()"), or just an addend when there is no symbol.
          const withSym = /^(\S+)\s+(.*) ([+-]) ([0-9a-f]+)$/.exec(rest);
          if (withSym) {
            const add = BigInt(`0x${withSym[4]}`);
            r.relocs.push({
              section: relocSection,
              offset: big(m[1]!),
              type: m[3]!,
              symbol: withSym[2]!,
              addend: withSym[3] === '-' ? -add : add,
            });
          } else {
            const a = /^(-?)([0-9a-f]+)$/.exec(rest.trim());
            r.relocs.push({
              section: relocSection,
              offset: big(m[1]!),
              type: m[3]!,
              symbol: '',
              addend: a ? (a[1] ? -1n : 1n) * BigInt(`0x${a[2]}`) : undefined,
            });
          }
        }
        break;
      case 'relr':
        if ((m = /^([0-9a-f]{16})(\s.*)?$/.exec(line)))
          r.relocs.push({ section: relocSection, offset: big(m[1]!), type: 'R_X86_64_RELATIVE', symbol: '' });
        else if ((m = /^\s+(\d+) offsets?$/.exec(line))) r.relocSections.set(relocSection, Number(m[1]));
        break;
      case 'notes':
        if ((m = /\sBuild ID: ([0-9a-f]+)\s*$/.exec(line))) r.buildId = m[1];
        break;
      default:
        break;
    }
  }
  return r;
}

const MAX_OUTPUT = 1 << 30;

export function readelfSync(path: string, flags = READELF_FLAGS): Readelf {
  return parseReadelf(
    execFileSync('readelf', [...flags, path], {
      encoding: 'latin1',
      maxBuffer: MAX_OUTPUT,
      stdio: ['ignore', 'pipe', 'ignore'],
    }),
  );
}

export function readelfAsync(path: string, flags = READELF_FLAGS): Promise<Readelf> {
  return new Promise((resolve, reject) => {
    execFile('readelf', [...flags, path], { encoding: 'latin1', maxBuffer: MAX_OUTPUT }, (err, stdout) => {
      if (err) reject(err);
      else resolve(parseReadelf(stdout));
    });
  });
}

/** readelf's names for p_type, as printed in -l. */
export const PT_NAMES: Record<number, string> = {
  0: 'NULL',
  1: 'LOAD',
  2: 'DYNAMIC',
  3: 'INTERP',
  4: 'NOTE',
  5: 'SHLIB',
  6: 'PHDR',
  7: 'TLS',
  0x6474e550: 'GNU_EH_FRAME',
  0x6474e551: 'GNU_STACK',
  0x6474e552: 'GNU_RELRO',
  0x6474e553: 'GNU_PROPERTY',
};

export const SHT_NAMES: Record<number, string> = {
  0: 'NULL',
  1: 'PROGBITS',
  2: 'SYMTAB',
  3: 'STRTAB',
  4: 'RELA',
  5: 'HASH',
  6: 'DYNAMIC',
  7: 'NOTE',
  8: 'NOBITS',
  9: 'REL',
  11: 'DYNSYM',
  14: 'INIT_ARRAY',
  15: 'FINI_ARRAY',
  16: 'PREINIT_ARRAY',
  17: 'GROUP',
  18: 'SYMTAB_SHNDX',
  19: 'RELR',
  0x6ffffff6: 'GNU_HASH',
  0x6ffffffd: 'VERDEF',
  0x6ffffffe: 'VERNEED',
  0x6fffffff: 'VERSYM',
  0x6ffffff5: 'GNU_ATTRIBUTES',
  0x6ffffffa: 'SUNW_move',
  0x6ffffff7: 'GNU_LIBLIST',
  0x6ffffffc: 'SUNW_syminfo',
};

export const STT_NAMES: Record<number, string> = {
  0: 'NOTYPE',
  1: 'OBJECT',
  2: 'FUNC',
  3: 'SECTION',
  4: 'FILE',
  5: 'COMMON',
  6: 'TLS',
  10: 'IFUNC',
};
export const STB_NAMES: Record<number, string> = { 0: 'LOCAL', 1: 'GLOBAL', 2: 'WEAK', 10: 'UNIQUE' };
export const STV_NAMES: Record<number, string> = { 0: 'DEFAULT', 1: 'INTERNAL', 2: 'HIDDEN', 3: 'PROTECTED' };

/** How readelf prints st_shndx. */
export function ndxName(shndx: number): string {
  if (shndx === 0) return 'UND';
  if (shndx === 0xfff1) return 'ABS';
  if (shndx === 0xfff2) return 'COM';
  return String(shndx);
}
