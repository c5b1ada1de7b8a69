/**
 * Does the new build look older than the old one? Evidence that holds for
 * any library, not a list per library: the ELF package note some
 * distributions stamp into their builds (.note.package, FDO type 0xcafe1a7e,
 * {"type":"deb","name":..,"version":..}); version strings in read-only data
 * that differ between the builds ("OpenSSL 3.0.20 7 Apr 2026",
 * "expat_2.5.0", "libevent 2.1.12-stable"), paired by the text before the
 * version; and the input paths when they differ only in a versioned folder
 * or file name (ssl-3.0.19-1~deb12u2/libssl.so.3: a library whose bytes
 * carry no version, like libssl, is told only by this, or by the bundles
 * already packed, known-bundles.ts). Versions are
 * compared in Debian's order (dpkg.ts), which also orders plain dotted
 * versions the usual way. Pure.
 */
import { resolve, sep } from 'node:path';
import { PF_W, PF_X, type ElfObject } from '../../elf/index.js';
import { compareDebianVersions } from './dpkg.js';

/** NT_FDO_PACKAGING_METADATA, owner "FDO" (systemd's ELF package metadata spec; ld --package-metadata). */
export const NT_FDO_PACKAGING_METADATA = 0xcafe1a7e;

export interface PackageNote {
  type: string;
  name: string;
  version: string;
  /** Other fields of the note (architecture, os, debugInfoUrl...), as written. */
  [key: string]: string;
}

export interface VersionEvidence {
  source: 'package-note' | 'package-control' | 'version-string' | 'path' | 'known-bundle';
  /** What was compared, e.g. the package name or the text before the version. */
  what: string;
  old: string;
  new: string;
  /** The new build's version against the old one's. */
  order: 'older' | 'newer' | 'equal';
  /** known-bundle: the bundle files that say so (known-bundles.ts). */
  bundles?: string[];
}

export interface DowngradeAssessment {
  downgrade: boolean;
  evidence: VersionEvidence[];
}

/** The package note of a build, when it carries a well-formed one. */
export function packageNote(obj: ElfObject): PackageNote | undefined {
  const note = obj.notes.find((n) => n.name === 'FDO' && n.type === NT_FDO_PACKAGING_METADATA);
  if (!note) return undefined;
  const text = note.desc.toString('utf8').replace(/\0+$/, '');
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!json || typeof json !== 'object' || Array.isArray(json)) return undefined;
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(json)) if (typeof v === 'string') out[k] = v;
  if (!out.type || !out.name || !out.version) return undefined;
  return out as PackageNote;
}

/** A version token: digits and dots, optionally a Debian-style tail (3.0.20, 2.1.12-stable-8+deb12u1, 3.0.19-1~deb12u2). */
const VERSION_RE = /(?<![0-9A-Za-z.])\d+(?:\.\d+)+(?:[-~+][0-9A-Za-z.+~-]*[0-9A-Za-z])?/;
const MAX_STRING = 1024;

/**
 * The first version token of a text, with the text before it (what pairs
 * strings between builds). Dotted numbers of more than four parts are OIDs
 * and addresses (1.2.840.113549.1.1.1), not versions.
 */
export function splitVersion(text: string): { prefix: string; version: string } | undefined {
  const m = VERSION_RE.exec(text);
  if (!m || /^\d+(?:\.\d+){4}/.test(m[0])) return undefined;
  return { prefix: text.slice(0, m.index), version: m[0] };
}

/** A string names what its version is of ("OpenSSL 3.0.20", "expat_2.5.0"): a bare number could be anything. */
const named = (prefix: string) => /[A-Za-z]/.test(prefix);

/**
 * NUL-terminated printable strings with a version token in the read-only,
 * non-executable segments of a file. Every version token holds a digit, a
 * dot and a digit in a row, so the segments are searched for dots (natively,
 * Buffer.indexOf) and only the strings around such a dot are read: a loop in
 * JavaScript over every byte of libcrypto's 1.7 MB of read-only data cost
 * 30-40 ms in a fresh process.
 */
export function versionStrings(obj: ElfObject, file: Buffer): Set<string> {
  const out = new Set<string>();
  const printable = (c: number) => c >= 0x20 && c < 0x7f;
  const digit = (c: number) => c >= 0x30 && c <= 0x39;
  for (const p of obj.loadSegments) {
    if ((p.flags & (PF_W | PF_X)) !== 0) continue;
    const start = Number(p.offset);
    const end = Math.min(file.length, start + Number(p.filesz));
    for (let from = start; ;) {
      const dot = file.indexOf(0x2e, from);
      if (dot < 0 || dot + 1 >= end) break;
      from = dot + 1;
      if (dot <= start || !digit(file[dot - 1]!) || !digit(file[dot + 1]!)) continue;
      // The printable run around the dot: from the byte after the last other byte, to a NUL inside the segment.
      let s = dot - 1;
      while (s > start && printable(file[s - 1]!)) s--;
      let i = dot + 2;
      while (i < end && printable(file[i]!)) i++;
      from = i + 1;
      if (i >= end || file[i] !== 0 || i - s < 4 || i - s > MAX_STRING) continue;
      const text = file.toString('latin1', s, i);
      if (splitVersion(text)) out.add(text);
    }
  }
  return out;
}

