/**
 * Plans the relink: which symbol slots (GLOB_DAT, JUMP_SLOT, R_X86_64_64) in
 * which objects must be rewritten so that every call goes to the target
 * build. Pure: callers read slot values (inside the pause, so the decision is
 * made on what the process holds at that instant) and pass them in.
 *
 * The same classification answers `--status`: a slot that holds the address
 * of a non-live build's symbol is an old reference.
 */
import { RelocType, SymType, type Relocation } from '../../elf/types.js';
import { contains, inCode, type Family, type ProcessObject, type Region } from './model.js';
import { lookupInScope, type SymbolRef } from './scope.js';

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

/**
 * Every slot in the process that may hold an address from the library:
 * symbol relocations whose symbol one of the family's builds defines. Sites
 * inside the shared writable region exist once, so they are taken from the
 * canonical build only.
 */
export function collectSlots(objects: readonly ProcessObject[], family: Family, region: Region): Slot[] {
  const exported = new Set<string>();
  for (const b of family.builds) for (const s of b.elf.dynamicSymbols) if (s.defined) exported.add(s.name);
  const slots: Slot[] = [];
  for (const owner of objects) {
    const isFamily = family.builds.includes(owner);
    for (const r of owner.elf.relocations) {
      if (!SYMBOL_SLOTS.has(r.type) || !r.symbol || !exported.has(r.symbol.name)) continue;
      const shared = r.offset >= region.start && r.offset < region.end;
      if (isFamily && shared && owner !== family.canonical) continue;
      slots.push({ owner, addr: owner.bias + r.offset, reloc: r, ref: { name: r.symbol.name, version: r.symbol.version } });
    }
  }
  return slots;
}

export interface ClassifyContext {
  family: Family;
  target: ProcessObject;
  region: Region;
  scope: readonly ProcessObject[];
}

/** What the slot holding `value` means, and what it should hold once `target` is live. */
export function classifySlot(slot: Slot, value: bigint, ctx: ClassifyContext): SlotState {
  const { family, target, region } = ctx;
  const addend = slot.reloc.type === RelocType.R64 ? slot.reloc.addend : 0n;
  const build = family.builds.find((b) => contains(b.span, value));
  if (build) {
    const inRegion = (v: bigint) => v - build.bias >= region.start && v - build.bias < region.end;
    if (inRegion(value)) return { kind: 'shared-data' };
    if (build === target) return { kind: 'target' };
    const sym = build.elf.lookup(slot.ref.name, slot.ref.version);
    if (sym?.defined && value === build.bias + sym.value + addend) {
      const t = target.elf.lookup(slot.ref.name, slot.ref.version);
      if (!t?.defined || t.type === SymType.GNU_IFUNC) return { kind: 'missing', build };
      return { kind: 'stale', build, value: BigInt.asUintN(64, targetAddress(t.value, target, family, region) + addend) };
    }
    if (slot.reloc.type === RelocType.JUMP_SLOT && build === slot.owner) return lazy(slot, ctx);
    return { kind: 'unmatched', build };
  }
  // An unbound lazy slot points back into its owner's PLT.
  if (slot.reloc.type === RelocType.JUMP_SLOT && !slot.reloc.symbol?.defined && inCode(slot.owner, value)) return lazy(slot, ctx);
  return { kind: 'other' };
}

function lazy(slot: Slot, ctx: ClassifyContext): SlotState {
  const def = lookupInScope(ctx.scope, slot.ref);
  if (!def || !ctx.family.builds.includes(def.obj)) return { kind: 'other' };
  const t = ctx.target.elf.lookup(slot.ref.name, slot.ref.version);
  if (!t?.defined || t.type === SymType.GNU_IFUNC) return { kind: 'missing', build: def.obj };
  return { kind: 'lazy', value: targetAddress(t.value, ctx.target, ctx.family, ctx.region) };
}

/** Data in the shared region is addressed through the canonical build; everything else through the target. */
function targetAddress(vaddr: bigint, target: ProcessObject, family: Family, region: Region): bigint {
  return vaddr >= region.start && vaddr < region.end ? family.canonical.bias + vaddr : target.bias + vaddr;
}

/**
 * Which build of the family a slot's value is the address of (the symbol the
 * slot names, in that build), or undefined. This is what "live" means: the
 * build the process's slots point at.
 */
export function slotBuild(slot: Slot, value: bigint, family: Family, region: Region): ProcessObject | undefined {
  const build = family.builds.find((b) => contains(b.span, value));
  if (!build) return undefined;
  const vaddr = value - build.bias;
  if (vaddr >= region.start && vaddr < region.end) return undefined;
  const addend = slot.reloc.type === RelocType.R64 ? slot.reloc.addend : 0n;
  const sym = build.elf.lookup(slot.ref.name, slot.ref.version);
  return sym?.defined && value === build.bias + sym.value + addend ? build : undefined;
}

/** How many slots point at each build; the live build is the one they point at. */
export function countByBuild(slots: readonly Slot[], values: readonly bigint[], family: Family, region: Region): Map<ProcessObject, number> {
  const counts = new Map<ProcessObject, number>();
  slots.forEach((slot, i) => {
    const b = slotBuild(slot, values[i]!, family, region);
    if (b) counts.set(b, (counts.get(b) ?? 0) + 1);
  });
  return counts;
}
