/**
 * Symbols by address. `symbolContaining` (index.ts) answers one bigint
 * address at a time; a caller that asks for every target of every
 * instruction of a library (the packer) pays more for the BigInt and the
 * error wrapper around each call than for the search. `symbolIndex` answers
 * the same question with numbers: link-time vaddrs of a shared object fit a
 * double exactly, and symbols with values past 2^53 sort (and compare) after
 * every such vaddr, so for any vaddr up to Number.MAX_SAFE_INTEGER both give
 * the same symbol.
 */
import * as C from './constants.js';
import { guard } from './errors.js';
import type { ElfObject, ElfSymbol } from './types.js';

/**
 * The symbols an address can be named by: defined FUNC, OBJECT and IFUNC
 * symbols of .symtab and .dynsym outside SHN_ABS, one per (name, value,
 * size), sorted by value (stable: .symtab's order, then .dynsym's). Cached
 * per object.
 */
export function addressSymbols(obj: ElfObject): readonly ElfSymbol[] {
  let syms = candidates.get(obj);
  if (!syms) candidates.set(obj, (syms = collect(obj)));
  return syms;
}

const candidates = new WeakMap<ElfObject, ElfSymbol[]>();

function collect(obj: ElfObject): ElfSymbol[] {
  // By name, the few symbols of that name kept so far: .dynsym repeats most of .symtab.
  const seen = new Map<string, ElfSymbol | ElfSymbol[]>();
  const syms: ElfSymbol[] = [];
  for (const list of [obj.symtab, obj.dynamicSymbols]) {
    for (const s of list) {
      if (!s.defined || s.shndx === C.SHN_ABS) continue;
      if (s.type !== C.STT_FUNC && s.type !== C.STT_OBJECT && s.type !== C.STT_GNU_IFUNC) continue;
      const kept = seen.get(s.name);
      const same = (k: ElfSymbol) => k.value === s.value && k.size === s.size;
      if (kept === undefined) seen.set(s.name, s);
      else if (Array.isArray(kept) ? kept.some(same) : same(kept)) continue;
      else seen.set(s.name, Array.isArray(kept) ? [...kept, s] : [kept, s]);
      syms.push(s);
    }
  }
  return syms.sort((a, b) => (a.value < b.value ? -1 : a.value > b.value ? 1 : 0));
}

export interface SymbolIndex {
  /** addressSymbols(obj). */
  readonly symbols: readonly ElfSymbol[];
  /** symbolContaining(obj, BigInt(vaddr)), for 0 <= vaddr <= Number.MAX_SAFE_INTEGER. */
  containing(vaddr: number): ElfSymbol | undefined;
}

const indexes = new WeakMap<ElfObject, SymbolIndex>();

/** The number-based index of `obj`, built once per object. */
export function symbolIndex(obj: ElfObject): SymbolIndex {
  let idx = indexes.get(obj);
  if (!idx) indexes.set(obj, (idx = guard('symbol index', () => buildIndex(obj))));
  return idx;
}

function buildIndex(obj: ElfObject): SymbolIndex {
  const syms = addressSymbols(obj);
  const n = syms.length;
  const values = new Float64Array(n);
  /** maxEnd[i] = max over syms[0..i] of value + size (+1 for size 0): lets the backward scan stop early. */
  const maxEnd = new Float64Array(n);
  let m = 0;
  for (let i = 0; i < n; i++) {
    const s = syms[i]!;
    values[i] = Number(s.value);
    const e = Number(s.value + (s.size === 0n ? 1n : s.size));
    if (e > m) m = e;
    maxEnd[i] = m;
  }
  return {
    symbols: syms,
    containing(vaddr) {
      let lo = 0;
      let hi = n;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if (values[mid]! <= vaddr) lo = mid + 1;
        else hi = mid;
      }
      let best: ElfSymbol | undefined;
      for (let i = lo - 1; i >= 0 && maxEnd[i]! > vaddr; i--) {
        const s = syms[i]!;
        const covers = s.size === 0n ? values[i] === vaddr : vaddr < values[i]! + Number(s.size);
        if (covers && (!best || smallerOrGlobal(s, best))) best = s;
      }
      return best;
    },
  };
}

/**
 * Among nested candidates the smallest wins (a zero-sized symbol counts as
 * the largest), then a global one over a local one; otherwise the first met
 * scanning down from the address keeps its place.
 */
export function smallerOrGlobal(a: ElfSymbol, b: ElfSymbol): boolean {
  const sa = a.size === 0n ? 1n << 64n : a.size;
  const sb = b.size === 0n ? 1n << 64n : b.size;
  if (sa !== sb) return sa < sb;
  return a.bind !== C.STB_LOCAL && b.bind === C.STB_LOCAL;
}
