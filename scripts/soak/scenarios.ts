/**
 * Reliability scenarios (see lib.ts): the soak, the trigger interrupted or
 * killed at random points, an interrupted switch made on purpose, and the
 * hostile environments (the target dies, is already traced, belongs to
 * another user). Each returns what it observed; tests and the soak report
 * judge it.
 */
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RemoteMemory, Session } from '../../runtime/index.js';
import { readLibraryState } from '../../runtime/loader/library.js';
import { classifySlot, slotBuild } from '../../runtime/loader/relink.js';
import { globalScope } from '../../runtime/loader/scope.js';
import { takeSnapshot } from '../../runtime/loader/snapshot.js';
import { processState } from '../../test/helpers/process-state.js';
import { startTarget, type Target } from '../../test/helpers/target.js';
import { finished, health, leftovers, libState, memoryOf, parseRounds, signalAt, tracerOf, type Health, type LibState, type Reliable, type Run, type Runner } from './lib.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function describeEnd(r: Run): string {
  return r.signal ? `killed by ${r.signal}` : `exit ${r.code}${r.json?.error ? ` ${r.json.error.code}` : r.json?.outcome ? ` ${r.json.outcome}` : ''}`;
}

// ---------------------------------------------------------------- soak

export interface SoakResult {
  relro: string;
  cycles: number;
  seconds: number;
  commandFailures: string[];
  pauses: { median: number; worst: number };
  rounds: number;
  calls: { k11: number; k12: number };
  /** Before the first apply, after the first cycle (the builds are mapped then), at the end. */
  memory: { before: ReturnType<typeof memoryOf>; afterFirst: ReturnType<typeof memoryOf>; end: ReturnType<typeof memoryOf> };
  ulpMappedBytes: { before: number; afterFirst: number; end: number };
  leftovers: string[];
  health: Health;
  versionChecks: { done: number; wrong: string[] };
}

/**
 * Applies and reverts back to back while eight threads call the library,
 * for `cycles` cycles or `seconds`, whichever comes first; checks the
 * printed version every `checkEvery` cycles.
 */
export async function soak(runner: Runner, rel: Reliable, opts: { cycles?: number; seconds?: number; checkEvery?: number; log?: (s: string) => void }): Promise<SoakResult> {
  const t = rel.start(1, ['20']);
  const t0 = performance.now();
  try {
    await t.waitFor((o) => parseRounds(o).length >= 2);
    const before = memoryOf(t.pid);
    const stBefore = libState(runner, rel, t.pid);
    const failures: string[] = [];
    const pauses: number[] = [];
    const wrong: string[] = [];
    let checks = 0;
    let afterFirst = before;
    let stAfterFirst = stBefore;
    let cycles = 0;
    const deadline = t0 + (opts.seconds ?? Infinity) * 1000;
    const maxCycles = opts.cycles ?? Infinity;
    while (cycles < maxCycles && performance.now() < deadline) {
      for (const revert of [false, true]) {
        const r = runner.run('ulp-trigger', [String(t.pid), rel.fix12, '--json', ...(revert ? ['--revert'] : [])]);
        const want = revert ? 'reverted' : 'applied';
        if (r.code !== 0 || r.json?.outcome !== want) failures.push(`cycle ${cycles + 1} ${revert ? 'revert' : 'apply'}: ${describeEnd(r)} ${r.stderr.slice(0, 300)}`);
        else pauses.push(r.json.pauseMs ?? 0);
        if (opts.checkEvery && cycles % opts.checkEvery === 0) {
          const mark = t.output().length;
          const h = await health(t, mark, 2);
          checks++;
          const v = h.last?.version;
          if (!h.ok || v !== (revert ? 1 : 2)) wrong.push(`cycle ${cycles + 1} after ${revert ? 'revert' : 'apply'}: version ${v}; ${h.problems.join('; ')}`);
        }
      }
      cycles++;
      if (cycles === 1) {
        afterFirst = memoryOf(t.pid);
        stAfterFirst = libState(runner, rel, t.pid);
      }
      if (opts.log && cycles % 20 === 0) opts.log(`  soak: ${cycles} cycles, ${((performance.now() - t0) / 1000).toFixed(0)} s, ${failures.length} failures`);
    }
    const h = await health(t, 0, parseRounds(t.output()).length + 2);
    const end = memoryOf(t.pid);
    const stEnd = libState(runner, rel, t.pid);
    const last = parseRounds(t.output()).at(-1);
    const sorted = [...pauses].sort((a, b) => a - b);
    return {
      relro: rel.relro,
      cycles,
      seconds: (performance.now() - t0) / 1000,
      commandFailures: failures,
      pauses: { median: sorted[sorted.length >> 1] ?? NaN, worst: sorted.at(-1) ?? NaN },
      rounds: last?.round ?? 0,
      calls: { k11: last?.k11 ?? 0, k12: last?.k12 ?? 0 },
      memory: { before, afterFirst, end },
      ulpMappedBytes: { before: stBefore.ulpMappedBytes, afterFirst: stAfterFirst.ulpMappedBytes, end: stEnd.ulpMappedBytes },
      leftovers: leftovers(t.pid),
      health: h,
      versionChecks: { done: checks, wrong },
    };
  } finally {
    t.dispose();
  }
}

