/**
 * Symbol lookup across loaded objects, in the order the dynamic loader
 * searches: its global scope (the executable, its dependencies and the
 * objects dlopen'ed RTLD_GLOBAL, in ld.so's own search-list order), then,
 * for an object dlopen'ed RTLD_LOCAL, its local group (the dlopen'ed object
 * and its dependencies). Builds mapped by ulp-trigger are invisible to ld.so
 * and so are never part of a scope; a definition found in a library's
 * canonical build is translated to the live build by the caller.
 */
import {
  STB_LOCAL,
  STT_COMMON,
  STT_FUNC,
  STT_GNU_IFUNC,
  STT_NOTYPE,
  STT_OBJECT,
  STT_TLS,
} from '../../elf/constants.js';
import type { ElfSymbol } from '../../elf/types.js';
import type { ProcessObject } from './model.js';

export interface Definition {
  obj: ProcessObject;
  sym: ElfSymbol;
  /** Runtime address (bias + st_value); for TLS symbols the offset inside the module's block. */
  addr: bigint;
}

export interface SymbolRef {
  name: string;
  version?: string | undefined;
}

/** Symbol types ld.so accepts as definitions (do_lookup_x's ALLOWED_STT). */
const ALLOWED = new Set<number>([STT_NOTYPE, STT_OBJECT, STT_FUNC, STT_COMMON, STT_TLS, STT_GNU_IFUNC]);

export function isDefinition(sym: ElfSymbol): boolean {
  if (!sym.defined || sym.bind === STB_LOCAL) return false;
  if (!ALLOWED.has(sym.type)) return false;
  // A zero value marks an undefined-like entry unless it is TLS (offset 0 is valid there).
  return sym.value !== 0n || sym.type === STT_TLS;
}

export function lookupIn(obj: ProcessObject, ref: SymbolRef): Definition | undefined {
  const sym = obj.elf.lookup(ref.name, ref.version);
  if (!sym || !isDefinition(sym)) return undefined;
  return { obj, sym, addr: sym.type === STT_TLS ? sym.value : obj.bias + sym.value };
}

/** First definition in scope order; the first one wins even when weak, as in ld.so without LD_DYNAMIC_WEAK. */
export function lookupInScope(scope: readonly ProcessObject[], ref: SymbolRef): Definition | undefined {
  for (const obj of scope) {
    const def = lookupIn(obj, ref);
    if (def) return def;
  }
  return undefined;
}

/**
 * What a snapshot learnt about ld.so's scopes (snapshot.ts), per link-map
 * object. Kept beside the objects rather than in them: a local group refers
 * to other objects.
 */
interface ScopeFacts {
  /** Position in ld.so's global search list, or -1: the object was dlopen'ed RTLD_LOCAL. */
  globalIndex: number;
  /** For an object outside the global scope: what ld.so searches after the global scope. */
  localGroup?: ProcessObject[];
}

const facts = new WeakMap<ProcessObject, ScopeFacts>();

/**
 * Records ld.so's global search list (`global`: objects in lookup order)
 * for the link-map objects of one snapshot, and derives the local group of
 * every object outside it: each object dlopen'ed RTLD_LOCAL (in link-map
 * order) whose dependency closure contains it contributes that closure, as
 * ld.so adds the search list of every dlopen that reaches an object to its
 * scope. Without a global list (unreadable), nothing is recorded and every
 * link-map object counts as global, in link-map order.
 */
export function recordScopes(
  objects: readonly ProcessObject[],
  global: readonly ProcessObject[] | undefined,
): void {
  if (!global) return;
  const loaded = objects.filter((o) => o.source === 'linkmap');
  const index = new Map(global.map((o, i) => [o, i]));
  const byName = new Map<string, ProcessObject>();
  for (const o of loaded) {
    if (o.soname && !byName.has(o.soname)) byName.set(o.soname, o);
    const base = o.name.slice(o.name.lastIndexOf('/') + 1);
    if (base && !byName.has(base)) byName.set(base, o);
  }
  const closure = (root: ProcessObject): ProcessObject[] => {
    const out = [root];
    for (let i = 0; i < out.length; i++) {
      for (const n of out[i]!.elf.dynamic?.needed ?? []) {
        const dep = byName.get(n) ?? byName.get(n.slice(n.lastIndexOf('/') + 1));
        if (dep && !out.includes(dep)) out.push(dep);
      }
    }
    return out;
  };
  const locals = loaded.filter((o) => !index.has(o));
  const groups = locals.map(closure);
  for (const o of loaded) {
    const i = index.get(o);
    if (i !== undefined) {
      facts.set(o, { globalIndex: i });
      continue;
    }
    const group: ProcessObject[] = [];
    for (const g of groups) if (g.includes(o)) for (const x of g) if (!group.includes(x)) group.push(x);
    facts.set(o, { globalIndex: -1, localGroup: group });
  }
}

/**
 * The global scope of a process: ld.so's global search list when the
 * snapshot could read it, else every link-map object in link-map order
 * (executable first).
 */
export function globalScope(objects: readonly ProcessObject[]): ProcessObject[] {
  const loaded = objects.filter((o) => o.source === 'linkmap');
  if (!loaded.some((o) => facts.has(o))) return loaded;
  return loaded
    .filter((o) => (facts.get(o)?.globalIndex ?? -1) >= 0)
    .sort((a, b) => facts.get(a)!.globalIndex - facts.get(b)!.globalIndex);
}

/** Where ld.so looks up the symbols `obj` imports: the global scope, then its local group if it was dlopen'ed RTLD_LOCAL. */
export function scopeOf(obj: ProcessObject, global: readonly ProcessObject[]): readonly ProcessObject[] {
  const group = facts.get(obj)?.localGroup;
  return group?.length ? [...global, ...group.filter((o) => !global.includes(o))] : global;
}
