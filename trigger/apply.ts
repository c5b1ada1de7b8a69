/**
 * Applies or reverts one bundle in one process: refuse what must not be
 * touched, read the library's state, decide (decide.ts), then let the
 * loader runtime switch. Returns a result for the report; throws UlpError.
 */
import { UlpError } from '../common/errors.js';
import { decodeDataRefs, patchStep, type Bundle, type DataRefs, type PatchStep } from '../patches/index.js';
import { checkTarget } from '../runtime/index.js';
import type { ElfCache } from '../runtime/loader/elf-cache.js';
import { buildMemfdName } from '../runtime/loader/model.js';
import { prepare, switchLibrary, type SwitchReport, type SwitchRequest } from '../runtime/loader/switch-library.js';
import type { SessionOptions } from '../runtime/index.js';
import { decide, type Decision } from './decide.js';

/**
 * libc and the dynamic loader share private structures (and the thread
 * library shims are parts of libc since glibc 2.34); swapping one of them
 * under the others is not designed yet. libm and libresolv are ordinary.
 */
const GLIBC_SONAMES = new Set(['libc.so.6', 'ld-linux-x86-64.so.2', 'libpthread.so.0', 'libdl.so.2', 'librt.so.1', 'libutil.so.1', 'libanl.so.1']);

export interface RunOptions {
  which: 'forward' | 'reverse';
  dryRun?: boolean;
  progress?: (message: string) => void;
  session?: SessionOptions;
  /** Parsed objects shared across processes (--all). */
  elfCache?: ElfCache;
  /** Stage a build whose data-reference map is missing or incomplete (--allow-aliasing). */
  allowAliasing?: boolean;
}

export type Outcome = 'applied' | 'reverted' | 'already-applied' | 'not-applied' | 'dry-run';

export interface RunResult {
  pid: number;
  soname: string;
  patchId: string;
  which: 'forward' | 'reverse';
  outcome: Outcome;
  note?: string;
  fromBuildId: string;
  toBuildId: string;
  /** Build the process ran before. */
  liveBefore: string | undefined;
  /** The loader's report; absent for no-ops. */
  switch?: SwitchReport;
  /** Longest time every thread was stopped, in ms. */
  pauseMs?: number;
  /**
   * Set when --allow-aliasing let a build be staged whose code may reach some of the library's data
   * through a second address: why, and the code ranges the bundle's map does not cover.
   */
  aliasing?: { reason: string; uncovered: Array<{ start: string; end: string; reason: string }> };
}

export function refuseGlibc(soname: string): void {
  if (GLIBC_SONAMES.has(soname)) {
    throw new UlpError('TRIGGER_GLIBC', `${soname} is part of glibc, which cannot be patched live yet`, 'glibc shares private structures between libc and its loader; restart the processes to update it (docs/LIMITATIONS.md).', { soname });
  }
}

export function runOne(pid: number, bundle: Bundle, opts: RunOptions): RunResult {
  const step = patchStep(bundle, opts.which);
  const { soname, patchId } = bundle.manifest;
  refuseGlibc(soname);
  if (step.direction.verdict === 'incompatible') {
    throw new UlpError(
      'TRIGGER_INCOMPATIBLE',
      `the bundle's ${opts.which === 'forward' ? 'patch' : 'reverse patch'} is marked incompatible`,
      opts.which === 'forward'
        ? 'ulp-pack never writes such a bundle; it was edited or made by another tool.'
        : 'The new build cannot be swapped back for the old one (ulp-pack --inspect shows why, e.g. an export the new build added); restart the processes to go back.',
    );
  }
  checkTarget(pid);
  const stored = bundle.manifest.datarefs?.[opts.which === 'forward' ? 'new' : 'old'];
  const dataRefs = stored ? decodeDataRefs(stored) : undefined;
  const request = {
    pid,
    soname,
    target: {
      buildId: step.to.entry.buildId,
      bytes: step.to.bytes,
      memfdName: buildMemfdName(patchId, opts.which === 'forward' ? 'new' : 'old', soname, step.from.entry.buildId),
      dataRefs: dataRefs ? { region: dataRefs.region, code: dataRefs.code } : undefined,
    },
    ...(opts.allowAliasing ? { allowAliasing: true } : {}),
    ...(opts.progress ? { progress: opts.progress } : {}),
    ...(opts.session ? { session: opts.session } : {}),
    ...(opts.elfCache ? { elfCache: opts.elfCache } : {}),
  };
  // A plan another trigger overtook (TRIGGER_RACE) is made again on what the process has now.
  for (let attempt = 1; ; attempt++) {
    try {
      return decideAndSwitch(pid, patchId, step, request, opts, { present: !!bundle.manifest.datarefs, map: dataRefs });
    } catch (e) {
      if (!(e instanceof UlpError) || e.code !== 'TRIGGER_RACE' || attempt >= RACE_RETRIES) throw e;
    }
  }
}

