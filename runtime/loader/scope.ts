/**
 * Symbol lookup across loaded objects, in the order the dynamic loader
 * searches its global scope: the executable, then the libraries in link-map
 * order. Builds mapped by ulp-trigger are invisible to ld.so and so are never
 * part of the scope; a definition found in a library's canonical build is
 * translated to the live build by the caller.
 */
import { SymBind, SymType, type ElfSymbol } from '../../elf/types.js';
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
const ALLOWED = new Set<number>([SymType.NOTYPE, SymType.OBJECT, SymType.FUNC, SymType.COMMON, SymType.TLS, SymType.GNU_IFUNC]);

export function isDefinition(sym: ElfSymbol): boolean {
  if (!sym.defined || sym.bind === SymBind.LOCAL) return false;
  if (!ALLOWED.has(sym.type)) return false;
  // A zero value marks an undefined-like entry unless it is TLS (offset 0 is valid there).
  return sym.value !== 0n || sym.type === SymType.TLS;
}

export function lookupIn(obj: ProcessObject, ref: SymbolRef): Definition | undefined {
  const sym = obj.elf.lookup(ref.name, ref.version);
  if (!sym || !isDefinition(sym)) return undefined;
  return { obj, sym, addr: sym.type === SymType.TLS ? sym.value : obj.bias + sym.value };
}

/** First definition in scope order; the first one wins even when weak, as in ld.so without LD_DYNAMIC_WEAK. */
export function lookupInScope(scope: readonly ProcessObject[], ref: SymbolRef): Definition | undefined {
  for (const obj of scope) {
    const def = lookupIn(obj, ref);
    if (def) return def;
  }
  return undefined;
}

/** The global scope of a process: link-map objects in link-map order (executable first). */
export function globalScope(objects: readonly ProcessObject[]): ProcessObject[] {
  return objects.filter((o) => o.source === 'linkmap');
}
