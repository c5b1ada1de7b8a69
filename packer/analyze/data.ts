/**
 * data: the writable region that survives RELRO (.data, .bss, and .got.plt
 * under partial RELRO). After the switch both builds read and write the same
 * pages, so the new build must find every variable, and every relocated word,
 * exactly where the old build keeps it. Everything here that changes where
 * something lives is incompatible; initial values that differ are warnings
 * (the running process keeps the values it has).
 */
import { RelocType, STT_FILE, STT_FUNC, STT_GNU_IFUNC, STT_SECTION, STT_TLS, relocTypeName, type ElfSymbol, type Relocation, type WritableRegion } from '../../elf/index.js';
import type { Category, Report, Site } from '../../patches/index.js';
import { hex } from '../../patches/hex.js';
import { targetsOf } from '../code/targets.js';
import { symbolKey, type Build } from '../model.js';
import { Findings, listText, plural } from './findings.js';
import type { Pair } from './pair.js';
import { effectiveAddend, matchedSites } from './sites.js';

export interface DataResult {
  category: Category;
  writable: Report['writable'];
  /** Sites matched in both builds, for the function-pointer category. */
  sites: Site[];
}

/** GOT[0..2] of .got.plt: _DYNAMIC's link-time address and two words ld.so fills in; never relocated, never shared state. */
const RESERVED_GOT_BYTES = 24;
/** Sites listed per finding in `details`; the message shows fewer. */
const MAX_DETAILS = 200;

/** File-backed and zero-filled parts of the writable segment inside the region. */
function dataSpan(r: WritableRegion) {
  const seg = r.segment;
  const clamp = (v: bigint) => (v < r.start ? r.start : v > r.end ? r.end : v);
  return { start: clamp(seg.vaddr), fileEnd: clamp(seg.vaddr + seg.filesz), memEnd: clamp(seg.vaddr + seg.memsz) };
}

function regionSymbols(b: Build, r: WritableRegion): Map<string, ElfSymbol> {
  const out = new Map<string, ElfSymbol>();
  for (const s of [...b.obj.symtab, ...b.obj.dynamicSymbols]) {
    if (!s.defined || s.name === '' || s.type === STT_SECTION || s.type === STT_FILE || s.type === STT_TLS || s.type === STT_FUNC || s.type === STT_GNU_IFUNC) continue;
    if (s.value < r.start || s.value >= r.end) continue;
    const name = b.nameOf(s);
    if (!out.has(name)) out.set(name, s);
  }
  return out;
}

/** What a byte of the region belongs to, for messages: a variable, else a section, else an offset. */
function locator(r: WritableRegion, symbols: Map<string, ElfSymbol>) {
  const sized = [...symbols.entries()].filter(([, s]) => s.size > 0n).sort((x, y) => (x[1].value < y[1].value ? -1 : 1));
  return (vaddr: bigint): string => {
    for (const [name, s] of sized) if (vaddr >= s.value && vaddr < s.value + s.size) return name;
    const sec = r.sections.find((s) => vaddr >= s.addr && vaddr < s.addr + s.size);
    return sec ? `${sec.name}+0x${(vaddr - sec.addr).toString(16)}` : `0x${vaddr.toString(16)}`;
  };
}

