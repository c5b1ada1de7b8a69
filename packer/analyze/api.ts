/**
 * api: the exported dynamic symbols. Programs and other libraries already
 * bound to the old build's exports by name, version, type and (for data)
 * size; the new build must keep every one of them.
 */
import { STT_FUNC, STT_GNU_IFUNC, STT_OBJECT, STT_TLS, type ElfSymbol } from '../../elf/index.js';
import type { Category, SymbolRef } from '../../patches/index.js';
import { Findings, listText, plural } from './findings.js';
import type { Pair } from './pair.js';

export interface ApiResult {
  category: Category;
  exports: { added: SymbolRef[]; removed: SymbolRef[] };
}

const TYPE_NAMES: Record<number, string> = {
  0: 'NOTYPE',
  1: 'OBJECT',
  2: 'FUNC',
  5: 'COMMON',
  6: 'TLS',
  10: 'IFUNC',
};
const isFunction = (t: number) => t === STT_FUNC || t === STT_GNU_IFUNC;
const hasDataSize = (t: number) => t === STT_OBJECT || t === STT_TLS;
const BIND_NAMES: Record<number, string> = { 1: 'GLOBAL', 2: 'WEAK', 10: 'UNIQUE' };

const ref = (s: ElfSymbol): SymbolRef =>
  s.version ? { name: s.name, version: s.version } : { name: s.name };
const show = (s: ElfSymbol) => (s.version ? `${s.name}@${s.version}` : s.name);

export function analyzeApi({ from, to }: Pair): ApiResult {
  const f = new Findings();
  const removed: ElfSymbol[] = [];
  const versionChanged: string[] = [];
  const typeChanged: string[] = [];
  const sizeChanged: string[] = [];
  const details: Record<string, string> = {};
  const defaultChanged: string[] = [];
  const bindingChanged: string[] = [];
  const ifuncChanged: string[] = [];
  // By name, for the exports that lost their version: built only when one is missing.
  let toNames: Map<string, ElfSymbol[]> | undefined;
  const namedInTo = (name: string) => {
    if (!toNames) {
      toNames = new Map();
      for (const s of to.exports.values()) toNames.set(s.name, [...(toNames.get(s.name) ?? []), s]);
    }
    return toNames.get(name);
  };

  for (const [key, a] of from.exports) {
    const b = to.exports.get(key);
    if (!b) {
      const others = namedInTo(a.name);
      if (others) {
        versionChanged.push(show(a));
        details[show(a)] = `now ${others.map(show).join(', ')}`;
      } else removed.push(a);
      continue;
    }
    if (a.type !== b.type) {
      if (isFunction(a.type) && isFunction(b.type)) ifuncChanged.push(show(a));
      else {
        typeChanged.push(show(a));
        details[show(a)] = `${TYPE_NAMES[a.type] ?? a.type} -> ${TYPE_NAMES[b.type] ?? b.type}`;
      }
    } else if (hasDataSize(a.type) && a.size !== b.size) {
      sizeChanged.push(show(a));
      details[show(a)] = `${a.size} -> ${b.size} bytes`;
    }
    if (a.versionHidden !== b.versionHidden) defaultChanged.push(show(a));
    if (a.bind !== b.bind)
      bindingChanged.push(`${show(a)} (${BIND_NAMES[a.bind] ?? a.bind} -> ${BIND_NAMES[b.bind] ?? b.bind})`);
  }
  const added: ElfSymbol[] = [];
  for (const [k, s] of to.exports) if (!from.exports.has(k)) added.push(s);

  const pick = (names: string[]) => Object.fromEntries(names.map((n) => [n, details[n]]));
  if (removed.length > 0) {
    const names = removed.map(show);
    f.error(
      'API_EXPORT_REMOVED',
      `${plural(removed.length, 'exported symbol')} removed: ${listText(names)}; programs bound to ${removed.length === 1 ? 'it' : 'them'} would break`,
      names,
    );
  }
  if (versionChanged.length > 0) {
    f.error(
      'API_EXPORT_VERSION_CHANGED',
      `${plural(versionChanged.length, 'exported symbol')} no longer exported with ${versionChanged.length === 1 ? 'its' : 'their'} version: ${listText(versionChanged.map((n) => `${n} (${details[n]})`))}`,
      versionChanged,
      pick(versionChanged),
    );
  }
  if (typeChanged.length > 0) {
    f.error(
      'API_EXPORT_TYPE_CHANGED',
      `${plural(typeChanged.length, 'exported symbol')} changed type: ${listText(typeChanged.map((n) => `${n} (${details[n]})`))}`,
      typeChanged,
      pick(typeChanged),
    );
  }
  if (sizeChanged.length > 0) {
    f.error(
      'API_EXPORT_SIZE_CHANGED',
      `${plural(sizeChanged.length, 'exported variable')} changed size: ${listText(sizeChanged.map((n) => `${n} (${details[n]})`))}; programs may hold copies of the old size`,
      sizeChanged,
      pick(sizeChanged),
    );
  }
  if (defaultChanged.length > 0) {
    f.warning(
      'API_EXPORT_DEFAULT_VERSION_CHANGED',
      `the default version changes for ${listText(defaultChanged)}: existing bindings keep their version, new links pick another`,
      defaultChanged,
    );
  }
  if (ifuncChanged.length > 0)
    f.info(
      'API_EXPORT_IFUNC_CHANGED',
      `${listText(ifuncChanged)} switched between a plain function and an IFUNC`,
      ifuncChanged,
    );
  if (bindingChanged.length > 0)
    f.info('API_EXPORT_BINDING_CHANGED', `binding changed: ${listText(bindingChanged)}`, bindingChanged);
  if (added.length > 0) {
    const names = added.map(show);
    f.info('API_EXPORT_ADDED', `${plural(added.length, 'exported symbol')} added: ${listText(names)}`, names);
  }
  const summary = `${from.exports.size} exports; ${added.length} added, ${removed.length + versionChanged.length} removed, ${typeChanged.length + sizeChanged.length} changed`;
  return {
    category: f.category(summary),
    exports: {
      added: added.map(ref),
      removed: [...removed.map(ref), ...versionChanged.map((n) => from.exports.get(n)!).map(ref)],
    },
  };
}
