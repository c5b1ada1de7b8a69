/**
 * A bundle carries the patch and its reverse. Both are read the same way:
 * the build switched away from, the build switched to, and the report of that
 * direction, so the trigger's apply and revert share one code path.
 */
import type { Bundle } from './bundle.js';
import { parseHex } from './hex.js';
import type { BuildEntry, Direction } from './manifest.js';
// Types only: ulp-pack --check reads these helpers without loading the schemas (zod).
import type { Finding, Report } from './report.js';

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

/**
 * Findings that say only that exports disappear in this direction (the
 * reverse of an update that added exports). Switching that way is safe in a
 * process where nothing is bound to them, which ulp-trigger checks in each
 * process; every other error refuses the direction outright.
 */
export const EXPORT_REMOVAL_CODES: ReadonlySet<string> = new Set([
  'API_EXPORT_REMOVED',
  'API_EXPORT_VERSION_CHANGED',
]);

/** The error findings of a report that no check of a process can overcome. */
export function blockingFindings(report: Report): Array<{ category: string; finding: Finding }> {
  return (Object.keys(report.categories) as Array<keyof Report['categories']>).flatMap((category) =>
    (report.categories[category]?.findings ?? [])
      .filter((f) => f.severity === 'error' && !EXPORT_REMOVAL_CODES.has(f.code))
      .map((finding) => ({ category, finding })),
  );
}

/** The exports (name or name@version) a switch in this direction takes away. */
export function removedExports(report: Report): string[] {
  return report.exports.removed.map((s) => (s.version ? `${s.name}@${s.version}` : s.name));
}
