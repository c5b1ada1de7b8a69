/**
 * Structure layouts from DWARF: when both builds carry debug information (in
 * the build, or in a debug file found by build-id or by name under
 * --debug-dir), the layouts of the structures they both define are compared
 * exactly. A structure whose size changed, or whose members moved, grew or
 * appeared, makes the update unsafe: objects the old build allocated on the
 * heap would be misread or overrun by the new code.
 *
 * Which structures the code really keeps on the heap is not known; every
 * named structure of the library's DWARF is compared, which includes some
 * the library only passes by pointer (a superset, so never a missed change,
 * at the price of a refusal for a structure that only a caller allocates).
 *
 * compareStructLayouts is pure; structLayoutsOf and analyzeLayoutsFromDwarf
 * read debug files from disk.
 */
import { existsSync, statSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, resolve } from 'node:path';
import { UlpError, isUlpError } from '../../common/errors.js';
import { readRegularFile } from '../../common/files.js';
import type { ElfObject } from '../../elf/index.js';
import {
  debugLinkOf,
  debugSectionsOf,
  debugSectionsOfFile,
  readStructLayouts,
  type DebugSections,
  type StructLayout,
  type StructLayouts,
  type StructMember,
} from '../../elf/debug-info.js';
import type { Finding } from '../../patches/index.js';
import { hex } from '../../patches/hex.js';
import type { Pair } from './pair.js';

export type { StructLayout, StructLayouts, StructMember } from '../../elf/debug-info.js';

export interface MemberChange {
  name: string;
  /** Byte offsets (for a bit-field: of the byte holding its first bit). */
  from: number;
  to: number;
  fromBit?: number;
  toBit?: number;
}

export interface MemberResize {
  name: string;
  from: number | undefined;
  to: number | undefined;
  fromType: string;
  toType: string;
}

export interface StructLayoutChange {
  struct: string;
  oldSize: number;
  newSize: number;
  /** Members present in both whose offset (or bit position) changed. */
  moved: MemberChange[];
  /** Members present in both whose size changed. */
  resized: MemberResize[];
  /** Members only the new layout has, with their new offsets. */
  added: Array<{ name: string; offset: number }>;
  /** Members only the old layout has, with their old offsets. */
  removed: Array<{ name: string; offset: number }>;
  /** The name has several definitions in a build and these could not be paired by compile unit. */
  ambiguous?: boolean;
}

/** Offsets, bit positions and sizes: what the machine code depends on. Member names and type spellings are not. */
function sameShape(a: StructLayout, b: StructLayout): boolean {
  if (a.size !== b.size || a.members.length !== b.members.length) return false;
  for (let i = 0; i < a.members.length; i++) {
    const x = a.members[i]!;
    const y = b.members[i]!;
    if (x.offset !== y.offset || x.bitOffset !== y.bitOffset || x.bitSize !== y.bitSize) return false;
    if (x.size !== y.size || (x.size === undefined && x.type !== y.type)) return false;
  }
  return true;
}

function diff(name: string, a: StructLayout, b: StructLayout): StructLayoutChange | undefined {
  if (sameShape(a, b)) return undefined;
  const olds = new Map<string, StructMember>(a.members.map((m) => [m.name, m]));
  const news = new Map<string, StructMember>(b.members.map((m) => [m.name, m]));
  const change: StructLayoutChange = {
    struct: name,
    oldSize: a.size,
    newSize: b.size,
    moved: [],
    resized: [],
    added: [],
    removed: [],
  };
  for (const m of b.members) {
    const o = olds.get(m.name);
    if (!o) {
      change.added.push({ name: m.name, offset: m.offset });
      continue;
    }
    if (o.offset !== m.offset || o.bitOffset !== m.bitOffset) {
      const mv: MemberChange = { name: m.name, from: o.offset, to: m.offset };
      if (o.bitOffset !== undefined) mv.fromBit = o.bitOffset;
      if (m.bitOffset !== undefined) mv.toBit = m.bitOffset;
      change.moved.push(mv);
    }
    const sizeChanged =
      o.size !== m.size || o.bitSize !== m.bitSize || (o.size === undefined && o.type !== m.type);
    if (sizeChanged)
      change.resized.push({
        name: m.name,
        from: o.size,
        to: m.size,
        fromType: bitType(o),
        toType: bitType(m),
      });
  }
  for (const m of a.members) if (!news.has(m.name)) change.removed.push({ name: m.name, offset: m.offset });
  return change;
}

