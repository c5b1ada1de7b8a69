/**
 * data: the writable region that survives RELRO (.data, .bss, and .got.plt
 * under partial RELRO). After the switch both builds read and write the same
 * pages, so the new build must find every variable, and every relocated word,
 * exactly where the old build keeps it. "Where" is an offset from the start
 * of each build's own region: the region itself may sit at another address
 * in the other build (moved by whole pages: the trigger maps the same pages
 * at each build's own address), but its size and everything inside it must
 * be the same. Everything here that changes where something lives inside
 * the region is incompatible; initial values that differ are warnings (the
 * running process keeps the values it has).
 */
import {
  dynamicIsWritable,
  RelocType,
  STT_FILE,
  STT_FUNC,
  STT_GNU_IFUNC,
  STT_SECTION,
  STT_TLS,
  relocTypeName,
  type Relocation,
  type WritableRegion,
} from '../../elf/index.js';
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

/** File-backed and zero-filled parts of the writable segment inside the region, as offsets from its start. */
function dataSpan(r: WritableRegion) {
  const seg = r.segment;
  const clamp = (v: bigint) => (v < r.start ? r.start : v > r.end ? r.end : v) - r.start;
  return {
    start: clamp(seg.vaddr),
    fileEnd: clamp(seg.vaddr + seg.filesz),
    memEnd: clamp(seg.vaddr + seg.memsz),
  };
}

/** A variable of the region: where it is, as an offset from the region's start, and its link-time vaddr for messages. */
interface RegionSymbol {
  offset: bigint;
  size: bigint;
  vaddr: bigint;
}

function regionSymbols(b: Build, r: WritableRegion): Map<string, RegionSymbol> {
  const out = new Map<string, RegionSymbol>();
  for (const s of [...b.obj.symtab, ...b.obj.dynamicSymbols]) {
    if (
      !s.defined ||
      s.name === '' ||
      s.type === STT_SECTION ||
      s.type === STT_FILE ||
      s.type === STT_TLS ||
      s.type === STT_FUNC ||
      s.type === STT_GNU_IFUNC
    )
      continue;
    if (s.value < r.start || s.value >= r.end) continue;
    const name = b.nameOf(s);
    if (!out.has(name)) out.set(name, { offset: s.value - r.start, size: s.size, vaddr: s.value });
  }
  return out;
}

/** What a byte of the region (by its offset) belongs to, for messages: a variable, else a section, else an offset. */
function locator(r: WritableRegion, symbols: Map<string, RegionSymbol>) {
  const sized = [...symbols.entries()]
    .filter(([, s]) => s.size > 0n)
    .sort((x, y) => (x[1].offset < y[1].offset ? -1 : 1));
  return (offset: bigint): string => {
    for (const [name, s] of sized) if (offset >= s.offset && offset < s.offset + s.size) return name;
    const vaddr = r.start + offset;
    const sec = r.sections.find((s) => vaddr >= s.addr && vaddr < s.addr + s.size);
    return sec ? `${sec.name}+0x${(vaddr - sec.addr).toString(16)}` : `0x${vaddr.toString(16)}`;
  };
}

const hexOf = (v: bigint) => `0x${v.toString(16)}`;

