/**
 * "Make build T of library L live in process P": the one operation behind
 * apply, revert, stacking and completing an interrupted switch. Plans while
 * the process runs, stages T on one borrowed thread if it is not mapped yet,
 * then stops every thread only for the alias and the relink.
 */
import { UlpError } from '../../common/errors.js';
import { imageSpan, type ElfObject } from '../../elf/index.js';
import { readMaps, type Mapping } from '../maps.js';
import { RemoteMemory } from '../memory.js';
import type { PauseRecord } from '../pause.js';
import { Session, type SessionOptions } from '../session.js';
import { ElfCache } from './elf-cache.js';
import { readLibraryState, type LibraryState } from './library.js';
import { aliasable, ownRegion, refuseWritableDynamic, regionOf } from './region.js';
import { parseMemfdPath } from '../memfd-names.js';
import type { Family, ProcessObject, Region } from './model.js';
import { planStage, shiftPlan, type StagePlan } from './relocate.js';
import { collectCodePointerSites } from './code-pointers.js';
import { collectSlots, ifuncResolvers } from './relink.js';
import { globalScope } from './scope.js';
import { biasWindow, baseNear, outOfReach, rewriteCode, type StagedDataRefs } from './datarefs.js';
import {
  aliasCanonical,
  applyWrites,
  finishStaging,
  mapBuild,
  unmapImage,
  mapMetadata,
  tryUnmap,
  type StagedImage,
} from './stage.js';
import { onSafeThread, runtimeCall } from './safe-thread.js';
import { takeSnapshot, type Snapshot } from './snapshot.js';
import { codeOf } from './code-ranges.js';
import {
  deregisterUnwindTables,
  registerUnwindTables,
  unwindDryRun,
  type Registration,
  type UnwindReport,
} from './unwind.js';
import { ensureForkProtection, publishForkAlias } from './fork/index.js';
import {
  pausePlan,
  readForPlan,
  readSlots,
  switchInPause,
  warmUp,
  watchedRanges,
  type PauseOutcome,
  type PausePlan,
} from './switch.js';
import {
  codeRanges,
  emptyCounts,
  planWords,
  quietRanges,
  settleRedirects,
  switchCounts,
  type PointerCounts,
  type SlotCounts,
} from './switch-plan.js';
import { PauseIO } from './pause-io.js';
import {
  mapJournal,
  planSwitchRedirects,
  readRedirectState,
  threadsInside,
  entrySites,
  type EntrySites,
  type RedirectState,
} from './redirect-switch.js';
import { encodeJournal, journalPlacement, type Journal } from './redirect-journal.js';
import { buildKey, type RedirectPlan, type StepFunctions } from './redirects.js';
import { functionActive, threadsInsideFunctions, type WatchedFunction } from './active-functions.js';
import { u64Bytes } from '../../common/u64.js';
import { raiseToRealtime, restoreSched } from '../sys/sched.js';
import { makeRoomForPause } from '../young-gc.js';
import { prepareStopPath, warmStopPath } from '../warm-stop.js';

export interface SwitchRequest {
  pid: number;
  soname: string;
  /**
   * The build to make live: its bytes (staged only if the process does not have it mapped yet),
   * where the bundle's report says it keeps its writable region (null: none; absent: not known), and,
   * for staging, its data-reference map (datarefs.ts). Without a map the staged code reaches the
   * library's data through the alias only: the caller decides whether that is acceptable.
   */
  target: {
    buildId: string;
    bytes: Buffer;
    memfdName: string;
    region?: Region | null;
    dataRefs?: StagedDataRefs | undefined;
  };
  /** Stage even when the build cannot be placed within reach of the data (its code then uses the alias). */
  allowAliasing?: boolean;
  /** Plan everything, change nothing. */
  dryRun?: boolean;
  session?: SessionOptions;
  progress?: (message: string) => void;
  /** The result of prepare(), when the caller already read the process to decide. */
  prepared?: Prepared;
  /** Parsed objects shared across processes (--all). */
  elfCache?: ElfCache;
  /** The bundle's metadata for --status, mapped with the build it stages when the process has none for this patch yet. */
  metadata?: { name: string; bytes: Buffer };
  /** The bundle step's changed functions (report.functions), for the entry redirects. */
  functions?: StepFunctions;
  /**
   * The step's condition (report.conditions, kind "inactive"): no thread may be inside these
   * functions of the build switched from (link-time hex ranges) when the switch is made, and each
   * must get its entry redirect. Checked in the pause; LOADER_FUNCTION_ACTIVE otherwise.
   */
  inactive?: {
    buildId: string;
    functions: ReadonlyArray<{ name?: string | undefined; start: string; end: string }>;
    reason: string;
  };
  /** The step's other build (the one switched from), when the caller has its file: its .symtab names static functions. */
  otherBuild?: { buildId: string; bytes: Buffer };
}

/** What the entry redirects of a switch did (redirects.ts). */
export interface RedirectReport {
  /** Jumps active once the switch is done, over every build that is not live. */
  active: number;
  /** Jumps written (new or retargeted) and taken back by this switch. */
  written: number;
  restored: number;
  /** Changed functions of builds that are not live that no jump covers: still reachable through old pointers. */
  uncovered: Journal['uncovered'];
}

