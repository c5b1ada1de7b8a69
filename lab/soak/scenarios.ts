/**
 * Reliability scenarios (see lib.ts): the soak, the trigger interrupted or
 * killed (points.ts says where), and an interrupted switch made on purpose.
 * Each returns what it observed and `problems`: every check that failed, in
 * words; an empty list is a pass. The hostile environments are in
 * environments.ts, the bad-input corpus in corpus.ts.
 */
import { RemoteMemory, Session } from '../../runtime/index.js';
import { readLibraryState } from '../../runtime/loader/library.js';
import { classifySlot, slotBuild } from '../../runtime/loader/relink.js';
import { globalScope } from '../../runtime/loader/scope.js';
import { takeSnapshot } from '../../runtime/loader/snapshot.js';
import {
  health,
  leftovers,
  libState,
  memoryOf,
  parseRounds,
  type Health,
  type LibState,
  type Live,
  type Reliable,
  type Run,
  type Runner,
} from './lib.js';
import { describePoint, interruptAt, type Phase, type Point } from './points.js';
import { memfdDescriptors, tracedThreads } from '../process-state.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function describeEnd(r: Run): string {
  return r.signal
    ? `killed by ${r.signal}`
    : `exit ${r.code}${r.json?.error ? ` ${r.json.error.code}` : r.json?.outcome ? ` ${r.json.outcome}` : ''}`;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[s.length >> 1]! : NaN;
};

// ---------------------------------------------------------------- soak

/** `pair`: apply and revert v1 -> v2. `stack`: v1 -> v2 -> v3 and back down, v3 bringing a new import (labs). */
export type SoakPattern = 'pair' | 'stack';

interface Step {
  bundle: 'fix12' | 'fix23';
  revert: boolean;
  outcome: 'applied' | 'reverted';
  version: number;
}

const PATTERNS: Record<SoakPattern, Step[]> = {
  pair: [
    { bundle: 'fix12', revert: false, outcome: 'applied', version: 2 },
    { bundle: 'fix12', revert: true, outcome: 'reverted', version: 1 },
  ],
  stack: [
    { bundle: 'fix12', revert: false, outcome: 'applied', version: 2 },
    { bundle: 'fix23', revert: false, outcome: 'applied', version: 3 },
    { bundle: 'fix23', revert: true, outcome: 'reverted', version: 2 },
    { bundle: 'fix12', revert: true, outcome: 'reverted', version: 1 },
  ],
};

type Memory = ReturnType<typeof memoryOf>;

export interface SoakResult {
  relro: string;
  pattern: SoakPattern;
  cycles: number;
  switches: number;
  seconds: number;
  commandFailures: string[];
  /** All threads stopped, per switch (ms, from --json pauseMs). */
  pauses: { median: number; worst: number };
  /** Wall time of one ulp-trigger run (ms). */
  commandMs: { median: number; worst: number };
  rounds: number;
  /** Results the worker threads checked, by the version that computed them. */
  calls: { k11: number; k12: number; k13: number };
  /** Before the first switch, after the first cycle (every build is mapped by then), at the end. */
  memory: { before: Memory; afterFirst: Memory; end: Memory };
  ulpMappedBytes: { before: number; afterFirst: number; end: number };
  leftovers: string[];
  health: Health;
  versionChecks: { done: number; wrong: string[] };
  problems: string[];
}

/**
 * Switches back and forth while eight threads call the library, for
 * `cycles` cycles or `seconds`, whichever comes first; checks the version
 * the program runs (and its health) after every switch of every
 * `checkEvery`-th cycle.
 */
