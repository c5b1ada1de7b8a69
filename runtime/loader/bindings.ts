/**
 * Which objects of a process are bound to a symbol of a library that the
 * build about to become live does not define: the one thing that makes a
 * revert (or any switch to a build with fewer exports) unsafe. Such a slot
 * cannot be moved to the target, and the build it points at is no longer the
 * one whose code runs over the shared data. Pure: slot values are passed in.
 *
 * What cannot be seen: an address the program obtained with dlsym and keeps
 * in its own memory names no symbol; docs/LIMITATIONS.md says so.
 */
import type { ElfObject } from '../../elf/types.js';
import { RelocType } from '../../elf/types.js';
import { inCode, type Family, type ProcessObject } from './model.js';
import { slotBuild, type Slot } from './relink.js';
import { isDefinition, lookupInScope, scopeOf } from './scope.js';

export interface LostBinding {
  /** The object holding the slot: its SONAME, path, or "(executable)". */
  object: string;
  /** name or name@version. */
  symbol: string;
  /** The build the slot is bound to (or, for an unbound lazy slot, the one ld.so would bind it to). */
  buildId: string | undefined;
  /** An unbound lazy slot, bound at its first call. */
  lazy: boolean;
}

export function objectLabel(o: ProcessObject): string {
  return o.soname ?? (o.name || '(executable)');
}

export function lostBindings(
  slots: readonly Slot[],
  values: readonly bigint[],
  family: Family,
  target: ElfObject,
  scope: readonly ProcessObject[],
): LostBinding[] {
  const out: LostBinding[] = [];
  const seen = new Set<string>();
  slots.forEach((slot, i) => {
    // The library's own references leave with the build that holds them; IRELATIVE sites name no symbol.
    if (family.builds.includes(slot.owner) || slot.reloc.type === RelocType.IRELATIVE) return;
    const t = target.lookup(slot.ref.name, slot.ref.version);
    if (t && isDefinition(t)) return;
    const value = values[i]!;
    let build = slotBuild(slot, value, family);
    let lazy = false;
    if (
      !build &&
      slot.reloc.type === RelocType.JUMP_SLOT &&
      !slot.reloc.symbol?.defined &&
      inCode(slot.owner, value)
    ) {
      const def = lookupInScope(scopeOf(slot.owner, scope), slot.ref);
      if (def && family.builds.includes(def.obj)) {
        build = def.obj;
        lazy = true;
      }
    }
    if (!build) return;
    const symbol = slot.ref.version ? `${slot.ref.name}@${slot.ref.version}` : slot.ref.name;
    const key = `${objectLabel(slot.owner)}\0${symbol}`;
    if (seen.has(key)) return;
    seen.add(key);
    out.push({ object: objectLabel(slot.owner), symbol, buildId: build.buildId, lazy });
  });
  return out;
}
