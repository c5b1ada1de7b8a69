/**
 * A bundle carries the patch and its reverse. Both are read the same way:
 * the build switched away from, the build switched to, and the report of that
 * direction, so the trigger's apply and revert share one code path.
 */
import type { Bundle } from './bundle.js';
import { parseHex } from './hex.js';
import type { BuildEntry, Direction } from './manifest.js';

export interface PatchStep {
  which: 'forward' | 'reverse';
  direction: Direction;
  from: { entry: BuildEntry; bytes: Buffer };
  to: { entry: BuildEntry; bytes: Buffer };
}

export function patchStep(bundle: Bundle, which: 'forward' | 'reverse'): PatchStep {
  const old = { entry: bundle.manifest.builds.old, bytes: bundle.oldBuild };
  const neu = { entry: bundle.manifest.builds.new, bytes: bundle.newBuild };
  return which === 'forward'
    ? { which, direction: bundle.manifest.forward, from: old, to: neu }
    : { which, direction: bundle.manifest.reverse, from: neu, to: old };
}

/**
 * Where the step's report says the `to` build keeps its writable region
 * (link-time vaddrs), or null when it has none. Bundles before format 1.1
 * do not record it: their packer required it to equal the `from` build's.
 */
export function recordedToRegion(step: PatchStep): { start: bigint; end: bigint } | null {
  const w = step.direction.report.writable;
  if (!w) return null;
  const r = w.to ?? w;
  return { start: parseHex(r.start), end: parseHex(r.end) };
}