// ---------------------------------------------------------------- the trigger interrupted or killed

export type AttemptKind = 'apply-fresh' | 'revert' | 'reapply';

export interface FaultAttempt {
  signal: NodeJS.Signals;
  kind: AttemptKind;
  /** When the signal was sent: ms after the command attached to the target, or after it started. */
  when: string;
  phase: string;
  /** How the interrupted command ended. */
  end: string;
  /** --status right after. */
  after: LibState;
  leftovers: string[];
  /** The same command again. */
  rerun: string;
  final: LibState;
  survived: boolean;
  problems: string[];
}

/**
 * One attempt: a fresh target (v1), brought to the state `kind` needs, the
 * command started and sent `signal` at `when`, then --status, a health
 * check, the same command again, --status and a health check.
 */
export async function faultAttempt(runner: Runner, rel: Reliable, signal: NodeJS.Signals, kind: AttemptKind, when: { afterAttach: number } | { afterSpawn: number }): Promise<FaultAttempt> {
  const t = rel.start(1, ['20']);
  const problems: string[] = [];
  try {
    await t.waitFor((o) => parseRounds(o).length >= 2);
    const prep = (args: string[]) => {
      const r = runner.run('ulp-trigger', [String(t.pid), rel.fix12, ...args]);
      if (r.code !== 0) throw new Error(`preparing ${kind}: ${describeEnd(r)} ${r.stderr}`);
    };
    if (kind === 'revert' || kind === 'reapply') prep([]);
    if (kind === 'reapply') prep(['--revert']);
    const args = [String(t.pid), rel.fix12, '--json', ...(kind === 'revert' ? ['--revert'] : [])];
    const goal = kind === 'revert' ? 'v1' : 'v2';
    const start = kind === 'revert' ? 'v2' : 'v1';
    const { run, phase } = await signalAt(runner, args, t.pid, signal, when);
    await sleep(20);
    const left = leftovers(t.pid);
    problems.push(...left);
    const after = libState(runner, rel, t.pid);
    if (after.live !== start && after.live !== goal) problems.push(`after the ${signal}: live build ${after.live}`);
    if (signal !== 'SIGKILL' && after.mixed) problems.push(`after the ${signal}: --status says mixed (a half-done switch)`);
    const mark = t.output().length;
    const h1 = await health(t, mark);
    problems.push(...h1.problems.map((p) => `after the ${signal}: ${p}`));
    const rerun = runner.run('ulp-trigger', args);
    const wanted = kind === 'revert' ? ['reverted', 'not-applied'] : ['applied', 'already-applied'];
    if (rerun.code !== 0 || !wanted.includes(rerun.json?.outcome)) problems.push(`re-run: ${describeEnd(rerun)} ${rerun.stderr.slice(0, 300)}`);
    const final = libState(runner, rel, t.pid);
    if (final.live !== goal || final.mixed) problems.push(`after the re-run: live ${final.live}, mixed ${final.mixed}`);
    const mark2 = t.output().length;
    const h2 = await health(t, mark2);
    problems.push(...h2.problems.map((p) => `after the re-run: ${p}`));
    if (h2.last && h2.last.version !== Number(goal.slice(1))) problems.push(`after the re-run the program runs version ${h2.last.version}`);
    return {
      signal,
      kind,
      when: 'afterAttach' in when ? `${when.afterAttach.toFixed(1)} ms after attach` : `${when.afterSpawn.toFixed(0)} ms after start`,
      phase,
      end: describeEnd(run),
      after: { live: after.live, mixed: after.mixed, aliased: after.aliased, ulpMappedBytes: after.ulpMappedBytes },
      leftovers: left,
      rerun: describeEnd(rerun),
      final: { live: final.live, mixed: final.mixed, aliased: final.aliased, ulpMappedBytes: final.ulpMappedBytes },
      survived: h1.alive && h2.alive && h1.ok && h2.ok,
      problems,
    };
  } finally {
    t.dispose();
  }
}

