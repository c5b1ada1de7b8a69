/**
 * Plans the relink: which symbol slots (GLOB_DAT, JUMP_SLOT, R_X86_64_64) in
 * which objects must be rewritten so that every call goes to the target
 * build. Pure: callers read slot values (inside the pause, so the decision is
 * made on what the process holds at that instant) and pass them in.
 *
 * The same classification answers `--status`: a slot that holds the address
 * of a non-live build's symbol is an old reference.
 */
import { STT_GNU_IFUNC } from '../../elf/constants.js';
import { RelocType, type Relocation } from '../../elf/types.js';
import { contains, inCode, type Family, type ProcessObject, type Region } from './model.js';
import { lookupInScope, scopeOf, type SymbolRef } from './scope.js';
import { inRegion, ownRegion, sharedAddress } from './region.js';

export interface Slot {
  /** The object whose relocation this is. */
  owner: ProcessObject;
  /** Runtime address of the 8-byte slot. */
  addr: bigint;
  reloc: Relocation;
  ref: SymbolRef;
}

export type SlotState =
  /** Points at the target build already. */
  | { kind: 'target' }
  /** Points at a symbol of another build of the library: rewrite it. */
  | { kind: 'stale'; build: ProcessObject; value: bigint }
  /** An unbound lazy slot that ld.so would bind into the library: bind it to the target now. */
  | { kind: 'lazy'; value: bigint }
  /** Points into the shared writable region: all builds share it, nothing to do. */
  | { kind: 'shared-data' }
  /** Points into another build, but not at the symbol's address (an IFUNC result, a PLT stub...): left alone and reported. */
  | { kind: 'unmatched'; build: ProcessObject }
  /** The target does not define the symbol the slot refers to: left alone and reported. */
  | { kind: 'missing'; build: ProcessObject }
  /** Nothing to do with this library. */
  | { kind: 'other' };

const SYMBOL_SLOTS = new Set<number>([RelocType.GLOB_DAT, RelocType.JUMP_SLOT, RelocType.R64]);

/** The ref of an IRELATIVE site in the shared region: it names no symbol, only its place. */
const irelativeRef = (offset: bigint): SymbolRef => ({ name: `(IRELATIVE at 0x${offset.toString(16)})` });

/**
 * Every slot in the process that may hold an address from the library:
 * symbol relocations whose symbol one of the family's builds defines. Sites
 * inside the shared writable region exist once, so they are taken from the
 * canonical build only (`region` is its region; every other build has its
 * own, region.ts); among them, under partial RELRO, the .got.plt entries of
 * the library's local IFUNCs (IRELATIVE), which every build's code calls
 * through.
 */
export function collectSlots(objects: readonly ProcessObject[], family: Family, region: Region): Slot[] {
  const exported = new Set<string>();
  for (const b of family.builds) for (const s of b.elf.dynamicSymbols) if (s.defined) exported.add(s.name);
  const slots: Slot[] = [];
  for (const owner of objects) {
    const isFamily = family.builds.includes(owner);
    for (const r of owner.elf.relocations) {
      if (
        r.type === RelocType.IRELATIVE &&
        owner === family.canonical &&
        r.offset >= region.start &&
        r.offset < region.end
      ) {
        slots.push({ owner, addr: owner.bias + r.offset, reloc: r, ref: irelativeRef(r.offset) });
        continue;
      }
      if (!SYMBOL_SLOTS.has(r.type) || !r.symbol || !exported.has(r.symbol.name)) continue;
      // A build's sites in its own region are the canonical build's words, collected through the canonical build.
      if (isFamily && owner !== family.canonical && inRegion(ownRegion(owner.elf), r.offset)) continue;
      slots.push({
        owner,
        addr: owner.bias + r.offset,
        reloc: r,
        ref: { name: r.symbol.name, version: r.symbol.version },
      });
    }
  }
  return slots;
}

export interface ClassifyContext {
  family: Family;
  target: ProcessObject;
  /** The canonical build's region; each other build's is its own (region.ts). */
  region: Region;
  /** ld.so's global scope (scope.ts globalScope); an object dlopen'ed RTLD_LOCAL adds its local group. */
  scope: readonly ProcessObject[];
  /**
   * What the target build's IFUNC resolvers returned in the process, by
   * ifuncKey(): a slot bound to an IFUNC holds the resolver's choice, which
   * no symbol table tells. Without an entry such a slot is left alone ('missing').
   */
  ifuncs?: ReadonlyMap<string, bigint>;
}

export const ifuncKey = (ref: SymbolRef): string => `${ref.name}@${ref.version ?? ''}`;

/**
 * The target's IFUNC symbols that some slot refers to, each with its
 * resolver's runtime address: the calls to make in the process (while it
 * runs, before the pause) to fill ClassifyContext.ifuncs.
 */
export function ifuncResolvers(
  slots: readonly Slot[],
  target: ProcessObject,
): Array<{ key: string; resolver: bigint }> {
  const out = new Map<string, bigint>();
  for (const s of slots) {
    const key = ifuncKey(s.ref);
    if (out.has(key)) continue;
    if (s.reloc.type === RelocType.IRELATIVE) {
      // The same site in the target (the shared region is laid out alike in every build, each at its own vaddr) names its resolver.
      const from = ownRegion(s.owner.elf);
      const to = ownRegion(target.elf);
      if (!from || !to) continue;
      const offset = s.reloc.offset - from.start + to.start;
      const r = target.elf.relocations.find((x) => x.type === RelocType.IRELATIVE && x.offset === offset);
      if (r) out.set(key, target.bias + r.addend);
      continue;
    }
    const t = target.elf.lookup(s.ref.name, s.ref.version);
    if (t?.defined && t.type === STT_GNU_IFUNC) out.set(key, target.bias + t.value);
  }
  return [...out].map(([key, resolver]) => ({ key, resolver }));
}

