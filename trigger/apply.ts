/**
 * Applies or reverts one bundle in one process: refuse what must not be
 * touched, read the library's state, decide (decide.ts), then let the
 * loader runtime switch. Returns a result for the report; throws UlpError.
 */
import { hasCode, UlpError } from '../common/errors.js';
import {
  blockingFindings,
  decodeDataRefs,
  patchStep,
  recordedToRegion,
  removedExports,
  type Bundle,
  type DataRefs,
  type PackageInfo,
  type PatchStep,
} from '../patches/index.js';
import { checkTarget, processExited } from '../runtime/index.js';
import {
  buildMemfdName,
  globalScope,
  lostBindings,
  metaMemfdName,
  prepare,
  switchLibrary,
  type ElfCache,
  type Prepared,
  type SwitchReport,
  type SwitchRequest,
} from '../runtime/loader/index.js';
import { encodeBundleMeta, hasBundleMeta } from './bundle-meta.js';
import type { SessionOptions } from '../runtime/index.js';
import { decide, type Decision } from './decide.js';

/**
 * libc and the dynamic loader share private structures (and the thread
 * library shims are parts of libc since glibc 2.34); swapping one of them
 * under the others is not designed yet. libm and libresolv are ordinary.
 */
const GLIBC_SONAMES = new Set([
  'libc.so.6',
  'ld-linux-x86-64.so.2',
  'libpthread.so.0',
  'libdl.so.2',
  'librt.so.1',
  'libutil.so.1',
  'libanl.so.1',
]);

export interface RunOptions {
  which: 'forward' | 'reverse';
  dryRun?: boolean;
  progress?: (message: string) => void;
  session?: SessionOptions;
  /** Parsed objects shared across processes (--all). */
  elfCache?: ElfCache;
  /** Set by runOne from the bundle. */
  packageInfo?: PackageInfo;
  downgrade?: boolean;
  /** Stage a build whose data-reference map is missing or incomplete (--allow-aliasing). */
  allowAliasing?: boolean;
}

/**
 * `applied`/`reverted`: the build is live and no changed function of another
 * build is reachable (every one has a jump to its counterpart).
 * `applied-partly`/`reverted-partly`: the build is live, but some changed
 * functions of old builds are still reachable through pointers taken before
 * the switch; `switch.redirects.uncovered` names them and why.
 * `runs-new-build`: the process loaded the bundle's new build at start; ulp did not patch it.
 */
export type Outcome =
  | 'applied'
  | 'applied-partly'
  | 'reverted'
  | 'reverted-partly'
  | 'already-applied'
  | 'runs-new-build'
  | 'not-applied'
  | 'dry-run';

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
  /** The bundle's package facts (format 1.1), when it has them. */
  package?: PackageInfo;
  /** The bundle was packed with --allow-downgrade (format 1.1). */
  downgrade?: true;
  /**
   * Set when --allow-aliasing let a build be staged whose code may reach some of the library's data
   * through a second address: why, and the code ranges the bundle's map does not cover.
   */
  aliasing?: { reason: string; uncovered: Array<{ start: string; end: string; reason: string }> };
}

export function refuseGlibc(soname: string): void {
  if (GLIBC_SONAMES.has(soname)) {
    throw new UlpError(
      'TRIGGER_GLIBC',
      `${soname} is part of glibc, which cannot be patched live yet`,
      'glibc shares private structures between libc and its loader; restart the processes to update it (docs/LIMITATIONS.md).',
      { soname },
    );
  }
}

/** The step's conditions (format 2) as the loader checks them in the pause: one list of functions of the `from` build. */
function inactiveCondition(
  conditions:
    | ReadonlyArray<{
        kind: 'inactive';
        functions: Array<{ name?: string; start: string; end: string }>;
        reason: string;
      }>
    | undefined,
  buildId: string,
): {
  inactive?: {
    buildId: string;
    functions: Array<{ name?: string; start: string; end: string }>;
    reason: string;
  };
} {
  if (!conditions?.length) return {};
  return {
    inactive: {
      buildId,
      functions: conditions.flatMap((c) => c.functions),
      reason: conditions.map((c) => c.reason).join('; '),
    },
  };
}

/**
 * What runOne derives from the bundle alone, made once per bundle: `--all` runs it for every process,
 * and the bundle read from its file does not change.
 */
const decodedMaps = new WeakMap<object, DataRefs>();
const metaBytes = new WeakMap<Bundle, Buffer>();

function decodedDataRefs(stored: Parameters<typeof decodeDataRefs>[0]): DataRefs {
  let refs = decodedMaps.get(stored);
  if (!refs) decodedMaps.set(stored, (refs = decodeDataRefs(stored)));
  return refs;
}

function bundleMetaBytes(bundle: Bundle): Buffer {
  let bytes = metaBytes.get(bundle);
  if (!bytes) metaBytes.set(bundle, (bytes = encodeBundleMeta(bundle)));
  return bytes;
}