export interface FaultSummary {
  signal: string;
  attempts: number;
  survivors: number;
  inSession: number;
  mixedSeen: number;
  rerunCompleted: number;
  failures: FaultAttempt[];
}

export function summariseFaults(attempts: FaultAttempt[]): FaultSummary[] {
  const by = new Map<string, FaultAttempt[]>();
  for (const a of attempts) by.set(a.signal, [...(by.get(a.signal) ?? []), a]);
  return [...by].map(([signal, xs]) => ({
    signal,
    attempts: xs.length,
    survivors: xs.filter((a) => a.survived).length,
    inSession: xs.filter((a) => a.phase === 'in-session').length,
    mixedSeen: xs.filter((a) => a.after.mixed).length,
    rerunCompleted: xs.filter((a) => !a.problems.some((p) => p.startsWith('re-run') || p.startsWith('after the re-run'))).length,
    failures: xs.filter((a) => a.problems.length > 0),
  }));
}

// ---------------------------------------------------------------- an interrupted switch, made on purpose

export interface MixedCheck {
  direction: 'apply' | 'revert';
  rewound: number;
  statusMixed: LibState;
  rerun: string;
  final: LibState;
  health: Health;
}

/**
 * What a SIGKILL between two slot writes leaves: the process runs v2 (after
 * an apply), then half of the slots that point at v2 are written back to
 * v1's symbols with every thread stopped, as the journal of an interrupted
 * switch would leave them. `--status` must say mixed, and re-running the
 * apply (or the revert) must complete it.
 */
export async function interruptedSwitch(runner: Runner, rel: Reliable, direction: 'apply' | 'revert'): Promise<MixedCheck> {
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
    const live = state.slots.map((s, i) => ({ s, v: state.values[i]! })).filter(({ s, v }) => slotBuild(s, v, state.family, region) === state.live);
    const rewind = live.filter((_, i) => i % 2 === 0);
    const s = Session.open(t.pid);
    try {
      s.stopAll();
      for (const { s: slot, v } of rewind) {
        const c = classifySlot(slot, v, ctx);
        if (c.kind !== 'stale') continue;
        const b = Buffer.alloc(8);
        b.writeBigUInt64LE(c.value);
        s.poke(slot.addr, b);
      }
      s.resume();
    } finally {
      s.detach();
    }
    const statusMixed = libState(runner, rel, t.pid);
    const rerun = runner.run('ulp-trigger', [String(t.pid), rel.fix12, '--json', ...(direction === 'revert' ? ['--revert'] : [])]);
    const final = libState(runner, rel, t.pid);
    const mark = t.output().length;
    return { direction, rewound: rewind.length, statusMixed, rerun: describeEnd(rerun), final, health: await health(t, mark) };
  } finally {
    t.dispose();
  }
}

