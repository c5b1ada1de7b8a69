/**
 * Compares a parsed object with readelf's view of the same file and returns
 * every disagreement as a readable line (empty when they agree).
 */
import type { ElfObject, ElfSymbol, Relocation } from '../../elf/index.js';
import { relocTypeName } from '../../elf/index.js';
import {
  ndxName,
  PT_NAMES,
  SHT_NAMES,
  STB_NAMES,
  STT_NAMES,
  STV_NAMES,
  type Readelf,
  type RSymbol,
} from './readelf.js';

export interface CompareOptions {
  /** Compare every symbol field, not only names and versions. */
  symbolDetails?: boolean;
  /** Compare relocation offsets, symbols and addends, not only counts by type. */
  relocDetails?: boolean;
  /** Compare .symtab entries one by one (counts are always compared). */
  symtabEntries?: boolean;
}

const SHF_LETTERS: Array<[bigint, string]> = [
  [0x1n, 'W'],
  [0x2n, 'A'],
  [0x4n, 'X'],
  [0x10n, 'M'],
  [0x20n, 'S'],
  [0x40n, 'I'],
  [0x80n, 'L'],
  [0x200n, 'G'],
  [0x400n, 'T'],
];
const letters = new Set(SHF_LETTERS.map(([, l]) => l));

function flagLetters(f: bigint): string {
  return SHF_LETTERS.filter(([b]) => (f & b) !== 0n)
    .map(([, l]) => l)
    .sort()
    .join('');
}

function phdrFlags(f: number): string {
  return `${f & 4 ? 'R' : ''}${f & 2 ? 'W' : ''}${f & 1 ? 'E' : ''}`;
}

/** The symbol name readelf prints in a relocation line. */
export function relocSymbolName(s: ElfSymbol | undefined): string {
  if (!s) return '';
  if (s.version === undefined) return s.name;
  return `${s.name}${s.versionHidden || s.versionFile !== undefined ? '@' : '@@'}${s.version}`;
}

export function countByType(types: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const t of types) out[t] = (out[t] ?? 0) + 1;
  return out;
}

export function relocKey(r: Relocation): string {
  return `${relocTypeName(r.type)} ${r.offset.toString(16)} ${relocSymbolName(r.symbol)} ${r.table === 'relr' ? '' : r.addend}`;
}

function symbolMismatch(s: ElfSymbol, e: RSymbol, dynamic: boolean, details: boolean): string | undefined {
  const want: string[] = [e.name];
  const got: string[] = [s.name];
  if (dynamic) {
    // readelf prints no version for a version's own definition symbol (st_name == vda_name), e.g. VERS_1 ABS.
    const sv = s.version === s.name && s.shndx === 0xfff1 ? undefined : s.version;
    want.push(
      e.version ?? '-',
      e.version === undefined ? '-' : e.needIndex !== undefined ? 'need' : e.hidden ? 'hidden' : 'default',
    );
    got.push(
      sv ?? '-',
      sv === undefined ? '-' : s.versionFile !== undefined ? 'need' : s.versionHidden ? 'hidden' : 'default',
    );
    if (e.needIndex !== undefined) {
      want.push(String(e.needIndex));
      got.push(String(s.versym === undefined ? '?' : s.versym & 0x7fff));
    }
  }
  if (details) {
    want.push(e.value.toString(16), e.size.toString(), e.type, e.bind, e.vis, e.ndx);
    got.push(
      s.value.toString(16),
      s.size.toString(),
      STT_NAMES[s.type] ?? String(s.type),
      STB_NAMES[s.bind] ?? String(s.bind),
      STV_NAMES[s.visibility]!,
      ndxName(s.shndx),
    );
  }
  const a = got.join(' ');
  const b = want.join(' ');
  return a === b ? undefined : `symbol ${s.index}: got [${a}] readelf [${b}]`;
}