export interface Prepared {
  snap: Snapshot;
  state: LibraryState;
  elf: ElfObject;
  /** The target build, when the process has it mapped already. */
  mapped: ProcessObject | undefined;
}

export interface SwitchReport {
  soname: string;
  fromBuildId: string | undefined;
  toBuildId: string;
  /** The target had to be mapped (false: it was already in the process). */
  staged: boolean;
  targetBase: bigint | undefined;
  /** This switch turned the library's writable data into the shared mapping. */
  aliasedNow: boolean;
  /** Slots rewritten from another build, and lazy slots bound to the target. */
  rewritten: number;
  lazyBound: number;
  counts: SlotCounts;
  /** Function pointers in the shared writable data (code-pointers.ts). */
  pointers: PointerCounts;
  newImports: StagePlan['newImports'];
  ifuncs: number;
  relocations: number;
  /**
   * How the staged build's code reaches the library's data: `code` displacements rewritten to the
   * canonical copy, `words` relocated words holding canonical data addresses; `aliasing` when the code
   * was left addressing its own alias of the data (no map, or no base within reach and aliasing allowed).
   * Absent when nothing was staged.
   */
  dataRefs?: { mode: 'one-address' | 'aliasing'; code: number; words: number };
  /** The staged build's unwind tables (unwind.ts); absent when the build was mapped already. */
  unwind?: UnwindReport;
  redirects: RedirectReport;
  /**
   * What the switch's pause did besides stopping: pages read back (one process_vm_readv), write system calls,
   * and where its time went (ms): stopping every thread, the first switch's alias, reading back and comparing,
   * writing, resuming (or detaching, when nothing follows the switch). Absent in a dry run.
   */
  pauseIo?: {
    pages: number;
    writes: number;
    stopMs: number;
    aliasMs: number;
    checkMs: number;
    writeMs: number;
    resumeMs: number;
  };
  pauses: PauseRecord[];
  timings: { planMs: number; stageMs: number; switchMs: number };
  /**
   * The bundle's condition, when it has one (request.inactive): the functions no thread was inside at the
   * switch (every thread's call chain walked in the pause), and the pauses it took to find them so.
   */
  condition?: { inactive: string[]; attempts: number };
}

/** An IFUNC resolver only reads CPU features: a second is far more than it takes. */
const IFUNC_TIMEOUT_MS = 1000;

const ms = (t0: number) => Math.round((performance.now() - t0) * 1000) / 1000;

/** Where the staging is planned before the build is mapped (and where a dry run pretends to map it): any canonical user-space address works, the plan is shifted to the real one. */
const DRY_RUN_BIAS = 0x7e0000000000n;

function sameRegion(a: Region | undefined, b: Region | undefined): boolean {
  return a === b || (a !== undefined && b !== undefined && a.start === b.start && a.end === b.end);
}

export function targetObject(elf: ElfObject, bias: bigint, memfdName: string): ProcessObject {
  const span = imageSpan(elf);
  const name = parseMemfdPath(`/memfd:${memfdName}`);
  return {
    name: memfdName,
    bias,
    elf,
    buildId: elf.buildId,
    soname: elf.soname,
    source: 'ulp',
    ...(name?.kind === 'build' ? { ulp: name.name } : {}),
    span: { start: bias + span.start, end: bias + span.end },
    code: codeOf(elf).map((r) => ({ start: bias + r.start, end: bias + r.end })),
  };
}

/** The mappings ulp made in a process (builds, shared data, stub and fork pages), as one comparable text. */
function ulpMappings(maps: readonly Mapping[]): string {
  return maps
    .filter((m) => m.path.startsWith('/memfd:ulp:'))
    .map(
      (m) =>
        `${m.start.toString(16)}-${m.end.toString(16)} ${m.read ? 'r' : '-'}${m.shared ? 's' : 'p'} ${m.path}`,
    )
    .join('\n');
}

