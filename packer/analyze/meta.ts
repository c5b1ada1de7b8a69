/**
 * meta: what kind of object each build is and what it needs from the
 * process: SONAME, DT_NEEDED, imported symbols, RELRO mode, flags.
 */
import type { Category, ImportRef } from '../../patches/index.js';
import type { Build } from '../model.js';
import { symbolKey } from '../model.js';
import { Findings, listText, plural } from './findings.js';
import type { Pair } from './pair.js';

/** glibc's loader keeps private pointers into these; replacing them under it is not designed yet. */
const GLIBC_SONAMES = new Set(['libc.so.6', 'ld-linux-x86-64.so.2']);

export interface MetaResult {
  category: Category;
  needed: { added: string[]; removed: string[] };
  imports: { added: ImportRef[]; removed: ImportRef[] };
}

export function importsOf(b: Build): Map<string, ImportRef> {
  const out = new Map<string, ImportRef>();
  for (const [key, s] of b.imports) {
    const ref: ImportRef = { name: s.name };
    if (s.version) ref.version = s.version;
    if (s.versionFile) ref.library = s.versionFile;
    out.set(key, ref);
  }
  return out;
}

export function analyzeMeta({ from, to }: Pair): MetaResult {
  const f = new Findings();
  const soname = to.obj.soname;
  if (from.obj.soname !== soname) {
    f.error(
      'META_SONAME_CHANGED',
      `the SONAME changes from ${from.obj.soname ?? '(none)'} to ${soname ?? '(none)'}: these are different libraries`,
    );
  }
  if (soname && GLIBC_SONAMES.has(soname)) {
    f.error(
      'META_GLIBC_UNSUPPORTED',
      `${soname} is part of glibc, whose loader holds private pointers into it; it cannot be replaced in a running process`,
      [soname],
    );
  }

  const neededFrom = new Set(from.obj.dynamic?.needed ?? []);
  const neededTo = new Set(to.obj.dynamic?.needed ?? []);
  const added = [...neededTo].filter((n) => !neededFrom.has(n));
  const removed = [...neededFrom].filter((n) => !neededTo.has(n));
  if (added.length > 0) {
    f.warning(
      'META_NEEDED_ADDED',
      `the ${to.label} build needs ${listText(added)}, which the ${from.label} build did not: the update applies only to processes that already have ${added.length === 1 ? 'it' : 'them'} loaded`,
      added,
    );
  }
  if (removed.length > 0) f.info('META_NEEDED_REMOVED', `no longer needed: ${listText(removed)}`, removed);

  const impFrom = importsOf(from);
  const impTo = importsOf(to);
  const impAdded = [...impTo].filter(([k]) => !impFrom.has(k)).map(([, v]) => v);
  const impRemoved = [...impFrom].filter(([k]) => !impTo.has(k)).map(([, v]) => v);
  if (impAdded.length > 0) {
    const names = impAdded.map(symbolKey);
    f.info(
      'META_IMPORT_ADDED',
      `${plural(impAdded.length, 'new imported symbol')} (resolved in the target process when the patch is applied): ${listText(names)}`,
      names,
    );
  }
  if (impRemoved.length > 0) {
    const names = impRemoved.map(symbolKey);
    f.info(
      'META_IMPORT_REMOVED',
      `${plural(impRemoved.length, 'imported symbol')} no longer used: ${listText(names)}`,
      names,
    );
  }

  if (from.relro !== to.relro)
    f.info('META_RELRO_CHANGED', `RELRO changes from ${from.relro} to ${to.relro}`);
  const dFrom = from.obj.dynamic;
  const dTo = to.obj.dynamic;
  if (dTo?.textrel)
    f.warning(
      'META_TEXTREL',
      `the ${to.label} build has text relocations: its code pages are written when it is mapped`,
    );
  if ((dFrom?.symbolic ?? false) !== (dTo?.symbolic ?? false))
    f.info(
      'META_SYMBOLIC_CHANGED',
      `DT_SYMBOLIC/-Bsymbolic is ${dTo?.symbolic ? 'set' : 'cleared'} in the ${to.label} build`,
    );
  if ((dFrom?.runpath ?? dFrom?.rpath) !== (dTo?.runpath ?? dTo?.rpath))
    f.info(
      'META_RUNPATH_CHANGED',
      'the library search path (RUNPATH/RPATH) changes; a new dependency is looked up in the target process, not through it',
    );

  const parts = [`SONAME ${soname ?? '(none)'}`];
  if (added.length || removed.length)
    parts.push(`${added.length} dependencies added, ${removed.length} removed`);
  if (impAdded.length || impRemoved.length)
    parts.push(`${impAdded.length} imports added, ${impRemoved.length} removed`);
  return {
    category: f.category(parts.join('; ')),
    needed: { added, removed },
    imports: { added: impAdded, removed: impRemoved },
  };
}