function bitType(m: StructMember): string {
  return m.bitSize === undefined ? m.type : `${m.type}:${m.bitSize}`;
}

/**
 * Several definitions of one name (private structures of different files):
 * an old definition that the new build still has unchanged is no change;
 * the others are paired with the new definition of the same compile unit.
 * An old definition whose unit is gone is reported against the first new
 * one, marked ambiguous: nothing proves which new definition its objects
 * meet.
 */
function diffAmbiguous(name: string, olds: StructLayout[], news: StructLayout[]): StructLayoutChange[] {
  const out: StructLayoutChange[] = [];
  for (const o of olds) {
    const scores = news.map((n) => affinity(o, n));
    const best = Math.max(...scores);
    const same = best > 0 ? news.filter((_, i) => scores[i] === best) : [];
    if (same.some((n) => sameShape(o, n))) continue;
    if (same.length === 0 && news.some((n) => sameShape(o, n))) continue; // its unit was renamed, its layout kept
    const n = same[0] ?? news[0]!;
    const c = diff(name, o, n);
    if (c) out.push(same.length === 1 ? c : { ...c, ambiguous: true });
  }
  return out;
}

/**
 * How surely two definitions come from the same source file: the most
 * trailing path components their compile units' names share. Names may be
 * absolute and differ in the build folder, so the file name (1) is enough
 * and a longer shared path (src/a.c) is better.
 */
function affinity(a: StructLayout, b: StructLayout): number {
  let best = 0;
  for (const x of a.units) {
    const xs = x.split('/');
    for (const y of b.units) {
      const ys = y.split('/');
      let n = 0;
      while (
        n < xs.length &&
        n < ys.length &&
        xs[xs.length - 1 - n] === ys[ys.length - 1 - n] &&
        xs[xs.length - 1 - n] !== ''
      )
        n++;
      if (n > best) best = n;
    }
  }
  return best;
}

/** Every structure both builds define by the same name whose layout differs, by name. */
export function compareStructLayouts(from: StructLayouts, to: StructLayouts): StructLayoutChange[] {
  const out: StructLayoutChange[] = [];
  for (const [name, olds] of from.byName) {
    const news = to.byName.get(name);
    if (!news) continue;
    if (olds.length === 1 && news.length === 1) {
      const c = diff(name, olds[0]!, news[0]!);
      if (c) out.push(c);
    } else out.push(...diffAmbiguous(name, olds, news));
  }
  return out.sort((a, b) => (a.struct < b.struct ? -1 : a.struct > b.struct ? 1 : 0));
}

// ---- finding the DWARF of a build ----

export interface LayoutSourceOptions {
  /** Folders holding separate debug files: `.build-id/xx/rest.debug` (the Debian dbgsym layout) or `<name>.debug`. */
  debugDirs?: string[];
  /** The build's path: its file name is the fallback key under the debug folders. */
  buildPath?: string;
}

/** A debug file is at most this large (libxul's is about 2 GiB; nothing a packer reads comes close). */
const DEBUG_FILE_MAX = 2 ** 31 - 1;

function readDebugFile(path: string): DebugSections | undefined {
  let buf: Buffer;
  try {
    buf = readRegularFile(path, DEBUG_FILE_MAX);
  } catch (err) {
    throw new UlpError(
      'PACK_DEBUG_FILE_UNREADABLE',
      `cannot read the debug file ${path}: ${(err as Error).message}`,
      'Check its permissions, or drop the --debug-dir that holds it.',
      { path },
      { cause: err },
    );
  }
  try {
    return debugSectionsOfFile(buf);
  } catch (err) {
    throw named(err, `debug file ${path}`, path);
  }
}

function named(err: unknown, what: string, path: string): unknown {
  if (!isUlpError(err)) return err;
  return new UlpError(
    err.code,
    `${what}: ${err.message}`,
    err.hint,
    { ...err.details, path },
    { cause: err },
  );
}

function isFile(p: string): boolean {
  try {
    return statSync(p).isFile();
  } catch {
    return false;
  }
}