// ---------------------------------------------------------------- hostile environments

export interface EnvResult {
  name: string;
  end: string;
  ok: boolean;
  problems: string[];
}

const PROC_EXIT_CODES = new Set(['PROC_EXITED', 'PROC_NOT_FOUND', 'PROC_ZOMBIE', 'PROC_THREAD_EXITED', 'PROC_NO_THREAD', 'PROC_STOP_TIMEOUT']);

/** The target is killed at `afterAttach` ms into the command's session: a PROC_* error (exit 4) or success, never a hang or an internal error. */
export async function targetDies(runner: Runner, rel: Reliable, afterAttach: number, kind: 'apply-fresh' | 'revert'): Promise<EnvResult & { code?: string }> {
  const t = rel.start(1, ['20']);
  const problems: string[] = [];
  try {
    await t.waitFor((o) => parseRounds(o).length >= 2);
    if (kind === 'revert' && runner.run('ulp-trigger', [String(t.pid), rel.fix12]).code !== 0) throw new Error('apply failed');
    const child = runner.spawn('ulp-trigger', [String(t.pid), rel.fix12, '--json', ...(kind === 'revert' ? ['--revert'] : [])]);
    const done = finished(child, 60_000);
    const t0 = performance.now();
    while (tracerOf(t.pid) !== child.pid && performance.now() - t0 < 30_000 && child.exitCode === null) await sleep(0);
    await sleep(afterAttach);
    process.kill(t.pid, 'SIGKILL');
    const run = await done;
    const code = run.json?.error?.code as string | undefined;
    if (run.signal) problems.push(`the command was killed by ${run.signal} (hung?)`);
    else if (run.code === 0) {
      /* it finished before the target died */
    } else if (run.code !== 4 || !code || !PROC_EXIT_CODES.has(code)) problems.push(`expected exit 4 with a PROC_ code, got ${describeEnd(run)} ${run.stderr.slice(0, 400)}`);
    if (run.ms > 30_000) problems.push(`took ${run.ms.toFixed(0)} ms`);
    return { name: `target killed ${afterAttach} ms into ${kind}`, end: describeEnd(run), ok: problems.length === 0, problems, ...(code ? { code } : {}) };
  } finally {
    t.dispose();
  }
}

/** Another tracer holds the target: PROC_ALREADY_TRACED naming it, the process untouched; once it lets go, the patch applies. */
export async function alreadyTraced(runner: Runner, rel: Reliable): Promise<EnvResult> {
  const t = rel.start(1, ['20']);
  const problems: string[] = [];
  const tracer = spawn('python3', ['-c', `import ctypes,time\nlibc=ctypes.CDLL(None,use_errno=True)\nprint(libc.ptrace(0x4206,${t.pid},0,0),flush=True)\ntime.sleep(60)`], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    await t.waitFor((o) => parseRounds(o).length >= 2);
    await new Promise<void>((res) => tracer.stdout!.once('data', () => res()));
    const before = processState(t.pid);
    const r = runner.run('ulp-trigger', [String(t.pid), rel.fix12, '--json']);
    if (r.code !== 4 || r.json?.error?.code !== 'PROC_ALREADY_TRACED') problems.push(`expected PROC_ALREADY_TRACED, got ${describeEnd(r)}`);
    else if (!r.json.error.message.includes(String(tracer.pid))) problems.push(`the message does not name the tracer ${tracer.pid}: ${r.json.error.message}`);
    const after = processState(t.pid);
    if (after.maps !== before.maps) problems.push('the mappings changed');
    if ([...after.slots].some(([k, v]) => before.slots.get(k) !== v)) problems.push('a slot changed');
    const st = runner.run('ulp-trigger', ['--status', String(t.pid), '--json']);
    if (st.code !== 0) problems.push(`--status of a traced process: ${describeEnd(st)}`);
    tracer.kill('SIGKILL');
    await sleep(200);
    const ok = runner.run('ulp-trigger', [String(t.pid), rel.fix12, '--json']);
    if (ok.code !== 0 || ok.json?.outcome !== 'applied') problems.push(`after the other tracer left: ${describeEnd(ok)}`);
    const h = await health(t, t.output().length);
    problems.push(...h.problems);
    problems.push(...leftovers(t.pid));
    return { name: 'target already traced (another ptrace tracer), then released', end: describeEnd(r), ok: problems.length === 0, problems };
  } finally {
    tracer.kill('SIGKILL');
    t.dispose();
  }
}

