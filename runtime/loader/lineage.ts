/**
 * Which build of a library was stacked on which, read from the names of the
 * builds ulp mapped. Pure, and free of the runtime: trigger/decide.ts
 * imports it without loading koffi.
 */
import type { Family } from './model.js';

/**
 * The order of the builds in a stack of patches. A build staged by a patch
 * carries the patch's other build in its memfd name (`peer`): a `new` build
 * sits on its bundle's old build, an `old` build (a revert that had to stage
 * the old build) sits under its bundle's new one. This is what tells
 * "reverting a patch below the live build" (undo the stack) from "reverting
 * a patch the process is already below" (nothing to do); the build-ids alone
 * cannot.
 */
export interface Lineage {
  /** Build-id -> build-ids of the builds directly below it. */
  below: ReadonlyMap<string, readonly string[]>;
  /** False when some build ulp mapped has no peer in its name (mapped by an older ulp-trigger): the order is then partly unknown. */
  complete: boolean;
}

export function lineageOf(family: Family): Lineage {
  const below = new Map<string, string[]>();
  let complete = true;
  const full = (prefix: string) => family.builds.find((b) => b.buildId?.startsWith(prefix))?.buildId;
  const edge = (upper: string | undefined, lower: string | undefined) => {
    if (!upper || !lower) return void (complete = false);
    below.set(upper, [...(below.get(upper) ?? []), lower]);
  };
  for (const b of family.builds) {
    if (!b.ulp) continue;
    const peer = b.ulp.peer;
    if (peer === undefined) {
      complete = false;
      continue;
    }
    if (b.ulp.role === 'new') edge(b.buildId, full(peer));
    else edge(full(peer), b.buildId);
  }
  return { below, complete };
}

/**
 * Whether `upper` was reached from `lower` by stacking patches (`lower` is
 * below it in the lineage); undefined when the lineage is incomplete and
 * does not show it.
 */
export function stackedOn(lineage: Lineage, upper: string, lower: string): boolean | undefined {
  const seen = new Set<string>([upper]);
  for (const queue = [upper]; queue.length > 0;) {
    for (const b of lineage.below.get(queue.shift()!) ?? []) {
      if (b === lower) return true;
      if (seen.has(b)) continue;
      seen.add(b);
      queue.push(b);
    }
  }
  return lineage.complete ? false : undefined;
}
