/**
 * ro and relro: read-only data, and data that is read-only after relocation
 * (.data.rel.ro, .init_array, .got...). The new build gets its own private
 * copy of both, so every change is compatible; the report lists the named
 * objects that changed and the sections whose bytes differ. RELRO words that
 * carry a relocation are compared by what they will point at, not by their
 * link-time value, so moving code does not make every vtable "changed".
 */
import {
  SHF_ALLOC,
  SHF_EXECINSTR,
  SHF_WRITE,
  SHT_NOBITS,
  STT_OBJECT,
  type ElfSymbol,
  type SectionHeader,
} from '../../elf/index.js';
import type { Category } from '../../patches/index.js';
import { inPlace } from '../code/inplace.js';
import { normalizedBytes } from '../code/targets.js';
import type { Build, SegmentKind } from '../model.js';
import { Findings, listText, plural } from './findings.js';
import type { Pair } from './pair.js';

/** Dynamic-linking metadata and unwind tables: covered by api/meta, or change with any code change. */
const SKIPPED =
  /^\.(dynsym|dynstr|gnu\.hash|hash|gnu\.version.*|rela?\..*|relr\..*|note\..*|interp|eh_frame(_hdr)?|dynamic|got|got\.plt|gnu_debuglink|comment)$/;

function objectsIn(b: Build, kind: SegmentKind): Map<string, ElfSymbol> {
  const out = new Map<string, ElfSymbol>();
  for (const s of [...b.obj.symtab, ...b.obj.dynamicSymbols]) {
    if (!s.defined || s.type !== STT_OBJECT || s.size === 0n || b.kindAt(Number(s.value)) !== kind) continue;
    const name = b.nameOf(s);
    if (!out.has(name)) out.set(name, s);
  }
  return out;
}

function sectionsIn(b: Build, kind: SegmentKind): Map<string, SectionHeader> {
  const out = new Map<string, SectionHeader>();
  for (const s of b.obj.sections) {
    if (
      (s.flags & SHF_ALLOC) === 0n ||
      (s.flags & SHF_EXECINSTR) !== 0n ||
      s.type === SHT_NOBITS ||
      s.size === 0n ||
      SKIPPED.test(s.name)
    )
      continue;
    if (kind === 'readonly' && (s.flags & SHF_WRITE) !== 0n) continue;
    if (b.kindAt(Number(s.addr)) === kind) out.set(s.name, s);
  }
  return out;
}

function compareArea(pair: Pair, kind: 'readonly' | 'relro', prefix: 'RO' | 'RELRO'): Category {
  const { from, to } = pair;
  // RELRO words are compared by what they will point at; laid out alike, most need no naming (inplace.ts).
  const place = kind === 'relro' ? inPlace(from, to) : undefined;
  const differ = (a: { addr: bigint; size: bigint }, b: { addr: bigint; size: bigint }) => {
    if (kind === 'readonly')
      return !from.obj.readAt(a.addr, Number(a.size)).equals(to.obj.readAt(b.addr, Number(b.size)));
    if (
      a.addr === b.addr &&
      a.size === b.size &&
      place?.dataUnchanged(Number(a.addr), Number(a.addr + a.size))
    )
      return false;
    return (
      normalizedBytes(from, Number(a.addr), Number(a.size)) !==
      normalizedBytes(to, Number(b.addr), Number(b.size))
    );
  };
  const f = new Findings();
  const oa = objectsIn(from, kind);
  const ob = objectsIn(to, kind);
  const changed: string[] = [];
  for (const [name, a] of oa) {
    const b = ob.get(name);
    if (b && differ({ addr: a.value, size: a.size }, { addr: b.value, size: b.size })) changed.push(name);
  }
  const added = [...ob.keys()].filter((n) => !oa.has(n));
  const removed = [...oa.keys()].filter((n) => !ob.has(n));
  if (changed.length)
    f.info(
      `${prefix}_OBJECT_CHANGED`,
      `${plural(changed.length, 'object')} changed: ${listText(changed)}`,
      changed,
    );
  if (added.length)
    f.info(`${prefix}_OBJECT_ADDED`, `${plural(added.length, 'object')} added: ${listText(added)}`, added);
  if (removed.length)
    f.info(
      `${prefix}_OBJECT_REMOVED`,
      `${plural(removed.length, 'object')} removed: ${listText(removed)}`,
      removed,
    );

  const sa = sectionsIn(from, kind);
  const sb = sectionsIn(to, kind);
  const sectionsChanged: string[] = [];
  for (const name of new Set([...sa.keys(), ...sb.keys()])) {
    const a = sa.get(name);
    const b = sb.get(name);
    if (!a || !b || a.size !== b.size || differ(a, b)) {
      sectionsChanged.push(`${name} (${a ? a.size : 'none'} -> ${b ? b.size : 'none'} bytes)`);
    }
  }
  if (sa.size === 0 && sb.size === 0 && from.obj.sections.length === 0) {
    // No section headers: compare the segments of this kind as a whole.
    if (segmentBytes(from, kind) !== segmentBytes(to, kind)) sectionsChanged.push(`${kind} segments`);
  }
  if (sectionsChanged.length)
    f.info(`${prefix}_SECTION_CHANGED`, `contents differ: ${listText(sectionsChanged)}`, undefined, {
      sections: sectionsChanged,
    });
  const summary =
    f.list.length === 0
      ? 'identical'
      : `${changed.length} objects changed, ${added.length} added, ${removed.length} removed; ${sectionsChanged.length} sections differ`;
  return f.category(summary);
}

function segmentBytes(b: Build, kind: SegmentKind): string {
  return b.obj.loadSegments
    .filter((p) => b.kindAt(Number(p.vaddr)) === kind)
    .map((p) => b.obj.readAt(p.vaddr, Number(p.filesz)).toString('latin1'))
    .join('\u0000');
}

export const analyzeRo = (pair: Pair): Category => compareArea(pair, 'readonly', 'RO');
export const analyzeRelro = (pair: Pair): Category => compareArea(pair, 'relro', 'RELRO');