function orderOf(oldV: string, newV: string): VersionEvidence['order'] | undefined {
  const c = compareDebianVersions(newV, oldV);
  return c === undefined ? undefined : c < 0 ? 'older' : c > 0 ? 'newer' : 'equal';
}

/** Strings only one build has, paired by the text before their version where the pairing is unambiguous. */
export function stringEvidence(
  oldStrings: ReadonlySet<string>,
  newStrings: ReadonlySet<string>,
): VersionEvidence[] {
  const byPrefix = (mine: ReadonlySet<string>, other: ReadonlySet<string>) => {
    const m = new Map<string, string[]>();
    for (const s of mine) {
      if (other.has(s)) continue;
      const v = splitVersion(s);
      if (!v || !named(v.prefix)) continue;
      m.set(v.prefix, [...(m.get(v.prefix) ?? []), s]);
    }
    return m;
  };
  const olds = byPrefix(oldStrings, newStrings);
  const news = byPrefix(newStrings, oldStrings);
  const out: VersionEvidence[] = [];
  for (const [prefix, o] of olds) {
    const n = news.get(prefix);
    if (o.length !== 1 || n?.length !== 1) continue;
    const ov = splitVersion(o[0]!)!.version;
    const nv = splitVersion(n[0]!)!.version;
    const order = orderOf(ov, nv);
    if (order && order !== 'equal')
      out.push({
        source: 'version-string',
        what: o[0]!.length > 80 ? `…${prefix.slice(-40)}${ov}…` : o[0]!,
        old: ov,
        new: nv,
        order,
      });
  }
  return out;
}

/** Path components that differ between the inputs, compared where both name a version after the same text. */
export function pathEvidence(oldPath: string, newPath: string): VersionEvidence[] {
  // Lined up from the file name backwards: old/ssl-3.0.20-1/libssl.so.3 against new/ssl-3.0.19-1/libssl.so.3.
  const a = resolve(oldPath).split(sep);
  const b = resolve(newPath).split(sep);
  const out: VersionEvidence[] = [];
  const n = Math.min(a.length, b.length);
  for (let k = 1; k <= n; k++) {
    const x = a[a.length - k]!;
    const y = b[b.length - k]!;
    if (x === y) continue;
    const vx = splitVersion(x);
    const vy = splitVersion(y);
    if (!vx || !vy || vx.prefix !== vy.prefix) continue;
    const order = orderOf(vx.version, vy.version);
    if (order && order !== 'equal')
      out.push({ source: 'path', what: `${x} -> ${y}`, old: vx.version, new: vy.version, order });
  }
  return out;
}

export interface BuildFacts {
  obj: ElfObject;
  bytes: Buffer;
  path: string;
}

/** The versions of the packages the builds were taken from, as the packages say (`ulp-pack --deb`: their control fields). */
export interface PackageVersions {
  type: string;
  name: string;
  old: string;
  new: string;
}

/**
 * The evidence, and whether it says downgrade: the distribution's own word
 * decides, that is the package notes when both builds carry one for the
 * same package, else the versions of the packages they were taken from;
 * otherwise any other evidence that the new build is older does, `other`
 * included (what the known bundles say, known-bundles.ts).
 */
export function assessVersions(
  old: BuildFacts,
  neu: BuildFacts,
  other: readonly VersionEvidence[] = [],
  packages?: PackageVersions,
): DowngradeAssessment {
  const evidence: VersionEvidence[] = [];
  const on = packageNote(old.obj);
  const nn = packageNote(neu.obj);
  let noteOrder: VersionEvidence['order'] | undefined;
  if (on && nn && on.type === nn.type && on.name === nn.name) {
    noteOrder = orderOf(on.version, nn.version);
    if (noteOrder)
      evidence.push({
        source: 'package-note',
        what: `${on.type} package ${on.name}`,
        old: on.version,
        new: nn.version,
        order: noteOrder,
      });
  }
  let packageOrder: VersionEvidence['order'] | undefined;
  if (packages) {
    packageOrder = orderOf(packages.old, packages.new);
    if (packageOrder)
      evidence.push({
        source: 'package-control',
        what: `${packages.type} package ${packages.name}`,
        old: packages.old,
        new: packages.new,
        order: packageOrder,
      });
  }
  const decisive = noteOrder ?? packageOrder;
  evidence.push(...stringEvidence(versionStrings(old.obj, old.bytes), versionStrings(neu.obj, neu.bytes)));
  evidence.push(...pathEvidence(old.path, neu.path));
  evidence.push(...other);
  const downgrade = decisive !== undefined ? decisive === 'older' : evidence.some((e) => e.order === 'older');
  return { downgrade, evidence };
}