export function runOne(pid: number, bundle: Bundle, opts: RunOptions): RunResult {
  const step = patchStep(bundle, opts.which);
  const { soname, patchId } = bundle.manifest;
  refuseGlibc(soname);
  // A direction whose only errors are exports that disappear is decided per process (refuseLostBindings).
  const blocking = step.direction.verdict === 'incompatible' ? blockingFindings(step.direction.report) : [];
  if (blocking.length > 0) {
    throw new UlpError(
      'TRIGGER_INCOMPATIBLE',
      `the bundle's ${opts.which === 'forward' ? 'patch' : 'reverse patch'} is marked incompatible (${[...new Set(blocking.map((b) => b.finding.code))].join(', ')})`,
      opts.which === 'forward'
        ? 'ulp-pack never writes such a bundle; it was edited or made by another tool.'
        : 'The new build cannot be swapped back for the old one (ulp-pack --inspect shows why); restart the processes to go back.',
      { codes: [...new Set(blocking.map((b) => b.finding.code))] },
    );
  }
  checkTarget(pid);
  const stored = bundle.manifest.datarefs?.[opts.which === 'forward' ? 'new' : 'old'];
  const dataRefs = stored ? decodedDataRefs(stored) : undefined;
  const fns = step.direction.report.functions;
  const request = {
    pid,
    soname,
    functions: {
      fromBuildId: step.from.entry.buildId,
      toBuildId: step.to.entry.buildId,
      pairs: fns.pairs ?? [],
      unpaired: fns.unpaired ?? [],
      // A bundle from before function pairs: its changed functions are named as reachable.
      ...(fns.pairs === undefined ? { changed: fns.changed } : {}),
    },
    ...inactiveCondition(step.direction.report.conditions, step.from.entry.buildId),
    otherBuild: { buildId: step.from.entry.buildId, bytes: step.from.bytes },
    target: {
      buildId: step.to.entry.buildId,
      bytes: step.to.bytes,
      memfdName: buildMemfdName(
        patchId,
        opts.which === 'forward' ? 'new' : 'old',
        soname,
        step.from.entry.buildId,
      ),
      region: recordedToRegion(step),
      dataRefs: dataRefs ? { region: dataRefs.region, code: dataRefs.code } : undefined,
    },
    ...(opts.allowAliasing ? { allowAliasing: true } : {}),
    ...(opts.progress ? { progress: opts.progress } : {}),
    ...(opts.session ? { session: opts.session } : {}),
    ...(opts.elfCache ? { elfCache: opts.elfCache } : {}),
    ...(hasBundleMeta(bundle)
      ? { metadata: { name: metaMemfdName(patchId), bytes: bundleMetaBytes(bundle) } }
      : {}),
  };
  // A plan another trigger overtook (TRIGGER_RACE) is made again on what the process has now.
  for (let attempt = 1; ; attempt++) {
    try {
      return decideAndSwitch(
        pid,
        patchId,
        step,
        request,
        {
          ...opts,
          ...(bundle.manifest.package ? { packageInfo: bundle.manifest.package } : {}),
          ...(bundle.manifest.downgrade ? { downgrade: true } : {}),
        },
        { present: !!bundle.manifest.datarefs, map: dataRefs },
      );
    } catch (e) {
      // The process was there a moment ago (checkTarget): gone or a zombie now, it exited while we worked; "check the pid" would mislead.
      if (hasCode(e, 'PROC_NOT_FOUND', 'PROC_ZOMBIE'))
        throw processExited(pid, opts.which === 'forward' ? 'the apply' : 'the revert');
      if (!hasCode(e, 'TRIGGER_RACE') || attempt >= RACE_RETRIES) throw e;
    }
  }
}

const RACE_RETRIES = 3;

/**
 * Staging a build is allowed only when its code's references to the library's data are all known
 * (the bundle's map, with coverage proven), unless the operator accepts plain aliasing for the rest.
 * Returns what was accepted, for the report; throws before the process is touched otherwise.
 */