/** Where a separate debug file for this build may be, in the order gdb looks. */
function candidates(obj: ElfObject, dirs: readonly string[], buildPath: string | undefined): string[] {
  const out: string[] = [];
  const id = obj.buildId;
  const names = new Set<string>();
  const link = debugLinkOf(obj);
  if (link) names.add(link);
  if (buildPath) names.add(`${basename(buildPath)}.debug`);
  for (const dir of dirs) {
    if (id && id.length > 2) out.push(join(dir, '.build-id', id.slice(0, 2), `${id.slice(2)}.debug`));
    for (const n of names) {
      out.push(join(dir, n));
      // gdb's global layout: the debug folder mirrors the build's own folder.
      if (buildPath) out.push(join(dir, dirname(resolve(buildPath)), n));
    }
  }
  return [...new Set(out)];
}

/** The dwz supplementary file a debug file refers to, looked up like the debug file itself. */
function findSupplementary(
  s: DebugSections,
  at: string | undefined,
  dirs: readonly string[],
): { sections: DebugSections; path: string } | undefined {
  const link = s.altLink;
  if (!link) return undefined;
  const tries: string[] = [];
  if (isAbsolute(link.path)) tries.push(link.path);
  else if (at) tries.push(resolve(dirname(at), link.path));
  for (const dir of dirs) {
    if (link.buildId.length > 2)
      tries.push(join(dir, '.build-id', link.buildId.slice(0, 2), `${link.buildId.slice(2)}.debug`));
    const m = /^\/usr\/lib\/debug\/(.*)$/.exec(link.path);
    if (m) tries.push(join(dir, m[1]!));
    tries.push(join(dir, basename(link.path)));
  }
  for (const p of tries) {
    if (!isFile(p)) continue;
    const sections = readDebugFile(p);
    if (sections && sections.buildId === link.buildId) return { sections, path: p };
  }
  return undefined;
}

export interface LayoutSource {
  layouts: StructLayouts;
  /** Where the DWARF came from, for the report: `.debug_info of BUILD` or the debug file's path. */
  source: string;
}

/**
 * The structure layouts of a build: from its own .debug_info, else from a
 * separate debug file whose build-id is the build's (found by build-id,
 * then by .gnu_debuglink or file name under each debug folder). Undefined
 * when no DWARF with types is found. A debug file of another build is
 * never used: its build-id must match.
 */
export function structLayoutsOf(obj: ElfObject, options: LayoutSourceOptions = {}): LayoutSource | undefined {
  const dirs = options.debugDirs ?? [];
  let found: { sections: DebugSections; path: string | undefined; where: string } | undefined;
  try {
    const own = debugSectionsOf(obj);
    if (own)
      found = {
        sections: own,
        path: options.buildPath,
        where: `.debug_info of ${options.buildPath ?? 'the build'}`,
      };
  } catch (err) {
    throw named(err, `debug information of ${options.buildPath ?? 'the build'}`, options.buildPath ?? '');
  }
  if (!found) {
    for (const p of candidates(obj, dirs, options.buildPath)) {
      if (!isFile(p)) continue;
      const sections = readDebugFile(p);
      if (!sections) continue;
      // Without a build-id on either side nothing proves the file belongs to this build.
      if (!obj.buildId || sections.buildId !== obj.buildId) continue;
      found = { sections, path: p, where: p };
      break;
    }
  }
  if (!found) return undefined;
  const alt = findSupplementary(found.sections, found.path, dirs);
  let layouts: StructLayouts;
  try {
    layouts = readStructLayouts(found.sections, alt ? { supplementary: alt.sections } : {});
  } catch (err) {
    throw named(err, found.where, found.path ?? '');
  }
  if (layouts.byName.size === 0) return undefined; // -g1 or line tables only: nothing to decide with
  return { layouts, source: alt ? `${found.where} with the dwz file ${alt.path}` : found.where };
}

export interface DwarfLayoutResult {
  /** Both builds' DWARF sources, for "decided from DWARF (source)". */
  source: string;
  changes: StructLayoutChange[];
  /**
   * Set when a build's DWARF refers to a dwz supplementary file that was
   * not found: structures moved into it were not compared, so an empty
   * `changes` does not prove the layouts equal.
   */
  incomplete?: string;
}

const cache = new WeakMap<Buffer, Map<string, LayoutSource | undefined>>();