/** Reads the process and checks that `target` can replace the live build here. */
export function prepare(
  req: Omit<SwitchRequest, 'prepared'>,
  mem: RemoteMemory = new RemoteMemory(req.pid),
): Prepared {
  const snap = takeSnapshot(req.pid, mem, req.elfCache);
  const state = readLibraryState(snap, req.soname, mem);
  if (!state) {
    throw new UlpError(
      'TRIGGER_NOT_LOADED',
      `process ${req.pid} has not loaded ${req.soname}`,
      'Check the pid; `ulp-trigger --status PID` lists what it has loaded.',
      { pid: req.pid, soname: req.soname },
    );
  }
  const elf = (req.elfCache ?? new ElfCache()).file(req.target.bytes);
  if (elf.buildId !== req.target.buildId) {
    throw new UlpError(
      'TRIGGER_BUILD_MISMATCH',
      `the build in the bundle has build-id ${elf.buildId ?? 'none'}, the manifest says ${req.target.buildId}`,
      'The bundle is inconsistent; rebuild it with ulp-pack.',
    );
  }
  // Where the region lies is each build's own business (it may have moved by whole pages); its size must match the shared pages'.
  // That the layout inside it matches is the packer's verdict, made for the region the report records: the build must have it there.
  const region = regionOf(elf, `the build ${req.target.buildId}`);
  refuseWritableDynamic(elf, `the build ${req.target.buildId}`);
  refuseWritableDynamic(
    state.family.canonical.elf,
    `the build of ${req.soname} that process ${req.pid} loaded`,
  );
  const recorded = req.target.region;
  if (recorded !== undefined && !sameRegion(region, recorded ?? undefined)) {
    const text = (r: Region | undefined) =>
      r ? `[0x${r.start.toString(16)}, 0x${r.end.toString(16)})` : 'none';
    throw new UlpError(
      'TRIGGER_LAYOUT_MISMATCH',
      `the build ${req.target.buildId} keeps its writable region at ${text(region)}, but the bundle's report was made for ${text(recorded ?? undefined)}`,
      'The bundle is inconsistent: it was edited or not made by ulp-pack; rebuild it.',
    );
  }
  if (!aliasable(region, state.region)) {
    throw new UlpError(
      'TRIGGER_LAYOUT_MISMATCH',
      `the writable data of ${req.soname} in process ${req.pid} is laid out differently from the build ${req.target.buildId}`,
      'The process runs a build this bundle was not made for; check its build-id with --status.',
    );
  }
  return { snap, state, elf, mapped: state.family.builds.find((b) => b.buildId === req.target.buildId) };
}

/**
 * Unmaps a staged build nothing points at. A build whose unwind tables
 * cannot be taken back stays mapped: the unwinder would read unmapped
 * memory on the next exception. Unfinished, it is never taken for a build.
 */
function discardStaged(
  s: Session,
  objects: readonly ProcessObject[],
  image: StagedImage,
  unwind: Registration | undefined,
): void {
  if (unwind) {
    try {
      deregisterUnwindTables(s, objects, unwind);
    } catch {
      return;
    }
  }
  if (s.borrowed === undefined) s.borrow();
  unmapImage(s, image);
}

/** A build mapped, relocated and registered with the unwinder, that nothing points at yet. */
interface StagedBuild {
  target: ProcessObject;
  image: StagedImage;
  unwind: Registration;
  /** The bundle's metadata, when this staging mapped it (the process had none for this patch). */
  meta: { addr: bigint; len: bigint } | undefined;
  /** The staging's figures of the report. */
  fields: Pick<SwitchReport, 'newImports' | 'ifuncs' | 'relocations' | 'dataRefs' | 'targetBase' | 'unwind'>;
}

/**
 * Stages the target on one borrowed thread while the others run: invisible until the switch
 * writes a pointer to it. `stagePlan` was made at DRY_RUN_BIAS before the process was touched,
 * so everything that can refuse the build has refused already; here it is only shifted.
 * Returns with every thread running; on a failure whatever it mapped is taken back first.
 */
function stageBuild(
  session: Session,
  req: SwitchRequest,
  { snap, state, elf }: Prepared,
  stagePlan: StagePlan,
  dataRefs: StagedDataRefs | undefined,
): StagedBuild {
  const family = state.family;
  session.borrow();
  session.stub();
  // Before the data is shared: children must get private copies (fork/, docs/FORK.md).
  const fork = state.region
    ? ensureForkProtection(session, snap.objects, family.canonical, state.region)
    : undefined;
  const placed = placement(req, elf, dataRefs, family.canonical, state.region);
  const image = mapBuild(session, {
    bytes: req.target.bytes,
    elf,
    memfdName: req.target.memfdName,
    soname: req.soname,
    // The target's own region: the same size as the canonical one (prepare), possibly at another vaddr.
    region: state.region ? regionOf(elf, `the build ${req.target.buildId}`) : undefined,
    aliasedCanonicalRegion:
      state.aliased && state.region ? family.canonical.bias + state.region.start : undefined,
    ...placed,
  });
  let unwind: Registration | undefined;
  let meta: { addr: bigint; len: bigint } | undefined;
  let fields: StagedBuild['fields'];
  try {
    if (fork && image.regionAddr !== undefined) publishForkAlias(session, fork, image.regionAddr);
    const plan = shiftPlan(stagePlan, image.bias - DRY_RUN_BIAS);
    applyWrites(session, elf, image, plan.writes);
    // IFUNC resolvers run now, with the other threads running (docs/ARCHITECTURE.md: never call into the process during the pause),
    // and after the other relocations: a resolver reads the build's GOT like any of its code (a global, a libc call).
    for (const f of plan.ifuncs) {
      const result = onSafeThread(session, snap.objects, 'run an IFUNC resolver', (tid) =>
        session.call(f.resolver, [], runtimeCall(tid, IFUNC_TIMEOUT_MS)),
      );
      session.poke(f.addr, u64Bytes(result + f.addend));
    }
    if (req.metadata && !snap.maps.some((m) => m.path.startsWith(`/memfd:${req.metadata!.name}`)))
      meta = mapMetadata(session, req.metadata.name, req.metadata.bytes);
    unwind = registerUnwindTables(session, snap.objects, elf, image.bias, req.elfCache);
    finishStaging(session, image);
    fields = {
      ...stageFields(plan, placed.rewrite ? dataRefs : undefined, family.canonical, state.region),
      targetBase: image.bias,
      unwind: unwind.report,
    };
  } catch (e) {
    discardStaged(session, snap.objects, image, unwind);
    if (meta) tryUnmap(session, meta.addr, meta.len);
    throw e;
  }
  session.resume();
  return { target: targetObject(elf, image.bias, req.target.memfdName), image, unwind, meta, fields };
}