export async function soak(
  runner: Runner,
  rel: Reliable,
  opts: {
    cycles?: number;
    seconds?: number;
    checkEvery?: number;
    pattern?: SoakPattern;
    log?: (s: string) => void;
  },
): Promise<SoakResult> {
  const pattern = opts.pattern ?? 'pair';
  const steps = PATTERNS[pattern];
  const t = rel.start(1, ['20']);
  const t0 = performance.now();
  try {
    await t.waitFor((o) => parseRounds(o).length >= 2);
    const before = memoryOf(t.pid);
    const stBefore = libState(runner, rel, t.pid);
    const failures: string[] = [];
    const pauses: number[] = [];
    const commandMs: number[] = [];
    const wrong: string[] = [];
    let checks = 0;
    let afterFirst = before;
    let stAfterFirst = stBefore;
    let cycles = 0;
    let switches = 0;
    const deadline = t0 + (opts.seconds ?? Infinity) * 1000;
    const maxCycles = opts.cycles ?? Infinity;
    while (cycles < maxCycles && performance.now() < deadline && t.alive()) {
      for (const step of steps) {
        const r = runner.run('ulp-trigger', [
          String(t.pid),
          rel[step.bundle],
          '--json',
          ...(step.revert ? ['--revert'] : []),
        ]);
        commandMs.push(r.ms);
        switches++;
        const label = `cycle ${cycles + 1} ${step.revert ? 'revert' : 'apply'} ${step.bundle}`;
        if (r.code !== 0 || r.json?.outcome !== step.outcome)
          failures.push(`${label}: ${describeEnd(r)} ${(r.json?.error?.message ?? r.stderr).slice(0, 300)}`);
        else pauses.push(r.json.pauseMs ?? 0);
        if (opts.checkEvery && cycles % opts.checkEvery === 0) {
          const h = await health(t, t.output().length, 2);
          checks++;
          const v = h.last?.version;
          if (!h.ok || v !== step.version)
            wrong.push(`${label}: runs version ${v}, expected ${step.version}; ${h.problems.join('; ')}`);
        }
      }
      cycles++;
      if (cycles === 1) {
        afterFirst = memoryOf(t.pid);
        stAfterFirst = libState(runner, rel, t.pid);
      }
      if (opts.log && cycles % 20 === 0)
        opts.log(
          `  soak ${rel.relro}/${pattern}: ${cycles} cycles, ${((performance.now() - t0) / 1000).toFixed(0)} s, ${failures.length} failures`,
        );
    }
    const h = await health(t, 0, parseRounds(t.output()).length + 2);
    const alive = t.alive();
    const end = alive ? memoryOf(t.pid) : afterFirst;
    const stEnd = libState(runner, rel, t.pid);
    const last = parseRounds(t.output()).at(-1);
    const left = alive ? leftovers(t.pid) : [];
    const result: Omit<SoakResult, 'problems'> = {
      relro: rel.relro,
      pattern,
      cycles,
      switches,
      seconds: (performance.now() - t0) / 1000,
      commandFailures: failures,
      pauses: { median: median(pauses), worst: pauses.length ? Math.max(...pauses) : NaN },
      commandMs: { median: median(commandMs), worst: commandMs.length ? Math.max(...commandMs) : NaN },
      rounds: last?.round ?? 0,
      calls: { k11: last?.k11 ?? 0, k12: last?.k12 ?? 0, k13: last?.k13 ?? 0 },
      memory: { before, afterFirst, end },
      ulpMappedBytes: {
        before: stBefore.ulpMappedBytes,
        afterFirst: stAfterFirst.ulpMappedBytes,
        end: stEnd.ulpMappedBytes,
      },
      leftovers: left,
      health: h,
      versionChecks: { done: checks, wrong },
    };
    return { ...result, problems: judgeSoak(result) };
  } finally {
    t.dispose();
  }
}

/** What makes a soak fail. Memory is judged on what the trigger maps; RSS growth is reported, not judged (the program's own stacks grow). */
export function judgeSoak(r: Omit<SoakResult, 'problems'>): string[] {
  const p: string[] = [];
  p.push(...r.commandFailures.slice(0, 10));
  if (r.commandFailures.length > 10) p.push(`... ${r.commandFailures.length - 10} more failed commands`);
  p.push(...r.health.problems, ...r.versionChecks.wrong.slice(0, 10), ...r.leftovers);
  if (r.cycles === 0) p.push('no cycle was run');
  if (r.calls.k11 === 0 || r.calls.k12 === 0)
    p.push(`the workers did not see both versions (k11=${r.calls.k11}, k12=${r.calls.k12})`);
  if (r.pattern === 'stack' && r.calls.k13 === 0) p.push('the workers never saw v3');
  if (r.cycles > 1) {
    if (r.ulpMappedBytes.end !== r.ulpMappedBytes.afterFirst)
      p.push(
        `ulp-trigger's mappings grew after the first cycle: ${r.ulpMappedBytes.afterFirst} -> ${r.ulpMappedBytes.end} bytes`,
      );
    if (r.memory.end.mappings !== r.memory.afterFirst.mappings)
      p.push(
        `the number of mappings changed after the first cycle: ${r.memory.afterFirst.mappings} -> ${r.memory.end.mappings}`,
      );
    if (r.memory.end.fds !== r.memory.before.fds)
      p.push(`open descriptors: ${r.memory.before.fds} before, ${r.memory.end.fds} at the end`);
  }
  return p;
}