export function dataRefsPolicy(
  soname: string,
  which: 'forward' | 'reverse',
  refs: { present: boolean; map: DataRefs | undefined },
  allow: boolean,
): RunResult['aliasing'] {
  const build = which === 'forward' ? 'new' : 'old';
  if (!refs.map) {
    // Only called for a library with writable data: its builds have a map in any bundle of format 1.1.
    const why = refs.present
      ? `the bundle has no data-reference map for its ${build} build`
      : 'the bundle carries no data-reference map (format 1.0, written before ulp-pack recorded one)';
    const reason = `${why}: the ${build} build's code would reach ${soname}'s data through a second address`;
    if (allow) return { reason, uncovered: [] };
    throw new UlpError(
      'TRIGGER_DATAREFS_MISSING',
      reason,
      "Repack the bundle with this ulp-pack, or pass --allow-aliasing to accept plain aliasing (pointer comparisons and futex wake-ups on the library's globals may then fail).",
      { soname },
    );
  }
  const uncovered = refs.map.coverage.uncovered.map((r) => ({
    start: `0x${r.start.toString(16)}`,
    end: `0x${r.end.toString(16)}`,
    reason: r.reason,
  }));
  if (uncovered.length === 0) return undefined;
  const list =
    uncovered
      .slice(0, 8)
      .map((r) => `[${r.start}, ${r.end})`)
      .join(', ') + (uncovered.length > 8 ? ` and ${uncovered.length - 8} more` : '');
  const reason = `the ${build} build's data-reference map does not cover all of its code: ${list}; references from there would reach ${soname}'s data through a second address`;
  if (allow) return { reason, uncovered };
  throw new UlpError(
    'TRIGGER_DATAREFS_UNPROVEN',
    reason,
    'ulp-pack --inspect BUNDLE shows why each range is not covered; pass --allow-aliasing to apply anyway with plain aliasing for those ranges.',
    { soname, uncovered },
  );
}

function decideAndSwitch(
  pid: number,
  patchId: string,
  step: PatchStep,
  request: Omit<SwitchRequest, 'prepared'>,
  opts: RunOptions,
  refs: { present: boolean; map: DataRefs | undefined },
): RunResult {
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
    patchedByUlp: state.family.builds.some((b) => b.source === 'ulp'),
  });
  const base = {
    pid,
    soname,
    patchId,
    which: opts.which,
    fromBuildId: step.from.entry.buildId,
    toBuildId: step.to.entry.buildId,
    liveBefore: state.live.buildId,
    ...(opts.packageInfo ? { package: opts.packageInfo } : {}),
    ...(opts.downgrade ? { downgrade: true as const } : {}),
  };
  if (decision.action === 'noop') return { ...base, outcome: decision.reason };
  refuseLostBindings(pid, soname, step, prepared);
  // Only a build that is staged now has its code rewritten; one already mapped was rewritten (or accepted) when staged.
  const aliasing =
    !prepared.mapped && state.region
      ? dataRefsPolicy(soname, opts.which, refs, !!opts.allowAliasing)
      : undefined;
  const report = switchLibrary({ ...request, prepared, dryRun: !!opts.dryRun });
  const all = report.pauses.filter((p) => p.kind === 'all').map((p) => p.ms);
  return {
    ...base,
    outcome: opts.dryRun ? 'dry-run' : outcomeOf(opts.which, report.redirects.uncovered.length === 0),
    ...(decision.note ? { note: decision.note } : {}),
    switch: report,
    ...(all.length ? { pauseMs: Math.max(...all) } : {}),
    ...(aliasing
      ? { aliasing }
      : report.dataRefs?.mode === 'aliasing'
        ? {
            aliasing: {
              reason: `no address within reach of ${soname}'s data was free: the build's code reaches the data through a second address`,
              uncovered: [],
            },
          }
        : {}),
  };
}

/**
 * A switch to a build that lacks an export some loaded object is bound to
 * (a revert of an update that added exports, directly or through a stack)
 * would leave that object calling a build that no longer runs over the
 * library's data: refused, naming what is bound, before the process is
 * touched. Read while the process runs; an object dlopen'ed between this
 * check and the pause is counted by the switch as a slot it could not move.
 */
function refuseLostBindings(pid: number, soname: string, step: PatchStep, prepared: Prepared): void {
  const { state, snap, elf } = prepared;
  const lost = lostBindings(state.slots, state.values, state.family, elf, globalScope(snap.objects));
  if (lost.length === 0) return;
  const shown = lost
    .slice(0, 5)
    .map((l) => `${l.object} -> ${l.symbol}${l.lazy ? ' (lazy, bound at its first call)' : ''}`);
  const removed = step.which === 'reverse' ? removedExports(step.direction.report) : [];
  throw new UlpError(
    'TRIGGER_EXPORT_BOUND',
    `${soname} in process ${pid}: ${lost.length === 1 ? 'a loaded object is' : `${lost.length} bindings are`} bound to ${lost.length === 1 ? 'an export' : 'exports'} that build ${step.to.entry.buildId.slice(0, 12)} does not define: ${shown.join(', ')}${lost.length > 5 ? `, and ${lost.length - 5} more` : ''}`,
    "Switching would leave those calls in a build that no longer runs over the library's data; the process was not touched. Restart it to go back, or leave the patch applied.",
    { pid, soname, bindings: lost, ...(removed.length ? { removedByBundle: removed } : {}) },
  );
}

function outcomeOf(which: 'forward' | 'reverse', complete: boolean): Outcome {
  if (which === 'forward') return complete ? 'applied' : 'applied-partly';
  return complete ? 'reverted' : 'reverted-partly';
}