/** Takes a staged build back after a failed switch, with the metadata its staging mapped. */
function undoStaging(session: Session, objects: readonly ProcessObject[], staged: StagedBuild): void {
  discardStaged(session, objects, staged.image, staged.unwind);
  if (staged.meta) tryUnmap(session, staged.meta.addr, staged.meta.len);
}

export function switchLibrary(request: SwitchRequest): SwitchReport {
  // One cache for every ELF file the switch parses (the snapshot's objects, both builds, the unwind
  // tables), also when the caller gives none.
  const req = { ...request, elfCache: request.elfCache ?? new ElfCache() };
  const progress = req.progress ?? (() => {});
  const mem = new RemoteMemory(req.pid);
  const t0 = performance.now();
  // Started now so that it has exec'd by the pause (warm-stop.ts).
  if (!req.dryRun) prepareStopPath();
  progress(`reading process ${req.pid}`);
  const prepared = req.prepared ?? prepare(req, mem);
  const { snap, state, elf, mapped } = prepared;
  const region = state.region ?? { start: 0n, end: 0n };
  const family = state.family;
  const scope = globalScope(snap.objects);
  const read = (a: bigint, n: number) => mem.read(a, n);
  const report: SwitchReport = {
    soname: req.soname,
    fromBuildId: state.live.buildId,
    toBuildId: req.target.buildId,
    staged: !mapped,
    targetBase: mapped?.bias,
    aliasedNow: false,
    rewritten: 0,
    lazyBound: 0,
    counts: emptyCounts(),
    pointers: { retargeted: 0, overwritten: 0, current: 0 },
    newImports: [],
    ifuncs: 0,
    relocations: 0,
    pauses: [],
    timings: { planMs: 0, stageMs: 0, switchMs: 0 },
    redirects: { active: 0, written: 0, restored: 0, uncovered: [] },
  };
  const redirectState = readRedirectState(mem, snap.maps, req.soname);
  const files = new Map<string, ElfObject>([[req.target.buildId, elf]]);
  if (req.otherBuild) files.set(req.otherBuild.buildId, req.elfCache.file(req.otherBuild.bytes));
  const planRedirectsFor = (fam: Family, target: ProcessObject): RedirectPlan =>
    planSwitchRedirects({
      mem,
      builds: fam.builds,
      target,
      state: redirectState,
      step: req.functions,
      files,
    });

  if (req.dryRun) {
    Object.assign(report, dryRunFields(req, prepared, mem, scope, planRedirectsFor, redirectState));
    report.timings.planMs = ms(t0);
    return report;
  }

  // Everything that can refuse the build (a symbol no object defines, a relocation the loader cannot
  // apply) is found before the process is touched: the plan at a provisional base is the real one, shifted (shiftPlan).
  const stagePlan = mapped
    ? undefined
    : planStage({ target: elf, targetBias: DRY_RUN_BIAS, family, from: state.live, scope, region, read });
  const dataRefs = mapped ? undefined : checkDataRefs(req, elf, state.region, family.canonical);
  // No room within reach of the data is found now too, before the process is touched (placed again once attached).
  if (!mapped) placement(req, elf, dataRefs, family.canonical, state.region);
  const unsharedTarget = unsharedTargetOf(req, prepared);
  report.timings.planMs = ms(t0);
  const session = Session.open(req.pid, req.session);
  try {
    // Another trigger may have staged or shared something between the plan and the attach; none can while
    // this session holds the process. A plan made on what is gone would stage a second copy of the data.
    if (ulpMappings(readMaps(req.pid)) !== ulpMappings(snap.maps)) {
      throw new UlpError(
        'TRIGGER_RACE',
        `another ulp-trigger changed process ${req.pid} while this one was planning`,
        'Run the command again: it plans anew on what the process has now.',
        { pid: req.pid },
      );
    }
    let target = mapped;
    let staged: StagedBuild | undefined;
    if (!target) {
      const t1 = performance.now();
      progress(`staging ${req.soname} ${req.target.buildId.slice(0, 12)}`);
      staged = session.syscalls(() => stageBuild(session, req, prepared, stagePlan!, dataRefs));
      Object.assign(report, staged.fields);
      target = staged.target;
      report.timings.stageMs = ms(t1);
    }

    const t2 = performance.now();
    progress('switching');
    const fam: Family = family.builds.includes(target)
      ? family
      : { ...family, builds: [...family.builds, target] };
    const objects = family.builds.includes(target) ? snap.objects : [...snap.objects, target];
    const slots = collectSlots(objects, fam, region);
    const sites = collectCodePointerSites(fam, target, region);
    const ifuncs = resolveIfuncs(session, snap.objects, slots, target);
    // Entry redirects: planned now, their journal's mapping found or made now (remote mmaps), only written in the pause.
    const plan = planRedirectsFor(fam, target);
    const budget = journalBudget(plan, req.soname);
    const journals = journalPlacement(redirectState, budget);
    let guard: InactiveGuard | undefined;
    // Always, even with nothing to redirect: --status says "applied" only for a live build a journal vouches for.
    let journalAt: { addr: bigint; size: number; spare?: bigint };
    try {
      guard = req.inactive ? inactiveGuard(req.pid, req.inactive, fam, target, plan) : undefined;
      journalAt = journals.reuse
        ? { addr: journals.reuse.start, size: Number(journals.reuse.end - journals.reuse.start) }
        : withBorrowed(session, () => mapJournal(session, req.soname, budget, journals.spare));
    } catch (e) {
      // Everything staging mapped is taken back, as after a failed pause: nothing of this apply stays.
      if (staged) undoStaging(session, snap.objects, staged);
      throw e;
    }
    let failure: { error: unknown } | undefined;
    let detachFailure: { error: unknown } | undefined;
    let io: PauseIO | undefined;
    // With no earlier journal to drop, nothing but the detach follows a switch: the pause ends in it, every
    // thread let go from the stop the switch made instead of resumed and stopped again to be detached.
    const last = journals.drop.length === 0;
    try {
      // Every write decided now, on what the process holds while it runs: the pause only checks and writes.
      const ctx = { family: fam, target, region, scope, ...(ifuncs ? { ifuncs } : {}) };
      io = new PauseIO(session, watchedRanges(slots, sites, plan));
      const { slotValues, siteValues } = readForPlan(io, slots.length, sites.length);
      const words = planWords(slots, slotValues, sites, siteValues, ctx, quietRanges(objects));
      const pp = pausePlan(words, ctx, plan, redirectHead(req.soname, redirectState, target), journalAt);
      warmUp(io, pp);
      const jumpSites = entrySites(plan.writes);
      const aliasFrom = staged?.image.freshData ? staged.image.regionAddr : unsharedTarget;
      const alias =
        state.region && aliasFrom !== undefined
          ? () => aliasCanonical(session, family.canonical, state.region!, aliasFrom)
          : undefined;
      // The stop and resume compiled, and the plan's garbage collected, before the pause.
      warmStopPath();
      makeRoomForPause();
      const { done, pauseIo, attempts, detachError } = pause(
        session,
        io,
        pp,
        jumpSites,
        alias,
        guard && { ...guard, objects },
        last,
      );
      detachFailure = detachError;
      if (guard) report.condition = { inactive: guard.watched.map((w) => w.label), attempts };
      report.aliasedNow = alias !== undefined;
      Object.assign(report, switchCounts(done.words, done.redirects), { pauseIo });
    } catch (e) {
      failure = { error: e };
    } finally {
      if (!session.isClosed) session.resume();
      io?.close();
    }
    if (failure) {
      // The writes were undone; a staged build nothing points at can go, once the threads run again
      // (taking its unwind tables back is a call into the process). The alias, if made, stays: it is invisible.
      // A spare mapped with it goes too: nothing of a failed first apply stays.
      tryDropJournals(session, [
        journalAt,
        ...(journalAt.spare !== undefined ? [{ addr: journalAt.spare, size: journalAt.size }] : []),
      ]);
      if (staged) undoStaging(session, snap.objects, staged);
      throw failure.error;
    }
    // Journals of earlier switches beyond the one kept as the spare are superseded (a reader takes the newest anyway).
    if (journals.drop.length)
      tryDropJournals(
        session,
        journals.drop.map((m) => ({ addr: m.start, size: Number(m.end - m.start) })),
        true,
      );
    report.timings.switchMs = ms(t2);
    // The switch is made: a failure to let the threads go is reported as the final detach's would be.
    if (detachFailure) throw detachFailure.error;
  } finally {
    session.detach();
    report.pauses = [...session.pauses];
  }
  return report;
}

