/**
 * Applies or reverts one bundle in one process: refuse what must not be
 * touched, read the library's state, decide (decide.ts), then let the
 * loader runtime switch. Returns a result for the report; throws UlpError.
 */
import { UlpError } from '../common/errors.js';
import { patchStep, type Bundle, type PatchStep } from '../patches/index.js';
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
}

/**
 * `applied`/`reverted`: the build is live and no changed function of another
 * build is reachable (every one has a jump to its counterpart).
 * `applied-partly`/`reverted-partly`: the build is live, but some changed
 * functions of old builds are still reachable through pointers taken before
 * the switch; `switch.redirects.uncovered` names them and why.
 */
export type Outcome = 'applied' | 'applied-partly' | 'reverted' | 'reverted-partly' | 'already-applied' | 'not-applied' | 'dry-run';

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
    otherBuild: { buildId: step.from.entry.buildId, bytes: step.from.bytes },
    target: { buildId: step.to.entry.buildId, bytes: step.to.bytes, memfdName: buildMemfdName(patchId, opts.which === 'forward' ? 'new' : 'old', soname, step.from.entry.buildId) },
    ...(opts.progress ? { progress: opts.progress } : {}),
    ...(opts.session ? { session: opts.session } : {}),
    ...(opts.elfCache ? { elfCache: opts.elfCache } : {}),
  };
  // A plan another trigger overtook (TRIGGER_RACE) is made again on what the process has now.
  for (let attempt = 1; ; attempt++) {
    try {
      return decideAndSwitch(pid, patchId, step, request, opts);
    } catch (e) {
      if (!(e instanceof UlpError) || e.code !== 'TRIGGER_RACE' || attempt >= RACE_RETRIES) throw e;
    }
  }
}

const RACE_RETRIES = 3;

function decideAndSwitch(pid: number, patchId: string, step: PatchStep, request: Omit<SwitchRequest, 'prepared'>, opts: RunOptions): RunResult {
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
  const report = switchLibrary({ ...request, prepared, dryRun: !!opts.dryRun });
  const all = report.pauses.filter((p) => p.kind === 'all').map((p) => p.ms);
  return {
    ...base,
    outcome: opts.dryRun ? 'dry-run' : outcomeOf(opts.which, report.redirects.uncovered.length === 0),
    ...(decision.note ? { note: decision.note } : {}),
    switch: report,
    ...(all.length ? { pauseMs: Math.max(...all) } : {}),
  };
}

function outcomeOf(which: 'forward' | 'reverse', complete: boolean): Outcome {
  if (which === 'forward') return complete ? 'applied' : 'applied-partly';
  return complete ? 'reverted' : 'reverted-partly';
}