// ---------------------------------------------------------------- the trigger interrupted or killed

/**
 * The state the command starts from, and what it is asked to do:
 *   apply-fresh   v1 as loaded, apply: stages v2 (the first switch of the process)
 *   revert        v1 loaded, v2 applied, revert: no staging, only the switch
 *   reapply       applied and reverted, apply again: v2 is still mapped, only the switch
 *   revert-fresh  the program started on v2, revert: stages v1 from the bundle
 */
export type AttemptKind = 'apply-fresh' | 'revert' | 'reapply' | 'revert-fresh';
export const ATTEMPT_KINDS: readonly AttemptKind[] = ['apply-fresh', 'revert', 'reapply', 'revert-fresh'];

/** Kinds that stage a build (the milestones of points.ts exist only for them). */
export const STAGING_KINDS: readonly AttemptKind[] = ['apply-fresh', 'revert-fresh'];

const KIND: Record<
  AttemptKind,
  { startOn: number; prep: string[][]; revert: boolean; from: Live; goal: Live; role: 'new' | 'old' }
> = {
  'apply-fresh': { startOn: 1, prep: [], revert: false, from: 'v1', goal: 'v2', role: 'new' },
  revert: { startOn: 1, prep: [[]], revert: true, from: 'v2', goal: 'v1', role: 'old' },
  reapply: { startOn: 1, prep: [[], ['--revert']], revert: false, from: 'v1', goal: 'v2', role: 'new' },
  'revert-fresh': { startOn: 2, prep: [], revert: true, from: 'v2', goal: 'v1', role: 'old' },
};

export interface FaultAttempt {
  relro: string;
  signal: NodeJS.Signals;
  kind: AttemptKind;
  /** Where the signal was meant to land (points.ts). */
  point: string;
  phase: Phase;
  /** How the interrupted command ended. */
  end: string;
  /** --status right after. */
  after: LibState;
  /** What the interrupted command left in the target (traced threads, open memfd descriptors). */
  residue: string[];
  /** The same command again. */
  rerun: string;
  /** Whether the re-run staged a build, and made the data shared (--json switch report). */
  rerunSwitch: { staged: boolean; aliasedNow: boolean } | undefined;
  final: LibState;
  /** The target lived through both and every check it makes of itself held. */
  survived: boolean;
  /**
   * SIGINT/SIGTERM that landed in-session: whether the command, once it let
   * go of the target, ended by that signal as docs/RUNTIME.md says (held,
   * then re-raised), or ran on as if none had come. Judged apart from
   * `problems`: it is about the command, not the target.
   */
  heldSignal?: 'acted' | 'lost';
  problems: string[];
}

/**
 * One attempt: a fresh target brought to the state `kind` needs, the
 * command started and sent `signal` at `point`, then --status, a health
 * check, the same command again, --status and a health check.
 */