export function analyzeData(pair: Pair): DataResult {
  const { from, to } = pair;
  const f = new Findings();
  const ra = from.writable;
  const rb = to.writable;
  if (!ra && !rb) return { category: f.category('no writable data'), writable: null, sites: [] };
  if (!ra || !rb) {
    f.error('DATA_REGION_CHANGED', `the ${ra ? from.label : to.label} build has writable data and the ${ra ? to.label : from.label} build has none`);
    return { category: f.category('writable region differs'), writable: ra ? { start: hex(ra.start), end: hex(ra.end), sites: [] } : null, sites: [] };
  }

  const span = (r: WritableRegion) => `[0x${r.start.toString(16)}, 0x${r.end.toString(16)})`;
  let layoutSame = true;
  if (ra.start !== rb.start || ra.end !== rb.end) {
    layoutSame = false;
    f.error('DATA_REGION_CHANGED', `the writable region moves or changes size: ${span(ra)} in the ${from.label} build, ${span(rb)} in the ${to.label} build; both builds must share the same pages`, undefined, {
      from: { start: hex(ra.start), end: hex(ra.end) },
      to: { start: hex(rb.start), end: hex(rb.end) },
    });
  }
  const da = dataSpan(ra);
  const db = dataSpan(rb);
  if (da.start !== db.start || da.fileEnd !== db.fileEnd || da.memEnd !== db.memEnd) {
    layoutSame = false;
    f.error('DATA_SEGMENT_LAYOUT_CHANGED', `the writable segment's layout changes: initialised data [0x${da.start.toString(16)}, 0x${da.fileEnd.toString(16)}) and zero-filled up to 0x${da.memEnd.toString(16)} in the ${from.label} build, [0x${db.start.toString(16)}, 0x${db.fileEnd.toString(16)}) and 0x${db.memEnd.toString(16)} in the ${to.label} build`);
  }
  compareSections(f, pair, ra, rb);

  const sa = regionSymbols(from, ra);
  const sb = regionSymbols(to, rb);
  compareSymbols(f, pair, sa, sb);

  const start = Number(ra.start < rb.start ? ra.start : rb.start);
  const end = Number(ra.end > rb.end ? ra.end : rb.end);
  const where = locator(ra, sa);
  compareSites(f, pair, start, end, where, locator(rb, sb));

  if (layoutSame && !f.list.some((x) => x.severity === 'error')) compareInitialValues(f, pair, ra, where);

  const sites = matchedSites(from, to, Number(ra.start), Number(ra.end));
  const summary = `${span(ra)}, ${plural(sa.size, 'symbol')}, ${plural(sites.length, 'relocation site')}`;
  return { category: f.category(summary), writable: { start: hex(ra.start), end: hex(ra.end), sites }, sites };
}

function compareSections(f: Findings, { from, to }: Pair, ra: WritableRegion, rb: WritableRegion): void {
  if (ra.sections.length === 0 || rb.sections.length === 0) return;
  const fmt = (s: { name: string; addr: bigint; size: bigint }) => `${s.name} at 0x${s.addr.toString(16)} (${s.size} bytes)`;
  const la = ra.sections.map(fmt);
  const lb = rb.sections.map(fmt);
  const gone = la.filter((x) => !lb.includes(x));
  const come = lb.filter((x) => !la.includes(x));
  if (gone.length || come.length) {
    f.error('DATA_SECTIONS_CHANGED', `the sections in the writable region differ: ${from.label} has ${listText(gone)}${come.length ? `; ${to.label} has ${listText(come)}` : ''}`, undefined, { from: la, to: lb });
  }
}