/** structLayoutsOf once per build and set of folders (both directions of a pack ask). */
function cachedLayouts(
  obj: ElfObject,
  bytes: Buffer,
  options: LayoutSourceOptions,
): LayoutSource | undefined {
  const key = JSON.stringify([options.debugDirs ?? [], options.buildPath ?? '']);
  let m = cache.get(bytes);
  if (!m) cache.set(bytes, (m = new Map()));
  if (!m.has(key)) m.set(key, structLayoutsOf(obj, options));
  return m.get(key);
}

/**
 * The DWARF verdict on structure layouts for one direction, or undefined
 * when either build has no usable DWARF (then the machine code is the only
 * evidence).
 */
export function analyzeLayoutsFromDwarf(
  pair: Pair,
  options: { debugDirs?: string[] } = {},
): DwarfLayoutResult | undefined {
  const side = (b: Pair['from']) =>
    cachedLayouts(b.obj, b.bytes, {
      ...(options.debugDirs ? { debugDirs: options.debugDirs } : {}),
      buildPath: b.path,
    });
  const from = side(pair.from);
  if (!from) return undefined;
  const to = side(pair.to);
  if (!to) return undefined;
  const result: DwarfLayoutResult = {
    source: `${pair.from.label}: ${from.source}; ${pair.to.label}: ${to.source}`,
    changes: compareStructLayouts(from.layouts, to.layouts),
  };
  const missing = [from, to]
    .map((x) => x.layouts.missingSupplementary)
    .filter((x): x is string => x !== undefined);
  if (missing.length > 0)
    result.incomplete = `the dwz file ${[...new Set(missing)].join(', ')} was not found: structures moved into it were not compared`;
  return result;
}

const SHOWN = 6;

/** One line about one change, e.g. "struct ssl_st grew from 0x1d48 to 0x1d58 bytes; 24 members moved (early_data 0x1d40 -> 0x1d50, ...)". */
export function describeLayoutChange(c: StructLayoutChange): string {
  const parts: string[] = [];
  if (c.oldSize !== c.newSize)
    parts.push(
      `${c.struct} ${c.newSize > c.oldSize ? 'grew' : 'shrank'} from ${hex(c.oldSize)} to ${hex(c.newSize)} bytes`,
    );
  else parts.push(`${c.struct} (${hex(c.oldSize)} bytes) changed its layout`);
  const list = <T>(xs: T[], f: (x: T) => string) =>
    `${xs.slice(0, SHOWN).map(f).join(', ')}${xs.length > SHOWN ? `, and ${xs.length - SHOWN} more` : ''}`;
  if (c.added.length) parts.push(`added ${list(c.added, (m) => `${m.name} at ${hex(m.offset)}`)}`);
  if (c.removed.length)
    parts.push(`removed ${list(c.removed, (m) => `${m.name} (was at ${hex(m.offset)})`)}`);
  if (c.moved.length)
    parts.push(
      `${c.moved.length} ${c.moved.length === 1 ? 'member' : 'members'} moved (${list(c.moved, (m) => `${m.name} ${hex(m.from)} -> ${hex(m.to)}`)})`,
    );
  if (c.resized.length)
    parts.push(`resized ${list(c.resized, (m) => `${m.name} ${m.fromType} -> ${m.toType}`)}`);
  if (c.ambiguous)
    parts.push('(the name has several definitions; they were paired as well as their compile units allow)');
  return parts.join('; ');
}

/**
 * The findings the report shows: one LAYOUT_STRUCT_CHANGED error per
 * changed structure, each saying the decision came from DWARF.
 */
export function layoutFindings(r: DwarfLayoutResult): Finding[] {
  return r.changes.map((c) => ({
    severity: 'error' as const,
    code: 'LAYOUT_STRUCT_CHANGED',
    message: `${describeLayoutChange(c)}: objects the old build allocated would be misread by the new code (decided from DWARF (${r.source}))`,
    symbols: [c.struct],
    details: { ...c, source: r.source },
  }));
}

/** A --debug-dir that is not a readable folder is an input error, found before any analysis. */
export function checkDebugDirs(dirs: readonly string[]): void {
  for (const d of dirs) {
    let ok = false;
    try {
      ok = existsSync(d) && statSync(d).isDirectory();
    } catch {
      ok = false;
    }
    if (!ok)
      throw new UlpError(
        'PACK_DEBUG_DIR_UNREADABLE',
        `--debug-dir ${d} is not a folder`,
        'Give the folder that holds the debug files (e.g. the usr/lib/debug of an unpacked -dbgsym package).',
        { path: d },
      );
  }
}