export async function faultAttempt(
  runner: Runner,
  rel: Reliable,
  signal: NodeJS.Signals,
  kind: AttemptKind,
  point: Point,
): Promise<FaultAttempt> {
  const k = KIND[kind];
  const t = rel.start(k.startOn, ['20']);
  const problems: string[] = [];
  try {
    await t.waitFor((o) => parseRounds(o).length >= 2);
    for (const extra of k.prep) {
      const r = runner.run('ulp-trigger', [String(t.pid), rel.fix12, ...extra]);
      if (r.code !== 0) throw new Error(`preparing ${kind}: ${describeEnd(r)} ${r.stderr}`);
    }
    const args = [String(t.pid), rel.fix12, '--json', ...(k.revert ? ['--revert'] : [])];
    const { run, phase } = await interruptAt(runner, args, t.pid, signal, point, k.role);
    await sleep(20);
    const traced = tracedThreads(t.pid).map((x) => `thread ${x.tid} still traced by ${x.tracer}`);
    let fds: string[] = [];
    try {
      fds = memfdDescriptors(t.pid).map((d) => `open memfd descriptor ${d}`);
    } catch {
      /* the target is gone: the health check says so */
    }
    problems.push(...traced);
    // Held signals must leave nothing; a SIGKILL mid-staging may leave a descriptor the dead trigger had not closed yet.
    if (signal !== 'SIGKILL') problems.push(...fds);
    const after = libState(runner, rel, t.pid);
    if (after.error) problems.push(`after the ${signal}: --status failed: ${after.error}`);
    else if (after.live !== k.from && after.live !== k.goal)
      problems.push(`after the ${signal}: live build ${after.live}`);
    if (signal !== 'SIGKILL' && after.mixed)
      problems.push(`after the ${signal}: --status says mixed (a half-done switch)`);
    // A held signal lets the command finish what it started; only a SIGKILL may leave a staging unfinished.
    if (signal !== 'SIGKILL' && after.abandoned.length)
      problems.push(
        `after the ${signal}: --status reports an abandoned staging (${after.abandoned.join(', ')})`,
      );
    const h1 = await health(t, t.output().length);
    problems.push(...h1.problems.map((p) => `after the ${signal}: ${p}`));
    const rerun = runner.run('ulp-trigger', args);
    const wanted = k.revert ? ['reverted', 'not-applied'] : ['applied', 'already-applied'];
    if (rerun.code !== 0 || !wanted.includes(rerun.json?.outcome))
      problems.push(
        `re-run: ${describeEnd(rerun)} ${(rerun.json?.error?.message ?? rerun.stderr).slice(0, 300)}`,
      );
    const rs = rerun.json?.switch;
    // An abandoned staging is address space, never a build: the re-run must stage the build afresh.
    if (after.abandoned.length && rs && rs.staged !== true)
      problems.push(
        `re-run: took a build although the only staging of it was abandoned (${after.abandoned.join(', ')}): staged=${rs.staged}`,
      );
    const h2 = await health(t, t.output().length);
    problems.push(
      ...tracedThreads(t.pid).map((x) => `after the re-run: thread ${x.tid} still traced by ${x.tracer}`),
    );
    const final = libState(runner, rel, t.pid);
    if (final.error) problems.push(`after the re-run: --status failed: ${final.error}`);
    else {
      const lost = after.abandoned.filter((n) => !final.abandoned.includes(n));
      if (lost.length && rs?.staged !== true)
        problems.push(`after the re-run: the abandoned staging ${lost.join(', ')} became a build`);
      if (final.live !== k.goal || final.mixed)
        problems.push(`after the re-run: live ${final.live}, mixed ${final.mixed}`);
      // Every build of a switched library must share one set of globals; otherwise state is lost at the next call.
      if (!final.aliased)
        problems.push(
          `after the re-run: --status says the data is not shared (aliased=false; the re-run ${rs ? `staged=${rs.staged} aliasedNow=${rs.aliasedNow}` : 'switched nothing'})`,
        );
    }
    problems.push(...h2.problems.map((p) => `after the re-run: ${p}`));
    if (h2.alive && h2.last && h2.last.version !== Number(k.goal.slice(1)))
      problems.push(`after the re-run the program runs version ${h2.last.version}`);
    return {
      relro: rel.relro,
      signal,
      kind,
      point: describePoint(point),
      phase,
      end: describeEnd(run),
      after,
      residue: [...traced, ...fds],
      rerun: describeEnd(rerun),
      rerunSwitch: rs ? { staged: rs.staged, aliasedNow: rs.aliasedNow } : undefined,
      final,
      survived: h1.alive && h2.alive && h1.ok && h2.ok,
      ...(signal !== 'SIGKILL' && phase === 'in-session'
        ? { heldSignal: run.signal === signal ? ('acted' as const) : ('lost' as const) }
        : {}),
      problems,
    };
  } finally {
    t.dispose();
  }
}

export interface FaultSummary {
  signal: string;
  attempts: number;
  /** Signals that landed while the command held the target. */
  inSession: number;
  survivors: number;
  /** --status right after: the build the command started from, the goal, or a mix (an interrupted switch). */
  endedFrom: number;
  endedGoal: number;
  mixedSeen: number;
  /** --status right after reported an abandoned staging (a SIGKILL while staging). */
  abandonedSeen: number;
  rerunCompleted: number;
  /** Held signals (in-session SIGINT/SIGTERM) the command acted on once it let go, of those held. */
  heldActed: number;
  held: number;
  /** Attempts whose checks all held. */
  clean: number;
}