/**
 * The loader bound `slot` to `build`'s definition of its symbol: the
 * symbol's address (+ addend), or, for an IFUNC, what the resolver chose,
 * which lies in the build's code.
 */
function boundTo(slot: Slot, value: bigint, build: ProcessObject, addend: bigint): boolean {
  if (slot.reloc.type === RelocType.IRELATIVE) return inCode(build, value);
  const sym = build.elf.lookup(slot.ref.name, slot.ref.version);
  if (!sym?.defined) return false;
  if (value === build.bias + sym.value + addend) return true;
  return sym.type === STT_GNU_IFUNC && inCode(build, value - addend);
}

/** The value a slot bound to the library's `ref` must hold once the target is live, or undefined when the target cannot provide it. */
function targetValue(slot: Slot, ctx: ClassifyContext, addend: bigint): bigint | undefined {
  if (slot.reloc.type === RelocType.IRELATIVE) return ctx.ifuncs?.get(ifuncKey(slot.ref));
  const t = ctx.target.elf.lookup(slot.ref.name, slot.ref.version);
  if (!t?.defined) return undefined;
  if (t.type === STT_GNU_IFUNC) {
    const chosen = ctx.ifuncs?.get(ifuncKey(slot.ref));
    return chosen === undefined ? undefined : BigInt.asUintN(64, chosen + addend);
  }
  return BigInt.asUintN(64, targetAddress(t.value, ctx.target, ctx.family) + addend);
}

/** What the slot holding `value` means, and what it should hold once `target` is live. */
export function classifySlot(slot: Slot, value: bigint, ctx: ClassifyContext): SlotState {
  const { family, target } = ctx;
  const addend = slot.reloc.type === RelocType.R64 ? slot.reloc.addend : 0n;
  const build = family.builds.find((b) => contains(b.span, value));
  if (build) {
    if (inRegion(ownRegion(build.elf), value - build.bias)) return { kind: 'shared-data' };
    if (build === target) return { kind: 'target' };
    if (boundTo(slot, value, build, addend)) {
      const v = targetValue(slot, ctx, addend);
      if (v !== undefined) return { kind: 'stale', build, value: v };
      // A build's own call to an export the target lacks leaves with that build: not a residue (countByBuild).
      return build === slot.owner ? { kind: 'other' } : { kind: 'missing', build };
    }
    if (slot.reloc.type === RelocType.JUMP_SLOT && build === slot.owner) return lazy(slot, ctx);
    return { kind: 'unmatched', build };
  }
  // An unbound lazy slot points back into its owner's PLT.
  if (slot.reloc.type === RelocType.JUMP_SLOT && !slot.reloc.symbol?.defined && inCode(slot.owner, value))
    return lazy(slot, ctx);
  return { kind: 'other' };
}

function lazy(slot: Slot, ctx: ClassifyContext): SlotState {
  // ld.so binds the slot in its owner's scope (a build of the library: the loader's build's scope).
  const owner = ctx.family.builds.includes(slot.owner) ? ctx.family.canonical : slot.owner;
  const def = lookupInScope(scopeOf(owner, ctx.scope), slot.ref);
  if (!def || !ctx.family.builds.includes(def.obj)) return { kind: 'other' };
  const v = targetValue(slot, ctx, 0n);
  return v === undefined ? { kind: 'missing', build: def.obj } : { kind: 'lazy', value: v };
}

/** Data in the target's region is addressed through the canonical build's copy; everything else through the target. */
function targetAddress(vaddr: bigint, target: ProcessObject, family: Family): bigint {
  return sharedAddress(family, target.elf, vaddr) ?? target.bias + vaddr;
}

/**
 * Which build of the family a slot's value is the address of (the symbol the
 * slot names, in that build), or undefined. This is what "live" means: the
 * build the process's slots point at.
 */
export function slotBuild(slot: Slot, value: bigint, family: Family): ProcessObject | undefined {
  const build = family.builds.find((b) => contains(b.span, value));
  if (!build) return undefined;
  if (inRegion(ownRegion(build.elf), value - build.bias)) return undefined;
  const addend = slot.reloc.type === RelocType.R64 ? slot.reloc.addend : 0n;
  return boundTo(slot, value, build, addend) ? build : undefined;
}

/**
 * How many slots point at each build; the live build is the one they point
 * at. A build's slot bound to its own symbol says nothing about which build
 * is live: a build that is not live keeps such a slot when the live build
 * lacks the symbol (an export a later version added and calls through its
 * own PLT), and counting it would make every such state look like an
 * interrupted switch.
 */
export function countByBuild(
  slots: readonly Slot[],
  values: readonly bigint[],
  family: Family,
): Map<ProcessObject, number> {
  const counts = new Map<ProcessObject, number>();
  slots.forEach((slot, i) => {
    const b = slotBuild(slot, values[i]!, family);
    if (b && b !== slot.owner) counts.set(b, (counts.get(b) ?? 0) + 1);
  });
  return counts;
}