/**
 * The report's figures of a dry run: the staging planned at DRY_RUN_BIAS (when the build is not mapped
 * yet) and the switch planned on what the process holds now. Reads the process, changes nothing.
 */
function dryRunFields(
  req: SwitchRequest,
  prepared: Prepared,
  mem: RemoteMemory,
  scope: ReturnType<typeof globalScope>,
  planRedirectsFor: (fam: Family, target: ProcessObject) => RedirectPlan,
  redirectState: RedirectState,
): Partial<SwitchReport> {
  const { snap, state, elf, mapped } = prepared;
  const family = state.family;
  const region = state.region ?? { start: 0n, end: 0n };
  const fields: Partial<SwitchReport> = {};
  const target = mapped ?? targetObject(elf, DRY_RUN_BIAS, req.target.memfdName);
  if (!mapped) {
    const plan = planStage({
      target: elf,
      targetBias: DRY_RUN_BIAS,
      family,
      from: state.live,
      scope,
      region,
      read: (a: bigint, n: number) => mem.read(a, n),
    });
    const dataRefs = checkDataRefs(req, elf, state.region, family.canonical);
    Object.assign(fields, stageFields(plan, dataRefs, family.canonical, state.region), {
      unwind: unwindDryRun(snap.objects, elf, DRY_RUN_BIAS),
    });
  }
  const fam: Family = mapped ? family : { ...family, builds: [...family.builds, target] };
  // The hypothetical target has no slots in memory yet: only the process's own objects are read.
  const slots = collectSlots(snap.objects, fam, region);
  const sites = collectCodePointerSites(fam, target, region);
  const words = planWords(slots, readSlots(mem, slots), sites, readSlots(mem, sites), {
    family: fam,
    target,
    region,
    scope,
  });
  const outcome = settleRedirects(
    planRedirectsFor(fam, target),
    redirectHead(req.soname, redirectState, target),
    codeRanges(fam.builds),
  ).outcome;
  return Object.assign(fields, switchCounts(words, outcome));
}

