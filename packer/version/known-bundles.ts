/**
 * Version evidence from bundles already written: each one says that its old
 * build was replaced by its new one, so its new build is the later of the
 * two (or the earlier, for a bundle packed with --allow-downgrade). A pair
 * whose NEW reaches OLD through such updates is a downgrade: the evidence a
 * library whose bytes carry no version (libssl) still leaves, once its
 * upgrade has been packed on this host. Chains count (3.0.19 -> 3.0.20 and
 * 3.0.20 -> 3.0.22 make 3.0.22 -> 3.0.19 a downgrade). Build-ids name
 * builds, so nothing else (names, paths) is compared. Pure.
 */
import type { VersionEvidence } from './evidence.js';

/** What the packer needs of a known bundle (patches/store.ts reads them). */
export interface KnownUpdate {
  path: string;
  oldBuildId: string;
  newBuildId: string;
  /** Packed with --allow-downgrade: its new build is the earlier one. */
  downgrade: boolean;
}

/** One step from an earlier build to a later one, and the bundle that says so. */
interface Step {
  later: string;
  via: KnownUpdate;
}

function laterThan(known: readonly KnownUpdate[]): Map<string, Step[]> {
  const edges = new Map<string, Step[]>();
  for (const k of known) {
    const [earlier, later] = k.downgrade ? [k.newBuildId, k.oldBuildId] : [k.oldBuildId, k.newBuildId];
    if (earlier === later) continue;
    edges.set(earlier, [...(edges.get(earlier) ?? []), { later, via: k }]);
  }
  return edges;
}

/** The fewest bundles that lead from build `from` to build `to` (breadth first), or undefined. */
function chain(edges: Map<string, Step[]>, from: string, to: string): KnownUpdate[] | undefined {
  const back = new Map<string, Step & { from: string }>();
  const queue = [from];
  const seen = new Set([from]);
  while (queue.length > 0) {
    const at = queue.shift()!;
    for (const step of edges.get(at) ?? []) {
      if (seen.has(step.later)) continue;
      seen.add(step.later);
      back.set(step.later, { ...step, from: at });
      if (step.later === to) {
        const out: KnownUpdate[] = [];
        for (let b = back.get(to); b; b = back.get(b.from)) out.unshift(b.via);
        return out;
      }
      queue.push(step.later);
    }
  }
  return undefined;
}

function describe(bundles: KnownUpdate[], direction: 'older' | 'newer'): string {
  const files = bundles.map((b) => b.path).join(', ');
  const steps = bundles.length > 1 ? `, in ${bundles.length} steps` : '';
  return direction === 'older'
    ? `${files} ${bundles.length > 1 ? 'update' : 'updates'} the NEW build to the OLD one${steps}`
    : `${files} already ${bundles.length > 1 ? 'update' : 'updates'} the OLD build to the NEW one${steps}`;
}

/**
 * What the known bundles say about OLD -> NEW: "older" when they lead from
 * NEW to OLD, "newer" when they lead from OLD to NEW (both when they
 * contradict each other; assessVersions then calls it a downgrade).
 */
export function knownBundleEvidence(
  oldBuildId: string,
  newBuildId: string,
  known: readonly KnownUpdate[],
): VersionEvidence[] {
  if (known.length === 0 || oldBuildId === newBuildId) return [];
  const edges = laterThan(known);
  const out: VersionEvidence[] = [];
  for (const [from, to, order] of [
    [newBuildId, oldBuildId, 'older'],
    [oldBuildId, newBuildId, 'newer'],
  ] as const) {
    const bundles = chain(edges, from, to);
    if (bundles)
      out.push({
        source: 'known-bundle',
        what: describe(bundles, order),
        old: oldBuildId,
        new: newBuildId,
        order,
        bundles: bundles.map((b) => b.path),
      });
  }
  return out;
}