function compareSymbols(f: Findings, { from, to }: Pair, sa: Map<string, ElfSymbol>, sb: Map<string, ElfSymbol>): void {
  const moved: string[] = [];
  const resized: string[] = [];
  const details: Record<string, string> = {};
  for (const [name, a] of sa) {
    const b = sb.get(name);
    if (!b) continue;
    if (a.value !== b.value) {
      moved.push(name);
      details[name] = `0x${a.value.toString(16)} -> 0x${b.value.toString(16)}`;
    } else if (a.size !== b.size) {
      resized.push(name);
      details[name] = `${a.size} -> ${b.size} bytes`;
    }
  }
  const pick = (names: string[]) => Object.fromEntries(names.map((n) => [n, details[n]]));
  const withDetail = (names: string[]) => listText(names.map((n) => `${n} (${details[n]})`));
  if (moved.length) f.error('DATA_SYMBOL_MOVED', `${plural(moved.length, 'variable')} in the writable region move: ${withDetail(moved)}; the ${to.label} code would read the wrong bytes`, moved, pick(moved));
  if (resized.length) f.error('DATA_SYMBOL_RESIZED', `${plural(resized.length, 'variable')} in the writable region change size: ${withDetail(resized)}`, resized, pick(resized));

  const overlapping = (s: ElfSymbol, keep: (name: string, old: ElfSymbol) => boolean) =>
    [...sa].filter(([n, o]) => keep(n, o) && o.size > 0n && s.size > 0n && o.value < s.value + s.size && s.value < o.value + o.size).map(([n]) => n);
  const staysInPlace = (n: string, o: ElfSymbol) => sb.get(n)?.value === o.value;
  const replaced: string[] = [];
  const added: string[] = [];
  const reused = new Set<string>();
  for (const [name, b] of sb) {
    if (sa.has(name)) continue;
    // Over bytes an old variable leaves (removed or moved): new meaning for old bytes. Over one that stays: an alias.
    const gone = overlapping(b, (n, o) => !staysInPlace(n, o));
    if (gone.length) {
      replaced.push(name);
      details[name] = `over ${gone.join(', ')}`;
      gone.forEach((n) => reused.add(n));
    } else if (overlapping(b, staysInPlace).length === 0) added.push(name);
  }
  const removed = [...sa.keys()].filter((n) => !sb.has(n) && !reused.has(n));
  if (replaced.length) f.error('DATA_SYMBOL_REPLACED', `${plural(replaced.length, 'new variable')} of the ${to.label} build would reuse the bytes of ${replaced.length === 1 ? 'a variable' : 'variables'} the ${from.label} build keeps there: ${withDetail(replaced)}`, replaced, pick(replaced));
  if (added.length) f.warning('DATA_SYMBOL_ADDED', `${plural(added.length, 'new variable')} in previously unused bytes: ${listText(added)}; in a running process ${added.length === 1 ? 'it starts' : 'they start'} with the bytes found there, not ${added.length === 1 ? 'its' : 'their'} initial value`, added);
  if (removed.length) f.info('DATA_SYMBOL_REMOVED', `${plural(removed.length, 'variable')} no longer used: ${listText(removed)}`, removed);
}