/**
 * The target's writable region, when the library's data is not shared yet and the target build exists
 * already: staged by an earlier run that was stopped before its switch. This switch shares the data.
 * Found while planning, before the process is attached: a refusal here changed nothing.
 */
function unsharedTargetOf(req: SwitchRequest, prepared: Prepared): bigint | undefined {
  const { mapped, snap, state } = prepared;
  const mappedRegion = mapped ? ownRegion(mapped.elf) : undefined;
  const unsharedTarget =
    mappedRegion && state.region && !state.aliased ? mapped!.bias + mappedRegion.start : undefined;
  if (
    unsharedTarget !== undefined &&
    !snap.dataMappings.get(req.soname)?.some((m) => m.start === unsharedTarget)
  ) {
    throw new UlpError(
      'LOADER_ALIAS_UNAVAILABLE',
      `the build ${req.target.buildId.slice(0, 12)} mapped in process ${req.pid} has no shared data mapping to alias`,
      'The process was left unchanged; report this with `ulp-trigger --status PID --json`.',
    );
  }
  return unsharedTarget;
}

/** Slots bound to an IFUNC of the library hold its resolver's choice: the target's resolvers are asked now, never in the pause. */
function resolveIfuncs(
  session: Session,
  objects: readonly ProcessObject[],
  slots: Parameters<typeof ifuncResolvers>[0],
  target: ProcessObject,
): Map<string, bigint> | undefined {
  const resolvers = ifuncResolvers(slots, target);
  if (resolvers.length === 0) return undefined;
  const ifuncs = new Map(
    resolvers.map((f) => [
      f.key,
      BigInt.asUintN(
        64,
        onSafeThread(session, objects, 'run an IFUNC resolver', (tid) =>
          session.call(f.resolver, [], runtimeCall(tid, IFUNC_TIMEOUT_MS)),
        ),
      ),
    ]),
  );
  session.resume();
  return ifuncs;
}

/**
 * The pause: every thread stopped outside the bytes a jump replaces, the data
 * aliased the first time, the watched words checked and everything written,
 * every thread resumed, or, when `last` (nothing but the detach follows),
 * detached: PTRACE_DETACH lets a stopped thread run as PTRACE_CONT would,
 * and the session's detach would otherwise stop every thread again first.
 * A failure to detach comes back as `detachError`: the switch is made by
 * then. Nothing is planned here (switch.ts); on an error before the switch
 * the caller resumes the threads. The tracer runs it as a real-time task
 * where it may (sys/sched.ts), so that the threads it wakes do not take
 * its CPU in the middle of it.
 */
function pause(
  session: Session,
  io: PauseIO,
  pp: PausePlan,
  sites: EntrySites,
  alias: (() => void) | undefined,
  guard: (InactiveGuard & { objects: readonly ProcessObject[] }) | undefined,
  last: boolean,
): ReturnType<typeof pauseAtPriority> {
  const before = raiseToRealtime();
  try {
    return pauseAtPriority(session, io, pp, sites, alias, guard, last);
  } finally {
    restoreSched(before);
  }
}

function pauseAtPriority(
  session: Session,
  io: PauseIO,
  pp: PausePlan,
  sites: EntrySites,
  alias: (() => void) | undefined,
  guard: (InactiveGuard & { objects: readonly ProcessObject[] }) | undefined,
  last: boolean,
): {
  done: PauseOutcome;
  pauseIo: NonNullable<SwitchReport['pauseIo']>;
  attempts: number;
  detachError?: { error: unknown };
} {
  const tStop = performance.now();
  const stopped = guard ? stopOutsideFunctions(session, pp.redirects, sites, guard) : undefined;
  const blocked = stopped?.blocked ?? stopOutsideEntries(session, pp.redirects, sites);
  const tAlias = performance.now();
  alias?.();
  const writesBefore = io.writes;
  const tCheck = performance.now();
  const done = switchInPause(io, pp, blocked);
  const tResume = performance.now();
  let detachError: { error: unknown } | undefined;
  if (last) {
    try {
      session.detach();
    } catch (e) {
      detachError = { error: e };
    }
  } else session.resume();
  const phases = {
    stopMs: tAlias - tStop,
    aliasMs: tCheck - tAlias,
    checkMs: done.checkMs,
    writeMs: done.writeMs,
    resumeMs: performance.now() - tResume,
  };
  return {
    done,
    pauseIo: { pages: io.pages, writes: io.writes - writesBefore, ...phases },
    attempts: stopped?.attempts ?? 1,
    ...(detachError ? { detachError } : {}),
  };
}