/** Two ulp-trigger runs on one target at the same moment: one switches, the other refuses or finds nothing to do; never a mixed state. */
export async function concurrentTriggers(runner: Runner, rel: Reliable, offsetMs: number): Promise<EnvResult> {
  const t = rel.start(1, ['20']);
  const problems: string[] = [];
  try {
    await t.waitFor((o) => parseRounds(o).length >= 2);
    const args = [String(t.pid), rel.fix12, '--json'];
    const a = finished(runner.spawn('ulp-trigger', args));
    await sleep(offsetMs);
    const b = finished(runner.spawn('ulp-trigger', args));
    const runs = await Promise.all([a, b]);
    const outcomes = runs.map((r) => r.json?.outcome ?? r.json?.error?.code ?? describeEnd(r));
    const applied = outcomes.filter((o) => o === 'applied').length;
    if (applied !== 1) problems.push(`expected exactly one "applied", got ${outcomes.join(', ')}`);
    for (const o of outcomes) if (!['applied', 'already-applied', 'PROC_ALREADY_TRACED'].includes(o)) problems.push(`unexpected outcome ${o}`);
    const st = libState(runner, rel, t.pid);
    if (st.live !== 'v2' || st.mixed) problems.push(`live ${st.live}, mixed ${st.mixed}`);
    const maps = processState(t.pid).maps;
    const builds = new Set(maps.split('\n').filter((l) => l.includes(':new:libdemo.so.1')).map((l) => l.split(/\s+/)[5]));
    if (builds.size !== 1) problems.push(`${builds.size} copies of the new build mapped`);
    const h = await health(t, t.output().length);
    problems.push(...h.problems, ...leftovers(t.pid));
    return { name: `two triggers ${offsetMs} ms apart`, end: outcomes.join(' + '), ok: problems.length === 0, problems };
  } finally {
    t.dispose();
  }
}

/**
 * ulp-trigger run as an unprivileged user (uid 65534 through setpriv):
 * against a root process (denied), against a process of a third user
 * (denied), --status of a root process (denied), --all (finds nothing it may
 * touch, says how many it could not read), and against a process of its own
 * user (works). Needs root to switch users; returns [] otherwise.
 */