function compareSites(f: Findings, pair: Pair, start: number, end: number, whereFrom: (v: bigint) => string, whereTo: (v: bigint) => string): void {
  const { from, to } = pair;
  const ra = new Map(from.relocsIn(start, end).map((r) => [r.offset, r]));
  const rb = new Map(to.relocsIn(start, end).map((r) => [r.offset, r]));
  const symName = (r: Relocation) => (r.symIndex && r.symbol ? symbolKey(r.symbol) : '');

  // Partial RELRO: the shared .got.plt cannot grow a slot for a function the old build never called.
  const slotsA = new Set([...ra.values()].filter((r) => r.type === RelocType.JUMP_SLOT).map(symName));
  const newImports = [...new Set([...rb.values()].filter((r) => r.type === RelocType.JUMP_SLOT && !slotsA.has(symName(r))).map(symName))];
  if (newImports.length) {
    f.error('DATA_NEW_IMPORT_PARTIAL_RELRO', `the ${to.label} build calls ${plural(newImports.length, 'imported function')} the ${from.label} build did not (${listText(newImports)}); with partial RELRO their .got.plt slots would have to be added to the shared writable region`, newImports);
  }

  const issues: Record<string, { list: string[]; symbols: Set<string> }> = {};
  const note = (code: string, text: string, at: bigint, inTo = false) => {
    const i = (issues[code] ??= { list: [], symbols: new Set() });
    if (i.list.length < MAX_DETAILS) i.list.push(text);
    i.symbols.add((inTo ? whereTo : whereFrom)(at));
  };
  const names = { a: targetsOf(from).nameOf, b: targetsOf(to).nameOf };
  for (const off of new Set([...ra.keys(), ...rb.keys()])) {
    const a = ra.get(off);
    const b = rb.get(off);
    const place = (a ? whereFrom : whereTo)(off);
    const at = place.startsWith('0x') ? place : `0x${off.toString(16)} (${place})`;
    // Slot shifts caused by a new PLT import are already explained by DATA_NEW_IMPORT_PARTIAL_RELRO.
    if (newImports.length && (a?.type === RelocType.JUMP_SLOT || b?.type === RelocType.JUMP_SLOT)) continue;
    if (!a || !b) {
      const r = (a ?? b)!;
      note(a ? 'DATA_RELOC_SITE_REMOVED' : 'DATA_RELOC_SITE_ADDED', `${at}: ${relocTypeName(r.type)}${symName(r) ? ` ${symName(r)}` : ''}`, off, !a);
      continue;
    }
    if (a.type !== b.type) {
      note('DATA_RELOC_TYPE_CHANGED', `${at}: ${relocTypeName(a.type)} -> ${relocTypeName(b.type)}`, off);
      continue;
    }
    if (symName(a) !== symName(b)) {
      const got = a.type === RelocType.GLOB_DAT || a.type === RelocType.JUMP_SLOT || a.type === RelocType.DTPMOD64 || a.type === RelocType.DTPOFF64 || a.type === RelocType.TPOFF64;
      note(got ? 'DATA_RELOC_SYMBOL_CHANGED' : 'DATA_POINTER_CHANGED', `${at}: ${symName(a) || '(none)'} -> ${symName(b) || '(none)'}`, off);
      continue;
    }
    if (a.type === RelocType.RELATIVE) {
      const ta = Number(effectiveAddend(from, a));
      const tb = Number(effectiveAddend(to, b));
      // Pointers into code are the function-pointer category's business.
      if (from.kindAt(ta) === 'code' && to.kindAt(tb) === 'code') continue;
      const na = names.a(ta);
      const nb = names.b(tb);
      if (na !== nb) note('DATA_POINTER_CHANGED', `${at}: ${na} -> ${nb}`, off);
    }
  }
  const texts: Record<string, [string, 'error' | 'warning']> = {
    DATA_RELOC_SITE_ADDED: ['relocated words appear in the writable region where the old build keeps plain data', 'error'],
    DATA_RELOC_SITE_REMOVED: ['relocated words of the old build become plain data in the new build', 'error'],
    DATA_RELOC_TYPE_CHANGED: ['relocations in the writable region change type', 'error'],
    DATA_RELOC_SYMBOL_CHANGED: ['GOT entries in the writable region refer to other symbols', 'error'],
    DATA_POINTER_CHANGED: ['initialised pointers in the writable region point elsewhere; running processes keep the pointers they have', 'warning'],
  };
  for (const [code, [text, severity]] of Object.entries(texts)) {
    const i = issues[code];
    if (!i) continue;
    f.add(severity, code, `${text}: ${listText(i.list, 4)}`, [...i.symbols], { sites: i.list });
  }
}

function compareInitialValues(f: Findings, { from, to }: Pair, r: WritableRegion, where: (v: bigint) => string): void {
  const { start, memEnd } = dataSpan(r);
  const len = Number(memEnd - start);
  if (len <= 0) return;
  const a = from.obj.readAt(start, len);
  const b = to.obj.readAt(start, len);
  if (a.equals(b)) return;
  const masked = new Uint8Array(len);
  const mask = (from: number, n: number) => masked.fill(1, Math.max(0, from), Math.min(len, from + n));
  for (const build of [from, to]) {
    for (const rel of build.relocsIn(Number(start), Number(memEnd))) mask(Number(rel.offset - start), 8);
    const pltgot = build.obj.dynamic?.pltgot;
    if (pltgot !== undefined) mask(Number(pltgot - start), RESERVED_GOT_BYTES);
  }
  const changed = new Set<string>();
  for (let i = 0; i < len; i++) if (a[i] !== b[i] && !masked[i]) changed.add(where(start + BigInt(i)));
  if (changed.size === 0) return;
  const list = [...changed];
  f.warning('DATA_INITIAL_VALUE_CHANGED', `initial values differ for ${listText(list)}; running processes keep their current values, only new processes start with the new ones`, list);
}