/** The staging's figures of the report, from its plan: the same for the dry run and the real run. */
function stageFields(
  plan: StagePlan,
  dataRefs: StagedDataRefs | undefined,
  canonical: ProcessObject,
  region: Region | undefined,
): Pick<SwitchReport, 'newImports' | 'ifuncs' | 'relocations' | 'dataRefs'> {
  return {
    newImports: plan.newImports,
    ifuncs: plan.ifuncs.length,
    relocations: plan.writes.length + plan.ifuncs.length,
    dataRefs: {
      mode: dataRefs ? 'one-address' : 'aliasing',
      code: dataRefs?.code.length ?? 0,
      words: canonicalWords(plan, canonical, region),
    },
  };
}

/**
 * The target's map, checked against the build before the process is touched: every site must hold
 * the reference the map records (rewriting at the canonical base, which any map reaches, proves it).
 */
function checkDataRefs(
  req: SwitchRequest,
  elf: ElfObject,
  region: Region | undefined,
  canonical: ProcessObject,
): StagedDataRefs | undefined {
  const refs = req.target.dataRefs;
  if (!refs || !region) return undefined;
  if (BigInt(refs.region.end - refs.region.start) !== region.end - region.start) {
    throw new UlpError(
      'LOADER_DATAREFS_MISMATCH',
      `the bundle's data-reference map describes a writable region of ${refs.region.end - refs.region.start} bytes, the library has ${region.end - region.start}`,
      'The bundle is inconsistent; rebuild it with ulp-pack.',
    );
  }
  const canonicalRegion = canonical.bias + region.start;
  rewriteCode(req.target.bytes, elf, refs, canonicalRegion - BigInt(refs.region.start), canonicalRegion);
  return refs;
}

/** Where to map the target so that its rewritten displacements reach the canonical data, and the rewrite. */
function placement(
  req: SwitchRequest,
  elf: ElfObject,
  refs: StagedDataRefs | undefined,
  canonical: ProcessObject,
  region: Region | undefined,
): { hint?: bigint; rewrite?: (bias: bigint) => Buffer } {
  if (!refs || !region) return {};
  const canonicalRegion = canonical.bias + region.start;
  const window = biasWindow(refs, canonicalRegion);
  if (!window) return {};
  const span = imageSpan(elf);
  const hint = baseNear(readMaps(req.pid), span.end - span.start, span.start, window, canonicalRegion);
  if (hint === undefined) {
    if (req.allowAliasing) return {};
    throw outOfReach(undefined, canonicalRegion);
  }
  return { hint, rewrite: (bias) => rewriteCode(req.target.bytes, elf, refs, bias, canonicalRegion) };
}

/** Relocated words of the plan that hold an address in the canonical data (relocate.ts keeps them canonical). */
function canonicalWords(plan: StagePlan, canonical: ProcessObject, region: Region | undefined): number {
  if (!region) return 0;
  const lo = canonical.bias + region.start;
  const hi = canonical.bias + region.end;
  return plan.writes.filter((w) => w.value >= lo && w.value < hi).length;
}

/** The head of the journal this switch writes: the next generation, naming the build it makes live. */
function redirectHead(
  soname: string,
  state: RedirectState,
  target: ProcessObject,
): Pick<Journal, 'soname' | 'generation' | 'live'> {
  return { soname, generation: (state.journal?.generation ?? 0) + 1, live: buildKey(target) };
}

/** Bytes the journal may need: the plan's, plus room for every write turning into a reported skip. */
function journalBudget(plan: RedirectPlan, soname: string): number {
  const redirects = plan.redirects.map((r) => ({
    at: '0x' + r.at.toString(16),
    original: r.original.toString('hex'),
    written: r.written.toString('hex'),
    from: r.from,
    to: r.to,
  }));
  const base = encodeJournal({
    format: 1,
    soname,
    generation: 0x7fffffff,
    live: 'f'.repeat(40),
    pairs: plan.pairs,
    unpaired: plan.unpaired,
    redirects,
    uncovered: plan.uncovered,
  }).length;
  return base + 512 * plan.writes.length + 1024;
}

/** `resume` false: the detach that follows frees the thread itself, without a resume and a stop again. */
function withBorrowed<T>(s: Session, fn: () => T, resume = true): T {
  s.borrow();
  try {
    s.stub();
    return s.syscalls(fn);
  } finally {
    if (resume) s.resume();
  }
}

/** Attempts to find every thread outside the bytes the jumps replace before giving up on those entries. */
const ENTRY_ATTEMPTS = 4;

/**
 * Stops every thread for the switch. A thread stopped inside the bytes a jump
 * would replace is let run and the process stopped again (it leaves them
 * within a few instructions); sites still occupied after the last attempt are
 * returned, to be left alone and reported.
 */