export function analyzeData(pair: Pair): DataResult {
  const { from, to } = pair;
  const f = new Findings();
  const ra = from.writable;
  const rb = to.writable;
  if (!ra && !rb) return { category: f.category('no writable data'), writable: null, sites: [] };
  if (!ra || !rb) {
    f.error(
      'DATA_REGION_CHANGED',
      `the ${ra ? from.label : to.label} build has writable data and the ${ra ? to.label : from.label} build has none`,
    );
    return {
      category: f.category('writable region differs'),
      writable: ra ? { start: hex(ra.start), end: hex(ra.end), sites: [] } : null,
      sites: [],
    };
  }

  for (const b of [from, to])
    if (dynamicIsWritable(b.obj))
      f.error(
        'DATA_DYNAMIC_WRITABLE',
        `the ${b.label} build's dynamic section lies in its writable region (linked with -z norelro): every build would read the loaded build's copy, whose addresses ld.so made absolute`,
      );
  const span = (r: WritableRegion) => `[0x${r.start.toString(16)}, 0x${r.end.toString(16)})`;
  const regions = {
    from: { start: hex(ra.start), end: hex(ra.end) },
    to: { start: hex(rb.start), end: hex(rb.end) },
  };
  let layoutSame = true;
  if (ra.end - ra.start !== rb.end - rb.start) {
    layoutSame = false;
    f.error(
      'DATA_REGION_CHANGED',
      `the writable region changes size: ${span(ra)} (${ra.end - ra.start} bytes) in the ${from.label} build, ${span(rb)} (${rb.end - rb.start} bytes) in the ${to.label} build; both builds must share the same pages`,
      undefined,
      regions,
    );
  }
  const da = dataSpan(ra);
  const db = dataSpan(rb);
  if (da.start !== db.start || da.fileEnd !== db.fileEnd || da.memEnd !== db.memEnd) {
    layoutSame = false;
    const text = (d: typeof da) =>
      `initialised data [+0x${d.start.toString(16)}, +0x${d.fileEnd.toString(16)}) and zero-filled up to +0x${d.memEnd.toString(16)}`;
    f.error(
      'DATA_SEGMENT_LAYOUT_CHANGED',
      `the writable segment's layout inside the region changes: ${text(da)} in the ${from.label} build, ${text(db)} in the ${to.label} build (offsets from each build's region start)`,
    );
  }
  compareSections(f, pair, ra, rb);

  const sa = regionSymbols(from, ra);
  const sb = regionSymbols(to, rb);
  compareSymbols(f, pair, sa, sb);

  const where = locator(ra, sa);
  compareSites(f, pair, ra, rb, where, locator(rb, sb));

  if (layoutSame && !f.list.some((x) => x.severity === 'error')) {
    compareInitialValues(f, pair, ra, rb, where);
    // Only a region that is otherwise the same is "moved"; a different one is already an error above.
    if (ra.start !== rb.start) {
      const shift = rb.start - ra.start;
      f.info(
        'DATA_REGION_MOVED',
        `the writable region moves by ${shift < 0n ? '-' : ''}0x${(shift < 0n ? -shift : shift).toString(16)} (whole pages) with the same size and layout: ${span(ra)} in the ${from.label} build, ${span(rb)} in the ${to.label} build; each build maps the shared pages at its own address`,
        undefined,
        regions,
      );
    }
  }

  const sites = matchedSites(from, to, ra, rb);
  const summary = `${span(ra)}${ra.start !== rb.start ? ` -> ${span(rb)}` : ''}, ${plural(sa.size, 'symbol')}, ${plural(sites.length, 'relocation site')}`;
  return {
    category: f.category(summary),
    writable: { start: hex(ra.start), end: hex(ra.end), to: regions.to, sites },
    sites,
  };
}

function compareSections(f: Findings, { from, to }: Pair, ra: WritableRegion, rb: WritableRegion): void {
  if (ra.sections.length === 0 || rb.sections.length === 0) return;
  // Sections that begin before the region (the RELRO part of a merged segment) are placed by their start too: offsets may be negative.
  const fmt = (r: WritableRegion) => (s: { name: string; addr: bigint; size: bigint }) => {
    const off = s.addr - r.start;
    return `${s.name} at ${off < 0n ? '-' : '+'}0x${(off < 0n ? -off : off).toString(16)} (${s.size} bytes)`;
  };
  const la = ra.sections.map(fmt(ra));
  const lb = rb.sections.map(fmt(rb));
  const gone = la.filter((x) => !lb.includes(x));
  const come = lb.filter((x) => !la.includes(x));
  if (gone.length || come.length) {
    f.error(
      'DATA_SECTIONS_CHANGED',
      `the sections in the writable region differ (offsets from each build's region start): ${from.label} has ${listText(gone)}${come.length ? `; ${to.label} has ${listText(come)}` : ''}`,
      undefined,
      { from: la, to: lb },
    );
  }
}