export function summariseFaults(attempts: readonly FaultAttempt[]): FaultSummary[] {
  const by = new Map<string, FaultAttempt[]>();
  for (const a of attempts) by.set(a.signal, [...(by.get(a.signal) ?? []), a]);
  return [...by].map(([signal, xs]) => ({
    signal,
    attempts: xs.length,
    inSession: xs.filter((a) => a.phase === 'in-session').length,
    survivors: xs.filter((a) => a.survived).length,
    endedFrom: xs.filter((a) => !a.after.mixed && a.after.live === KIND[a.kind].from).length,
    endedGoal: xs.filter((a) => !a.after.mixed && a.after.live === KIND[a.kind].goal).length,
    mixedSeen: xs.filter((a) => a.after.mixed).length,
    abandonedSeen: xs.filter((a) => a.after.abandoned.length > 0).length,
    heldActed: xs.filter((a) => a.heldSignal === 'acted').length,
    held: xs.filter((a) => a.heldSignal !== undefined).length,
    rerunCompleted: xs.filter(
      (a) => !a.problems.some((p) => p.startsWith('re-run') || p.startsWith('after the re-run')),
    ).length,
    clean: xs.filter((a) => a.problems.length === 0).length,
  }));
}

// ---------------------------------------------------------------- an interrupted switch, made on purpose

export interface MixedCheck {
  relro: string;
  direction: 'apply' | 'revert';
  rewound: number;
  statusMixed: LibState;
  rerun: string;
  final: LibState;
  health: Health;
  problems: string[];
}

/**
 * What a SIGKILL between two slot writes leaves, made deterministic: the
 * process runs v2 (after an apply), then half of the slots that point at v2
 * are written back to v1's symbols with every thread stopped, as an
 * interrupted switch would leave them. `--status` must say mixed, and
 * re-running the apply (or the revert) must complete it.
 */
export async function interruptedSwitch(
  runner: Runner,
  rel: Reliable,
  direction: 'apply' | 'revert',
): Promise<MixedCheck> {
  const t = rel.start(1, ['20']);
  try {
    await t.waitFor((o) => parseRounds(o).length >= 2);
    const r = runner.run('ulp-trigger', [String(t.pid), rel.fix12]);
    if (r.code !== 0) throw new Error(`apply: ${r.stderr}`);
    const mem = new RemoteMemory(t.pid);
    const snap = takeSnapshot(t.pid, mem);
    const state = readLibraryState(snap, 'libdemo.so.1', mem)!;
    const region = state.region ?? { start: 0n, end: 0n };
    const v1 = state.family.canonical;
    const ctx = { family: state.family, target: v1, region, scope: globalScope(snap.objects) };
    const live = state.slots
      .map((s, i) => ({ s, v: state.values[i]! }))
      .filter(({ s, v }) => slotBuild(s, v, state.family) === state.live);
    const rewind = live.filter((_, i) => i % 2 === 0);
    let rewound = 0;
    const s = Session.open(t.pid);
    try {
      s.stopAll();
      for (const { s: slot, v } of rewind) {
        const c = classifySlot(slot, v, ctx);
        if (c.kind !== 'stale') continue;
        const b = Buffer.alloc(8);
        b.writeBigUInt64LE(c.value);
        s.poke(slot.addr, b);
        rewound++;
      }
      s.resume();
    } finally {
      s.detach();
    }
    const statusMixed = libState(runner, rel, t.pid);
    const rerun = runner.run('ulp-trigger', [
      String(t.pid),
      rel.fix12,
      '--json',
      ...(direction === 'revert' ? ['--revert'] : []),
    ]);
    const final = libState(runner, rel, t.pid);
    const h = await health(t, t.output().length);
    const goal = direction === 'apply' ? 'v2' : 'v1';
    const problems: string[] = [];
    if (rewound === 0) problems.push('no slot could be written back: nothing was mixed');
    if (!statusMixed.mixed)
      problems.push(`--status does not say mixed after ${rewound} of ${live.length} slots were rewound`);
    if (rerun.json?.outcome !== (direction === 'apply' ? 'applied' : 'reverted'))
      problems.push(`re-run: ${describeEnd(rerun)}`);
    else if (!rerun.json.note?.includes('interrupted'))
      problems.push(`the re-run does not say it completed an interrupted switch (note: ${rerun.json.note})`);
    if (final.live !== goal || final.mixed)
      problems.push(`after the re-run: live ${final.live}, mixed ${final.mixed}`);
    problems.push(...h.problems);
    if (h.last && h.last.version !== Number(goal.slice(1)))
      problems.push(`the program runs version ${h.last.version}`);
    return {
      relro: rel.relro,
      direction,
      rewound,
      statusMixed,
      rerun: describeEnd(rerun),
      final,
      health: h,
      problems,
    };
  } finally {
    t.dispose();
  }
}
