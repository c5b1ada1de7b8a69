/**
 * Hostile environments: the target dies while the trigger works on it,
 * another tracer already holds it, two triggers race for it, and the trigger
 * runs as an unprivileged user against processes of other users. Each must
 * end in a clear error (a specific code, exit 4 for the process, a message
 * that says why) or a success, never a hang or an internal error, and leave
 * nothing behind: no traced thread, no open descriptor, no change in a
 * process the command was refused.
 */
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { asUlpError } from '../../common/cli.js';
import { decodeBundle, patchStep } from '../../patches/index.js';
import { buildMemfdName } from '../../runtime/memfd-names.js';
import { prepare, switchLibrary } from '../../runtime/loader/switch-library.js';
import { exposed, NOBODY, readableCheckout } from '../other-user.js';
import { processState } from '../process-state.js';
import { startTarget, type Target } from '../target.js';
import {
  finished,
  health,
  leftovers,
  libState,
  parseRounds,
  type Reliable,
  type Run,
  type Runner,
} from './lib.js';
import { describePoint, exited, marksOf, reached, sleepSync, tracerOf, type Point } from './points.js';
import { describeEnd } from './scenarios.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface EnvResult {
  name: string;
  /** How the command (or commands) ended. */
  end: string;
  problems: string[];
}

/** The codes that say "the process went away", which is what happened. */
export const EXITED_CODES = ['PROC_EXITED', 'PROC_THREAD_EXITED', 'PROC_NOT_FOUND', 'PROC_ZOMBIE'];

export interface DeathResult extends EnvResult {
  kind: 'apply-fresh' | 'revert';
  point: string;
  /** The error code, when the command failed. */
  code?: string;
  message?: string;
  ms: number;
}

/**
 * The target is SIGKILLed at `point` of the command (milestones watch the
 * target's maps, points.ts): the command must end with exit 4 and a code
 * that says the process exited (or succeed, if it was done), not hang.
 */
export async function targetDies(
  runner: Runner,
  rel: Reliable,
  point: Point,
  kind: 'apply-fresh' | 'revert',
): Promise<DeathResult> {
  const t = rel.start(1, ['20']);
  const problems: string[] = [];
  try {
    await t.waitFor((o) => parseRounds(o).length >= 2);
    if (kind === 'revert' && runner.run('ulp-trigger', [String(t.pid), rel.fix12]).code !== 0)
      throw new Error('apply failed');
    const before = marksOf(readFileSync(`/proc/${t.pid}/maps`, 'utf8'), 'new');
    const child = runner.spawn('ulp-trigger', [
      String(t.pid),
      rel.fix12,
      '--json',
      ...(kind === 'revert' ? ['--revert'] : []),
    ]);
    const done = finished(child, 60_000);
    const t0 = performance.now();
    // Synchronous waits: the event loop must not delay the kill.
    if ('milestone' in point) {
      for (;;) {
        let maps = '';
        try {
          maps = readFileSync(`/proc/${t.pid}/maps`, 'utf8');
        } catch {
          break;
        }
        if (
          reached(point.milestone, before, marksOf(maps, 'new')) ||
          exited(child.pid!) ||
          performance.now() - t0 > 30_000
        )
          break;
      }
    } else if ('afterAttach' in point) {
      while (tracerOf(t.pid) !== child.pid && !exited(child.pid!) && performance.now() - t0 < 30_000)
        sleepSync(0.1);
      sleepSync(point.afterAttach);
    } else sleepSync(point.afterSpawn);
    process.kill(t.pid, 'SIGKILL');
    const run = await done;
    const code = run.json?.error?.code as string | undefined;
    if (run.signal)
      problems.push(`the command was killed by ${run.signal} after ${run.ms.toFixed(0)} ms (a hang?)`);
    else if (run.code !== 0 && (run.code !== 4 || !code || !EXITED_CODES.includes(code))) {
      problems.push(
        `expected exit 4 with ${EXITED_CODES.join('/')}, got ${describeEnd(run)}: ${run.json?.error?.message ?? run.stderr.slice(0, 300)}`,
      );
    }
    // How fast it noticed is measured (ms, in the soak report), never judged: a loaded machine makes any bound flaky.
    return {
      name: `target killed ${describePoint(point)} of ${kind}`,
      kind,
      point: describePoint(point),
      end: describeEnd(run),
      problems,
      ms: run.ms,
      ...(code ? { code, message: run.json.error.message } : {}),
    };
  } finally {
    t.dispose();
  }
}

