/**
 * A bundle carries the patch and its reverse. Both are read the same way:
 * the build switched away from, the build switched to, and the report of that
 * direction, so the trigger's apply and revert share one code path.
 */
import type { Bundle } from './bundle.js';
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