const RACE_RETRIES = 3;

/**
 * Staging a build is allowed only when its code's references to the library's data are all known
 * (the bundle's map, with coverage proven), unless the operator accepts plain aliasing for the rest.
 * Returns what was accepted, for the report; throws before the process is touched otherwise.
 */
export function dataRefsPolicy(soname: string, which: 'forward' | 'reverse', refs: { present: boolean; map: DataRefs | undefined }, allow: boolean): RunResult['aliasing'] {
  const build = which === 'forward' ? 'new' : 'old';
  if (!refs.map) {
    // Only called for a library with writable data: its builds have a map in any bundle of format 1.1.
    const why = refs.present ? `the bundle has no data-reference map for its ${build} build` : 'the bundle carries no data-reference map (format 1.0, written before ulp-pack recorded one)';
    const reason = `${why}: the ${build} build's code would reach ${soname}'s data through a second address`;
    if (allow) return { reason, uncovered: [] };
    throw new UlpError('TRIGGER_DATAREFS_MISSING', reason, 'Repack the bundle with this ulp-pack, or pass --allow-aliasing to accept plain aliasing (pointer comparisons and futex wake-ups on the library\'s globals may then fail).', { soname });
  }
  const uncovered = refs.map.coverage.uncovered.map((r) => ({ start: `0x${r.start.toString(16)}`, end: `0x${r.end.toString(16)}`, reason: r.reason }));
  if (uncovered.length === 0) return undefined;
  const list = uncovered.slice(0, 8).map((r) => `[${r.start}, ${r.end})`).join(', ') + (uncovered.length > 8 ? ` and ${uncovered.length - 8} more` : '');
  const reason = `the ${build} build's data-reference map does not cover all of its code: ${list}; references from there would reach ${soname}'s data through a second address`;
  if (allow) return { reason, uncovered };
  throw new UlpError('TRIGGER_DATAREFS_UNPROVEN', reason, 'ulp-pack --inspect BUNDLE shows why each range is not covered; pass --allow-aliasing to apply anyway with plain aliasing for those ranges.', { soname, uncovered });
}

function decideAndSwitch(pid: number, patchId: string, step: PatchStep, request: Omit<SwitchRequest, 'prepared'>, opts: RunOptions, refs: { present: boolean; map: DataRefs | undefined }): RunResult {
  const { soname } = request;
  opts.progress?.(`reading process ${pid}`);
  const prepared = prepare(request);
  const { state } = prepared;
  const referenced = [...state.counts.entries()].filter(([, n]) => n > 0).map(([b]) => b.buildId ?? '');
  const decision: Decision = decide(opts.which, step.from.entry.buildId, step.to.entry.buildId, {
    pid,
    soname,
    liveBuildId: state.live.buildId,
    referenced,
    present: state.family.builds.map((b) => b.buildId ?? ''),
    liveIsLoaderBuild: state.live === state.family.canonical,
    lineage: state.lineage,
  });
  const base = { pid, soname, patchId, which: opts.which, fromBuildId: step.from.entry.buildId, toBuildId: step.to.entry.buildId, liveBefore: state.live.buildId };
  if (decision.action === 'noop') return { ...base, outcome: decision.reason };
  // Only a build that is staged now has its code rewritten; one already mapped was rewritten (or accepted) when staged.
  const aliasing = !prepared.mapped && state.region ? dataRefsPolicy(soname, opts.which, refs, !!opts.allowAliasing) : undefined;
  const report = switchLibrary({ ...request, prepared, dryRun: !!opts.dryRun });
  const all = report.pauses.filter((p) => p.kind === 'all').map((p) => p.ms);
  return {
    ...base,
    outcome: opts.dryRun ? 'dry-run' : opts.which === 'forward' ? 'applied' : 'reverted',
    ...(decision.note ? { note: decision.note } : {}),
    switch: report,
    ...(all.length ? { pauseMs: Math.max(...all) } : {}),
    ...(aliasing ? { aliasing } : report.dataRefs?.mode === 'aliasing' ? { aliasing: { reason: `no address within reach of ${soname}'s data was free: the build's code reaches the data through a second address`, uncovered: [] } } : {}),
  };
}