/**
 * Another tracer holds the target (PTRACE_SEIZE from python3): apply gives
 * PROC_ALREADY_TRACED naming it and changes nothing; --status reads the
 * process or refuses the same way; once the tracer is gone the apply works.
 */
export async function alreadyTraced(runner: Runner, rel: Reliable): Promise<EnvResult & { status: string }> {
  const t = rel.start(1, ['20']);
  const problems: string[] = [];
  const tracer = spawn(
    'python3',
    [
      '-c',
      `import ctypes,time\nlibc=ctypes.CDLL(None,use_errno=True)\nprint(libc.ptrace(0x4206,${t.pid},0,0),flush=True)\ntime.sleep(60)`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  try {
    await t.waitFor((o) => parseRounds(o).length >= 2);
    const said = await new Promise<string>((res) =>
      tracer.stdout!.once('data', (d) => res(String(d).trim())),
    );
    if (said !== '0' || tracerOf(t.pid) !== tracer.pid)
      throw new Error(`the python tracer could not seize ${t.pid}: ptrace returned ${said}`);
    const before = processState(t.pid);
    const r = runner.run('ulp-trigger', [String(t.pid), rel.fix12, '--json']);
    if (r.code !== 4 || r.json?.error?.code !== 'PROC_ALREADY_TRACED')
      problems.push(`expected PROC_ALREADY_TRACED (exit 4), got ${describeEnd(r)}`);
    else if (!r.json.error.message.includes(String(tracer.pid)))
      problems.push(`the message does not name the tracer ${tracer.pid}: ${r.json.error.message}`);
    const after = processState(t.pid);
    if (after.maps !== before.maps) problems.push('the mappings changed');
    if ([...after.slots].some(([k, v]) => before.slots.get(k) !== v)) problems.push('a slot changed');
    if (tracerOf(t.pid) !== tracer.pid)
      problems.push(`the other tracer lost the process: TracerPid ${tracerOf(t.pid)}`);
    const st = runner.run('ulp-trigger', ['--status', String(t.pid), '--json']);
    if (st.code !== 0 && (st.code !== 4 || st.json?.error?.code !== 'PROC_ALREADY_TRACED'))
      problems.push(`--status of a traced process: ${describeEnd(st)}`);
    tracer.kill('SIGKILL');
    for (let i = 0; i < 100 && tracerOf(t.pid) !== 0; i++) await sleep(20);
    const ok = runner.run('ulp-trigger', [String(t.pid), rel.fix12, '--json']);
    if (ok.code !== 0 || ok.json?.outcome !== 'applied')
      problems.push(`after the other tracer left: ${describeEnd(ok)}`);
    const h = await health(t, t.output().length);
    problems.push(...h.problems, ...leftovers(t.pid));
    if (h.last && h.last.version !== 2)
      problems.push(`the program runs version ${h.last.version} after the apply`);
    return {
      name: 'target already traced by another tracer, then released',
      end: `${describeEnd(r)}; then ${describeEnd(ok)}`,
      status: describeEnd(st),
      problems,
    };
  } finally {
    tracer.kill('SIGKILL');
    t.dispose();
  }
}

/** Two ulp-trigger runs on one target `offsetMs` apart: one switches, the other refuses (already traced) or finds nothing to do; never a mix. */
export async function concurrentTriggers(
  runner: Runner,
  rel: Reliable,
  offsetMs: number,
): Promise<EnvResult> {
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
    for (const o of outcomes)
      if (!['applied', 'already-applied', 'PROC_ALREADY_TRACED'].includes(o))
        problems.push(`unexpected outcome ${o}`);
    const st = libState(runner, rel, t.pid);
    if (st.live !== 'v2' || st.mixed) problems.push(`live ${st.live}, mixed ${st.mixed}`);
    const maps = processState(t.pid).maps;
    const builds = new Set(
      maps
        .split('\n')
        .filter((l) => l.includes(':new:libdemo.so.1'))
        .map((l) => l.split(/\s+/)[4]),
    );
    if (builds.size !== 1) problems.push(`${builds.size} copies of the new build mapped`);
    const h = await health(t, t.output().length);
    problems.push(...h.problems, ...leftovers(t.pid));
    return { name: `two triggers ${offsetMs} ms apart`, end: outcomes.join(' + '), problems };
  } finally {
    t.dispose();
  }
}

/** Distinct `ulp:data:` memfds mapped in the process: every build of a library must share one. */
function dataMemfds(pid: number): number {
  const lines = readFileSync(`/proc/${pid}/maps`, 'utf8')
    .split('\n')
    .filter((l) => l.includes('/memfd:ulp:data:'));
  return new Set(lines.map((l) => l.split(/\s+/)[4])).size;
}

/**
 * The race of concurrentTriggers made deterministic: trigger B reads the
 * process and plans (runtime prepare(), as `ulp-trigger` does before it
 * attaches), trigger A applies the same bundle meanwhile (the real command),
 * and only then does B attach and switch on its plan (switchLibrary with
 * that plan, in this process: the moment B's PTRACE_SEIZE succeeds after A
 * let go). Whatever B does, refuse or switch, the library's builds must
 * still share one set of globals: one data memfd, and the program's state
 * kept through the next switch (a revert by the command) and the one after.
 */
export async function interleavedTriggers(runner: Runner, rel: Reliable): Promise<EnvResult> {
  const t = rel.start(1, ['20']);
  const problems: string[] = [];
  try {
    await t.waitFor((o) => parseRounds(o).length >= 2);
    const bundle = decodeBundle(readFileSync(rel.fix12));
    const step = patchStep(bundle, 'forward');
    const soname = bundle.manifest.soname;
    const request = {
      pid: t.pid,
      soname,
      target: {
        buildId: step.to.entry.buildId,
        bytes: step.to.bytes,
        memfdName: buildMemfdName(bundle.manifest.patchId, 'new', soname, step.from.entry.buildId),
      },
    };
    const plan = prepare(request);
    const a = runner.run('ulp-trigger', [String(t.pid), rel.fix12, '--json']);
    if (a.code !== 0 || a.json?.outcome !== 'applied')
      throw new Error(`trigger A: ${describeEnd(a)} ${a.stderr}`);
    let b: string;
    try {
      const r = switchLibrary({ ...request, prepared: plan });
      b = `switched (staged=${r.staged}, aliasedNow=${r.aliasedNow}, ${r.rewritten} slots rewritten)`;
    } catch (e) {
      const err = asUlpError(e);
      b = `refused ${err.code}`;
      if (err.code === 'INTERNAL_ERROR') problems.push(`trigger B: an internal error: ${err.message}`);
    }
    const n = dataMemfds(t.pid);
    if (n !== 1) problems.push(`after B: ${n} data memfds; the builds no longer share one set of globals`);
    problems.push(...leftovers(t.pid).map((p) => `after B: ${p}`));
    const h1 = await health(t, t.output().length);
    problems.push(...h1.problems.map((p) => `after B: ${p}`));
    // State split between builds shows at the next switches: the program's counters jump back.
    const rv = runner.run('ulp-trigger', [String(t.pid), rel.fix12, '--json', '--revert']);
    if (rv.code !== 0 || rv.json?.outcome !== 'reverted') problems.push(`revert: ${describeEnd(rv)}`);
    const h2 = await health(t, t.output().length);
    problems.push(...h2.problems.map((p) => `after the revert: ${p}`));
    const ap = runner.run('ulp-trigger', [String(t.pid), rel.fix12, '--json']);
    if (ap.code !== 0 || ap.json?.outcome !== 'applied') problems.push(`apply again: ${describeEnd(ap)}`);
    const h3 = await health(t, t.output().length);
    problems.push(...h3.problems.map((p) => `after applying again: ${p}`));
    if (h3.last && h3.last.version !== 2)
      problems.push(`after applying again the program runs version ${h3.last.version}`);
    return {
      name: `two triggers interleaved (B plans, A applies, B switches on its plan), ${rel.relro} RELRO`,
      end: `A applied; B ${b}; then ${describeEnd(rv)}, ${describeEnd(ap)}`,
      problems,
    };
  } finally {
    t.dispose();
  }
}

/** The unprivileged user the trigger runs as, and a third user that owns one target. */
export { NOBODY };
const THIRD = 65533;

/**
 * ulp-trigger run as an unprivileged user (uid 65534 through setpriv):
 * apply to a root process and to a process of a third user (denied),
 * --status of a root process (denied), --all (switches only the user's own
 * process and counts the others as inaccessible). Needs root to switch
 * users; returns [] otherwise.
 */
export async function otherUsers(runner: Runner, rel: Reliable): Promise<EnvResult[]> {
  if (process.getuid?.() !== 0) return [];
  const pub = mkdtempSync(join(tmpdir(), 'ulp-users-'));
  chmodSync(pub, 0o1777);
  const bundle = join(pub, 'fix.ulp');
  copyFileSync(rel.fix12, bundle);
  chmodSync(bundle, 0o644);
  const libDir = join(pub, 'lib');
  mkdirSync(libDir, { mode: 0o755 });
  copyFileSync(rel.lib(1), join(libDir, 'libdemo.so.1'));
  chmodSync(join(libDir, 'libdemo.so.1'), 0o755);
  const results: EnvResult[] = [];
  // That user must be able to read what it runs: the sources through tsx from readableCheckout() (a copy when the checkout is not readable), whatever the runner.
  const argv = (args: string[]) => [
    '--import',
    'tsx',
    join(readableCheckout(), 'bin', 'ulp-trigger.ts'),
    ...args,
  ];
  const asUser = (uid: number, args: string[]): Run => spawnSyncAs(uid, argv(args), pub);
  const exe = exposed(rel.exe, join(pub, 'bin'));
  const root = rel.start(1, ['20']);
  const targets: Target[] = [root];
  try {
    const other = startTarget(
      ['setpriv', `--reuid=${THIRD}`, `--regid=${THIRD}`, '--clear-groups', exe, '20'],
      { LD_LIBRARY_PATH: libDir },
    );
    targets.push(other);
    const mine = startTarget(
      ['setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', exe, '20'],
      { LD_LIBRARY_PATH: libDir },
    );
    targets.push(mine);
    for (const t of targets) await t.waitFor((o) => parseRounds(o).length >= 2);
    const denied = async (name: string, t: Target, args: string[]) => {
      const problems: string[] = [];
      const before = processState(t.pid);
      const r = asUser(NOBODY, args);
      if (r.code !== 4 || r.json?.error?.code !== 'PROC_PERMISSION_DENIED')
        problems.push(
          `expected PROC_PERMISSION_DENIED (exit 4), got ${describeEnd(r)} ${r.stderr.slice(0, 300)}`,
        );
      else if (!/uid|user|permission|owned/i.test(r.json.error.message + r.json.error.hint))
        problems.push(`the message does not say why: ${r.json.error.message}`);
      const after = processState(t.pid);
      if (after.maps !== before.maps || [...after.slots].some(([k, v]) => before.slots.get(k) !== v))
        problems.push('the process changed');
      problems.push(...leftovers(t.pid));
      problems.push(...(await health(t, t.output().length)).problems);
      results.push({ name, end: `${describeEnd(r)}: ${r.json?.error?.message ?? ''}`, problems });
    };
    await denied(`as uid ${NOBODY}, apply to a root process`, root, [String(root.pid), bundle, '--json']);
    await denied(`as uid ${NOBODY}, apply to a process of uid ${THIRD}`, other, [
      String(other.pid),
      bundle,
      '--json',
    ]);
    await denied(`as uid ${NOBODY}, --status of a root process`, root, [
      '--status',
      String(root.pid),
      '--json',
    ]);
    // --all: only its own process is switched; the others are counted as inaccessible.
    {
      const problems: string[] = [];
      const r = asUser(NOBODY, ['--all', bundle, '--json']);
      const pids = (r.json?.processes ?? []).map((p: { pid: number }) => p.pid);
      // Other users' processes with the build could not be inspected: a partial run, exit 9 (TRIGGER_PARTIAL_SCAN) without --allow-partial.
      if (r.code !== 9)
        problems.push(
          `expected exit 9 (TRIGGER_PARTIAL_SCAN), got ${r.code}: ${r.stdout.slice(0, 300)} ${r.stderr.slice(0, 300)}`,
        );
      if (pids.includes(root.pid) || pids.includes(other.pid))
        problems.push(`--all touched a process of another user: ${pids.join(',')}`);
      if (!pids.includes(mine.pid))
        problems.push(
          `--all did not find the user's own process ${mine.pid}: ${JSON.stringify(r.json)?.slice(0, 300)}`,
        );
      // `skipped` lists the command's own ancestors only; none of these targets is one.
      if (!Array.isArray(r.json?.skipped))
        problems.push(`--all --json has no "skipped" list: ${JSON.stringify(r.json)?.slice(0, 200)}`);
      else if (r.json.skipped.some((s: { pid: number }) => [root.pid, other.pid, mine.pid].includes(s.pid)))
        problems.push(`--all skipped a target as its ancestor: ${JSON.stringify(r.json.skipped)}`);
      if (!(r.json?.inaccessible >= 2))
        problems.push(
          `--all reports inaccessible=${r.json?.inaccessible}; at least the 2 processes of other users that have the build are inaccessible to it`,
        );
      for (const t of [root, other])
        if (libState(runner, rel, t.pid).live !== 'v1')
          problems.push(`process ${t.pid} of another user was switched`);
      const h = await health(mine, mine.output().length);
      if (h.last?.version !== 2) problems.push(`the user's own process runs version ${h.last?.version}`);
      problems.push(...h.problems, ...leftovers(mine.pid));
      results.push({
        name: `as uid ${NOBODY}, --all`,
        end: `${describeEnd(r)} (${pids.length} switched, ${r.json?.inaccessible} inaccessible)`,
        problems,
      });
    }
  } finally {
    for (const t of targets) t.dispose();
    rmSync(pub, { recursive: true, force: true });
  }
  return results;
}

function spawnSyncAs(uid: number, argv: string[], home: string): Run {
  const t0 = performance.now();
  const r = spawnSync(
    'setpriv',
    [`--reuid=${uid}`, `--regid=${uid}`, '--clear-groups', process.execPath, ...argv],
    {
      cwd: readableCheckout(),
      encoding: 'utf8',
      env: { ...process.env, HOME: home, TMPDIR: home },
      timeout: 120_000,
    },
  );
  let json;
  try {
    json = JSON.parse(r.stdout);
  } catch {
    json = undefined;
  }
  return {
    code: r.status,
    signal: r.signal,
    stdout: r.stdout,
    stderr: r.stderr,
    json,
    ms: performance.now() - t0,
  };
}