export async function otherUsers(runner: Runner, rel: Reliable): Promise<EnvResult[]> {
  if (process.getuid?.() !== 0) return [];
  const pub = mkdtempSync(join(tmpdir(), 'ulp-users-'));
  chmodSync(pub, 0o1777);
  chmodSync(rel.dir, 0o755);
  const bundle = join(pub, 'fix.ulp');
  copyFileSync(rel.fix12, bundle);
  chmodSync(bundle, 0o644);
  const results: EnvResult[] = [];
  const asUser = (uid: number, args: string[]): Run => {
    const t0 = performance.now();
    const r = spawnSyncAs(uid, runner.argv('ulp-trigger', args), pub);
    return { ...r, ms: performance.now() - t0 };
  };
  const root = rel.start(1, ['20']);
  const libDir = join(pub, 'lib');
  mkdirSync(libDir, { mode: 0o755 });
  copyFileSync(rel.lib(1), join(libDir, 'libdemo.so.1'));
  chmodSync(join(libDir, 'libdemo.so.1'), 0o755);
  const other = startTarget(['setpriv', '--reuid=65533', '--regid=65533', '--clear-groups', rel.exe, '20'], { LD_LIBRARY_PATH: libDir });
  const mine = startTarget(['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', rel.exe, '20'], { LD_LIBRARY_PATH: libDir });
  try {
    for (const t of [root, other, mine]) await t.waitFor((o) => parseRounds(o).length >= 2);
    const denied = async (name: string, t: Target, args: string[], code: string, exit: number) => {
      const problems: string[] = [];
      const before = processState(t.pid);
      const r = asUser(65534, args);
      if (r.code !== exit || r.json?.error?.code !== code) problems.push(`expected ${code} (exit ${exit}), got ${describeEnd(r)} ${r.stderr.slice(0, 300)}`);
      else if (!/uid|user|permission|owned/i.test(r.json.error.message + r.json.error.hint)) problems.push(`the message does not say why: ${r.json.error.message}`);
      const after = processState(t.pid);
      if (after.maps !== before.maps || [...after.slots].some(([k, v]) => before.slots.get(k) !== v)) problems.push('the process changed');
      problems.push(...leftovers(t.pid));
      const h = await health(t, t.output().length);
      problems.push(...h.problems);
      results.push({ name, end: describeEnd(r), ok: problems.length === 0, problems });
    };
    await denied('as uid 65534, apply to a root process', root, [String(root.pid), bundle, '--json'], 'PROC_PERMISSION_DENIED', 4);
    await denied('as uid 65534, apply to a process of uid 65533', other, [String(other.pid), bundle, '--json'], 'PROC_PERMISSION_DENIED', 4);
    await denied('as uid 65534, --status of a root process', root, ['--status', String(root.pid), '--json'], 'PROC_PERMISSION_DENIED', 4);
    // --all: only its own process is switched; the others are counted as inaccessible.
    {
      const problems: string[] = [];
      const r = asUser(65534, ['--all', bundle, '--json']);
      const pids = (r.json?.processes ?? []).map((p: { pid: number }) => p.pid);
      if (r.code !== 0) problems.push(`exit ${r.code}: ${r.stdout.slice(0, 300)} ${r.stderr.slice(0, 300)}`);
      if (pids.includes(root.pid) || pids.includes(other.pid)) problems.push(`--all touched a process of another user: ${pids.join(',')}`);
      if (!pids.includes(mine.pid)) problems.push(`--all did not find the user's own process ${mine.pid}: ${JSON.stringify(r.json)?.slice(0, 300)}`);
      if (!(r.json?.inaccessible >= 2)) problems.push(`inaccessible = ${r.json?.inaccessible}, expected at least the 2 other users' processes`);
      for (const t of [root, other]) if (libState(runner, rel, t.pid).live !== 'v1') problems.push(`process ${t.pid} of another user was switched`);
      const h = await health(mine, mine.output().length);
      if (h.last?.version !== 2) problems.push(`the user's own process runs version ${h.last?.version}`);
      problems.push(...h.problems, ...leftovers(mine.pid));
      results.push({ name: 'as uid 65534, --all', end: describeEnd(r) + ` (${pids.length} switched, ${r.json?.inaccessible} inaccessible)`, ok: problems.length === 0, problems });
    }
  } finally {
    root.dispose();
    other.dispose();
    mine.dispose();
    rmSync(pub, { recursive: true, force: true });
  }
  return results;
}

function spawnSyncAs(uid: number, argv: string[], home: string): Omit<Run, 'ms'> {
  const r = spawnSync('setpriv', [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', process.execPath, ...argv], {
    encoding: 'utf8',
    env: { ...process.env, HOME: home, TMPDIR: home },
    timeout: 120_000,
  });
  let json;
  try {
    json = JSON.parse(r.stdout);
  } catch {
    json = undefined;
  }
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr, json };
}