function stopOutsideEntries(s: Session, plan: RedirectPlan, sites: EntrySites): Set<bigint> {
  for (let attempt = 1; ; attempt++) {
    s.stopAll();
    if (plan.writes.length === 0) return new Set();
    const threads = s.tids().map((t) => {
      const r = s.regs(t);
      return { rip: r.rip, inSyscall: BigInt.asIntN(64, r.orig_rax) >= 0n };
    });
    const blocked = threadsInside(threads, sites);
    if (blocked.size === 0 || attempt >= ENTRY_ATTEMPTS) return blocked;
    s.resume();
  }
}

/** What the pause checks for a step with a condition: the functions, and the sites of their entry redirects. */
interface InactiveGuard {
  pid: number;
  watched: WatchedFunction[];
  /** Runtime addresses of the jumps that keep the watched functions from starting afresh. */
  entries: bigint[];
  reason: string;
}

/**
 * The condition in runtime addresses: the named functions of the build switched from, and, in a
 * process that ran other builds of the library before (a stack of patches), the whole code of those,
 * whose own frames the bundle's condition does not describe. Refuses when a named function gets no
 * entry redirect: it could start afresh in the old code after the switch.
 */
function inactiveGuard(
  pid: number,
  inactive: NonNullable<SwitchRequest['inactive']>,
  fam: Family,
  target: ProcessObject,
  plan: RedirectPlan,
): InactiveGuard {
  const outgoing = fam.builds.find((b) => b.buildId === inactive.buildId);
  if (!outgoing) {
    throw new UlpError(
      'LOADER_FUNCTION_ACTIVE',
      `the build ${inactive.buildId.slice(0, 12)} whose functions the bundle's condition names is not mapped in process ${pid}`,
      'The process was left unchanged; report this with `ulp-trigger --status PID --json`.',
      { pid },
    );
  }
  const watched: WatchedFunction[] = inactive.functions.map((f) => ({
    start: outgoing.bias + BigInt(f.start),
    end: outgoing.bias + BigInt(f.end),
    label: f.name ?? `${f.start} of build ${inactive.buildId.slice(0, 12)}`,
  }));
  for (const b of fam.builds) {
    if (b === outgoing || b === target) continue;
    for (const c of b.code)
      watched.push({ ...c, label: `the code of the earlier build ${(b.buildId ?? '?').slice(0, 12)}` });
  }
  const entries: bigint[] = [];
  for (const f of inactive.functions) {
    const r = plan.redirects.find(
      (x) => x.from.build === buildKey(outgoing) && BigInt(x.from.start) === BigInt(f.start),
    );
    if (!r) {
      throw new UlpError(
        'LOADER_FUNCTION_ACTIVE',
        `${f.name ?? f.start} of build ${inactive.buildId.slice(0, 12)} gets no entry redirect in process ${pid}, so it could start afresh in the old code after the switch (${inactive.reason})`,
        'The process was left unchanged. `ulp-trigger --dry-run PID` names the functions left reachable and why.',
        { pid, function: f.name ?? f.start },
      );
    }
    entries.push(r.at);
  }
  return { pid, watched, entries, reason: inactive.reason };
}

/** Attempts to find no thread inside a watched function before refusing. */
const ACTIVE_ATTEMPTS = 5;
const sleep = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

/**
 * stopOutsideEntries, and then no thread inside a watched function and none executing the entry
 * bytes of one: otherwise the threads run on a moment and the process is stopped again, a few
 * times, before the switch is refused with every thread resumed by the caller.
 */
function stopOutsideFunctions(
  s: Session,
  plan: RedirectPlan,
  sites: EntrySites,
  guard: InactiveGuard & { objects: readonly ProcessObject[] },
): { blocked: Set<bigint>; attempts: number } {
  for (let attempt = 1; ; attempt++) {
    const blocked = stopOutsideEntries(s, plan, sites);
    const busy = threadsInsideFunctions(s, guard.objects, guard.watched);
    const entry = guard.entries.find((a) => blocked.has(a));
    if (busy.length === 0 && entry === undefined) return { blocked, attempts: attempt };
    if (attempt >= ACTIVE_ATTEMPTS) {
      if (busy.length) throw functionActive(guard.pid, busy, attempt, guard.reason);
      throw new UlpError(
        'LOADER_FUNCTION_ACTIVE',
        `a thread of process ${guard.pid} was executing the entry bytes of a function the bundle's condition names at each of ${attempt} attempts`,
        'The process was left unchanged; retry in a moment.',
        { pid: guard.pid },
      );
    }
    s.resume();
    sleep(10 * attempt);
  }
}

/** `last`: only the detach follows (see withBorrowed). */
function tryDropJournals(
  s: Session,
  maps: ReadonlyArray<{ addr: bigint; size: number }>,
  last = false,
): void {
  try {
    withBorrowed(
      s,
      () => {
        for (const m of maps) tryUnmap(s, m.addr, BigInt(m.size));
      },
      !last,
    );
  } catch {
    // An older journal left mapped costs a page; readers take the newest.
  }
}