export function compareWithReadelf(obj: ElfObject, re: Readelf, opts: CompareOptions = {}): string[] {
  const bad: string[] = [];
  const eq = (what: string, got: unknown, want: unknown) => {
    const g = JSON.stringify(got, (_k, v) => (typeof v === 'bigint' ? v.toString(16) : v));
    const w = JSON.stringify(want, (_k, v) => (typeof v === 'bigint' ? v.toString(16) : v));
    if (g !== w) bad.push(`${what}: got ${g} readelf ${w}`);
  };
  eq('build-id', obj.buildId, re.buildId);
  eq('soname', obj.soname, re.soname);
  eq('needed', obj.dynamic?.needed ?? [], re.needed);

  eq(
    'program headers',
    obj.programHeaders.map((p) => [
      PT_NAMES[p.type] ?? '?',
      p.offset,
      p.vaddr,
      p.paddr,
      p.filesz,
      p.memsz,
      phdrFlags(p.flags),
      p.align,
    ]),
    re.phdrs.map((p, i) => [
      PT_NAMES[obj.programHeaders[i]?.type ?? -1] === undefined ? '?' : p.type,
      p.offset,
      p.vaddr,
      p.paddr,
      p.filesz,
      p.memsz,
      p.flags,
      p.align,
    ]),
  );

  eq(
    'section headers',
    obj.sections.map((s) => [
      s.index,
      s.name,
      SHT_NAMES[s.type] ?? '?',
      s.addr,
      s.offset,
      s.size,
      s.entsize,
      flagLetters(s.flags),
      s.link,
      s.info,
      s.addralign,
    ]),
    re.sections.map((s, i) => [
      s.index,
      s.name,
      SHT_NAMES[obj.sections[i]?.type ?? -1] === undefined ? '?' : s.type,
      s.addr,
      s.offset,
      s.size,
      s.entsize,
      [...s.flags]
        .filter((c) => letters.has(c))
        .sort()
        .join(''),
      s.link,
      s.info,
      s.align,
    ]),
  );

  eq(
    'dynamic tags',
    (obj.dynamic?.entries ?? []).map((e) => e.tag),
    re.dynamic.filter((d) => d.tag !== 0n).map((d) => d.tag),
  );

  const dyn = obj.dynamicSymbols;
  eq('.dynsym count', dyn.length, re.dynsym?.count ?? 0);
  if (re.dynsym && dyn.length === re.dynsym.count) {
    let shown = 0;
    re.dynsym.symbols.forEach((e, i) => {
      const m = symbolMismatch(dyn[i]!, e, true, !!opts.symbolDetails);
      if (m && shown++ < 10) bad.push(`.dynsym ${m}`);
    });
  }
  const st = obj.symtab;
  eq('.symtab count', st.length, re.symtab?.count ?? 0);
  if (opts.symtabEntries && re.symtab && st.length === re.symtab.count) {
    let shown = 0;
    re.symtab.symbols.forEach((e, i) => {
      const m = symbolMismatch(st[i]!, e, false, !!opts.symbolDetails);
      if (m && shown++ < 10) bad.push(`.symtab ${m}`);
    });
  }

  // Only the loader's tables: readelf also lists non-allocated relocation sections (--emit-relocs).
  const allocated = new Set(re.sections.filter((s) => s.flags.includes('A')).map((s) => s.name));
  const theirs = re.relocs.filter((r) => allocated.has(r.section));
  const ours = obj.relocations;
  eq(
    'relocation counts by type',
    countByType(ours.map((r) => relocTypeName(r.type))),
    countByType(theirs.map((r) => r.type)),
  );
  if (opts.relocDetails) {
    const a = ours.map(relocKey);
    const b = theirs.map((r) => `${r.type} ${r.offset.toString(16)} ${r.symbol} ${r.addend ?? ''}`);
    const bag = new Map<string, number>();
    for (const k of a) bag.set(k, (bag.get(k) ?? 0) + 1);
    const missing: string[] = [];
    for (const k of b) {
      const n = bag.get(k) ?? 0;
      if (n === 0) missing.push(k);
      else bag.set(k, n - 1);
    }
    const extra = [...bag].filter(([, n]) => n > 0).map(([k]) => k);
    if (missing.length || extra.length)
      bad.push(
        `relocations: missing ${JSON.stringify(missing.slice(0, 5))} extra ${JSON.stringify(extra.slice(0, 5))}`,
      );
  }
  return bad;
}