function compareSymbols(
  f: Findings,
  { from, to }: Pair,
  sa: Map<string, RegionSymbol>,
  sb: Map<string, RegionSymbol>,
): void {
  const moved: string[] = [];
  const resized: string[] = [];
  const details: Record<string, string> = {};
  for (const [name, a] of sa) {
    const b = sb.get(name);
    if (!b) continue;
    if (a.offset !== b.offset) {
      moved.push(name);
      details[name] =
        `region+${hexOf(a.offset)} -> region+${hexOf(b.offset)} (${hexOf(a.vaddr)} -> ${hexOf(b.vaddr)})`;
    } else if (a.size !== b.size) {
      resized.push(name);
      details[name] = `${a.size} -> ${b.size} bytes`;
    }
  }
  const pick = (names: string[]) => Object.fromEntries(names.map((n) => [n, details[n]]));
  const withDetail = (names: string[]) => listText(names.map((n) => `${n} (${details[n]})`));
  if (moved.length)
    f.error(
      'DATA_SYMBOL_MOVED',
      `${plural(moved.length, 'variable')} in the writable region move: ${withDetail(moved)}; the ${to.label} code would read the wrong bytes`,
      moved,
      pick(moved),
    );
  if (resized.length)
    f.error(
      'DATA_SYMBOL_RESIZED',
      `${plural(resized.length, 'variable')} in the writable region change size: ${withDetail(resized)}`,
      resized,
      pick(resized),
    );

  const overlapping = (s: RegionSymbol, keep: (name: string, old: RegionSymbol) => boolean) =>
    [...sa]
      .filter(
        ([n, o]) =>
          keep(n, o) &&
          o.size > 0n &&
          s.size > 0n &&
          o.offset < s.offset + s.size &&
          s.offset < o.offset + o.size,
      )
      .map(([n]) => n);
  const staysInPlace = (n: string, o: RegionSymbol) => sb.get(n)?.offset === o.offset;
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
  if (replaced.length)
    f.error(
      'DATA_SYMBOL_REPLACED',
      `${plural(replaced.length, 'new variable')} of the ${to.label} build would reuse the bytes of ${replaced.length === 1 ? 'a variable' : 'variables'} the ${from.label} build keeps there: ${withDetail(replaced)}`,
      replaced,
      pick(replaced),
    );
  if (added.length)
    f.warning(
      'DATA_SYMBOL_ADDED',
      `${plural(added.length, 'new variable')} in previously unused bytes: ${listText(added)}; in a running process ${added.length === 1 ? 'it starts' : 'they start'} with the bytes found there, not ${added.length === 1 ? 'its' : 'their'} initial value`,
      added,
    );
  if (removed.length)
    f.info(
      'DATA_SYMBOL_REMOVED',
      `${plural(removed.length, 'variable')} no longer used: ${listText(removed)}`,
      removed,
    );
}

/**
 * Relocated words of the region, paired by their offset from each build's
 * region start. Each build's relocations are taken from its own region only:
 * the pages before it are RELRO (private, relocated per build).
 */
function compareSites(
  f: Findings,
  pair: Pair,
  ra: WritableRegion,
  rb: WritableRegion,
  whereFrom: (off: bigint) => string,
  whereTo: (off: bigint) => string,
): void {
  const { from, to } = pair;
  const byOffset = (b: Build, r: WritableRegion) =>
    new Map(b.relocsIn(Number(r.start), Number(r.end)).map((x) => [x.offset - r.start, x]));
  const siteA = byOffset(from, ra);
  const siteB = byOffset(to, rb);
  const symName = (r: Relocation) => (r.symIndex && r.symbol ? symbolKey(r.symbol) : '');

  // Partial RELRO: the shared .got.plt cannot grow a slot for a function the old build never called.
  const slotsA = new Set([...siteA.values()].filter((r) => r.type === RelocType.JUMP_SLOT).map(symName));
  const newImports = [
    ...new Set(
      [...siteB.values()]
        .filter((r) => r.type === RelocType.JUMP_SLOT && !slotsA.has(symName(r)))
        .map(symName),
    ),
  ];
  if (newImports.length) {
    f.error(
      'DATA_NEW_IMPORT_PARTIAL_RELRO',
      `the ${to.label} build calls ${plural(newImports.length, 'imported function')} the ${from.label} build did not (${listText(newImports)}); with partial RELRO their .got.plt slots would have to be added to the shared writable region`,
      newImports,
    );
  }

  const issues: Record<string, { list: string[]; symbols: Set<string> }> = {};
  const note = (code: string, text: string, at: bigint, inTo = false) => {
    const i = (issues[code] ??= { list: [], symbols: new Set() });
    if (i.list.length < MAX_DETAILS) i.list.push(text);
    i.symbols.add((inTo ? whereTo : whereFrom)(at));
  };
  const names = { a: targetsOf(from).nameOf, b: targetsOf(to).nameOf };
  for (const off of new Set([...siteA.keys(), ...siteB.keys()])) {
    const a = siteA.get(off);
    const b = siteB.get(off);
    const place = (a ? whereFrom : whereTo)(off);
    const vaddr = (a ? ra : rb).start + off;
    const at = place.startsWith('0x') ? place : `0x${vaddr.toString(16)} (${place})`;
    // Slot shifts caused by a new PLT import are already explained by DATA_NEW_IMPORT_PARTIAL_RELRO.
    if (newImports.length && (a?.type === RelocType.JUMP_SLOT || b?.type === RelocType.JUMP_SLOT)) continue;
    if (!a || !b) {
      const r = (a ?? b)!;
      note(
        a ? 'DATA_RELOC_SITE_REMOVED' : 'DATA_RELOC_SITE_ADDED',
        `${at}: ${relocTypeName(r.type)}${symName(r) ? ` ${symName(r)}` : ''}`,
        off,
        !a,
      );
      continue;
    }
    if (a.type !== b.type) {
      note('DATA_RELOC_TYPE_CHANGED', `${at}: ${relocTypeName(a.type)} -> ${relocTypeName(b.type)}`, off);
      continue;
    }
    if (symName(a) !== symName(b)) {
      const got =
        a.type === RelocType.GLOB_DAT ||
        a.type === RelocType.JUMP_SLOT ||
        a.type === RelocType.DTPMOD64 ||
        a.type === RelocType.DTPOFF64 ||
        a.type === RelocType.TPOFF64;
      note(
        got ? 'DATA_RELOC_SYMBOL_CHANGED' : 'DATA_POINTER_CHANGED',
        `${at}: ${symName(a) || '(none)'} -> ${symName(b) || '(none)'}`,
        off,
      );
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
    DATA_RELOC_SITE_ADDED: [
      'relocated words appear in the writable region where the old build keeps plain data',
      'error',
    ],
    DATA_RELOC_SITE_REMOVED: ['relocated words of the old build become plain data in the new build', 'error'],
    DATA_RELOC_TYPE_CHANGED: ['relocations in the writable region change type', 'error'],
    DATA_RELOC_SYMBOL_CHANGED: ['GOT entries in the writable region refer to other symbols', 'error'],
    DATA_POINTER_CHANGED: [
      'initialised pointers in the writable region point elsewhere; running processes keep the pointers they have',
      'warning',
    ],
  };
  for (const [code, [text, severity]] of Object.entries(texts)) {
    const i = issues[code];
    if (!i) continue;
    f.add(severity, code, `${text}: ${listText(i.list, 4)}`, [...i.symbols], { sites: i.list });
  }
}

function compareInitialValues(
  f: Findings,
  { from, to }: Pair,
  ra: WritableRegion,
  rb: WritableRegion,
  where: (off: bigint) => string,
): void {
  // The layout is the same (checked before): one span of offsets, read at each build's own addresses.
  const { start, memEnd } = dataSpan(ra);
  const len = Number(memEnd - start);
  if (len <= 0) return;
  const a = from.obj.readAt(ra.start + start, len);
  const b = to.obj.readAt(rb.start + start, len);
  if (a.equals(b)) return;
  const masked = new Uint8Array(len);
  const mask = (from: number, n: number) => masked.fill(1, Math.max(0, from), Math.min(len, from + n));
  for (const [build, r] of [
    [from, ra],
    [to, rb],
  ] as const) {
    const base = r.start + start;
    for (const rel of build.relocsIn(Number(base), Number(base) + len)) mask(Number(rel.offset - base), 8);
    const pltgot = build.obj.dynamic?.pltgot;
    if (pltgot !== undefined) mask(Number(pltgot - base), RESERVED_GOT_BYTES);
  }
  const changed = new Set<string>();
  for (let i = 0; i < len; i++) if (a[i] !== b[i] && !masked[i]) changed.add(where(start + BigInt(i)));
  if (changed.size === 0) return;
  const list = [...changed];
  f.warning(
    'DATA_INITIAL_VALUE_CHANGED',
    `initial values differ for ${listText(list)}; running processes keep their current values, only new processes start with the new ones`,
    list,
  );
}
