/**
 * `ulp-trigger --all` on many processes: total time of the command and the
 * time per process, for 100 and 1000 processes (libpulp reports about 4000
 * processes in 4 s, 1 ms per process).
 *
 *   npx tsx scripts/bench-all.ts [--processes 100,1000] [--sleep-processes 100]
 *                                [--jobs 1] [--profile] [--json FILE]
 *                                [--baseline DIR [--rounds 1]]
 *
 * The fleet is one small program (test/fixtures/bench/fleet_main.c) forked
 * into N processes, each with libdemo loaded and calling it once a second,
 * in one of two ways:
 *   wait   (--processes) between calls every process waits in pause() for
 *          its interval timer: an untimed wait, like a worker in
 *          epoll_wait(-1), accept() or read();
 *   sleep  (--sleep-processes; 0 for none) every process sleeps in
 *          nanosleep(1 s). The trigger lets a thread in a timed sleep finish
 *          it before the first remote function call of staging
 *          (runtime/remote-call.ts, awaitCleanStop), so these rows show
 *          that cost: up to a second per process, and --all works on one
 *          process at a time.
 * For each fleet:
 *   - the compiled `ulp-trigger --all FIX --json --jobs J`: first apply
 *     (stages the build in every process), revert, and re-apply (the build
 *     is mapped already: only the switch): the command's wall time (node
 *     start included), its own totalMs, and processes/s from totalMs against
 *     the issue's goals (first apply >= 500/s, re-apply and revert >= 1000/s);
 *   - the ptrace floor on the same processes right after, in this process:
 *     per process seize every thread, interrupt one, one remote getpid
 *     through the stub page the apply left, detach (runtime/ directly); the
 *     ratio of the command's time to it is what the trigger adds;
 *   - the same work in this process through runAll() (what the command
 *     runs), timing each process from one onProcess callback to the next:
 *     the per-process median and worst, and the search over /proc;
 *   - with --profile, a CPU profile of the command (node --cpu-prof) for the
 *     largest N, summarised by self time per function and per source file;
 *   - with --baseline DIR (another checkout, built: DIR/dist/bin/ulp-trigger.js),
 *     the same three commands and floor with that tree's command on a fresh
 *     fleet right after, printed beside this tree's with the ratio: before
 *     and after a change, side by side in one run under the same load.
 *     --rounds R repeats both R times in alternating order (fresh fleets) and
 *     keeps the median of each time: on a shared machine one round can be
 *     off by half.
 * Every process must end up switched: a failure fails the benchmark.
 */
import { readdirSync, rmSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { readBundleFile } from '../patches/index.js';
import { NR, Session } from '../runtime/index.js';
import { closeTally, openTally, perItem, total, type Tally } from '../runtime/sys/tally.js';
import { autoJobs, findProcesses, runAll } from '../trigger/all.js';
import { startTarget } from '../lab/target.js';
import {
  arg,
  BIN,
  BENCH_DIR,
  ensureBuilt,
  flag,
  fmtMs,
  loadAverage,
  machine,
  markdownTable,
  median,
  numbers,
  runProgram,
  summary,
  writeJsonResult,
  type Summary,
} from '../lab/bench/common.js';
import { renderProfile, summariseProfile, type Profile } from '../lab/bench/profile.js';
import { fleetProgram, libdemo, libDir, pack, workDir } from '../lab/bench/fixtures.js';
import { handleArgs } from '../lab/script-args.js';

const COUNTS = numbers('--processes', [100, 1000]);
const SLEEP_COUNTS = numbers('--sleep-processes', [100]).filter((n) => n > 0);
const PROFILE = flag('--profile');
const JOBS = numbers('--jobs', [1]);
const BASELINE = arg('--baseline');
const ROUNDS = numbers('--rounds', [1])[0]!;
/** The issue's goals (processes per second on a 2-core machine, 1000 sleeping processes). */
const GOAL = { first: 500, again: 1000 } as const;

/** How the fleet's processes wait between calls (fleet_main.c). */
export type FleetMode = 'wait' | 'sleep';

export interface AllRow {
  processes: number;
  mode: FleetMode;
  /** --jobs of the command rows. */
  jobs: number;
  /** Re-apply after the revert: the build is mapped already. */
  reapply: { commandMs: number; totalMs: number; ok: number };
  /** Seize, interrupt, one remote syscall, detach: processes per second, on the same processes. */
  floorPerSec: number;
  /** Processes on the machine when it ran (the search reads every one). */
  onMachine: number;
  apply: { commandMs: number; totalMs: number; ok: number };
  revert: { commandMs: number; totalMs: number; ok: number };
  /** In-process runAll: time per process, and the search over /proc. */
  perProcess: { apply: Summary; revert: Summary };
  /** In-process runAll: stops, requests, waits, remote syscalls and calls per process. */
  counts: { apply: Counts; revert: Counts };
  /** Where a process's time goes on the first apply (medians). */
  phases: Phases;
  searchMs: number;
  pauseMedianMs: number;
  pauseWorstMs: number;
  loadBefore: string;
  loadAfter: string;
  /** The same commands and floor with the --baseline tree's command, on a fresh fleet right after. */
  baseline?: Commands;
}

/** The command's three runs on one fleet and the ptrace floor on the same processes. */
export interface Commands {
  apply: { commandMs: number; totalMs: number; ok: number };
  revert: { commandMs: number; totalMs: number; ok: number };
  reapply: { commandMs: number; totalMs: number; ok: number };
  floorPerSec: number;
}

/** Medians per process: reading the process (snapshot, checks, decision), planning, staging, switching. */
export interface Phases {
  readMs: number;
  planMs: number;
  stageMs: number;
  switchMs: number;
}

export async function startFleet(
  exe: string,
  n: number,
  mode: FleetMode,
  lib: string,
): Promise<{ pids: number[]; dispose(): void; output(): string }> {
  // Under a shell that waits for it: fleet_main dies with its parent (PR_SET_PDEATHSIG), and startTarget's
  // own shell exits at once, which kills the fleet when it exits after fleet_main has set that up.
  const t = startTarget(['sh', '-c', `'${exe}' ${n} ${mode} & wait`], { LD_LIBRARY_PATH: lib });
  const out = await t.waitFor((o) => /^ready$/m.test(o), 120_000);
  const pids = [...out.matchAll(/^pid (\d+)$/gm)].map((m) => Number(m[1]));
  if (pids.length !== n) throw new Error(`fleet: ${pids.length} pids printed, expected ${n}`);
  return {
    pids,
    output: t.output,
    dispose() {
      for (const pid of pids) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
      t.dispose();
    },
  };
}

function checkAll(json: any, pids: number[], outcome: string): number {
  const mine = new Set(pids);
  const ok = json.processes.filter(
    (p: any) => mine.has(p.pid) && p.ok && p.result.outcome === outcome,
  ).length;
  if (ok !== pids.length) {
    const bad = json.processes.filter((p: any) => !p.ok).slice(0, 5);
    throw new Error(`--all: ${ok} of ${pids.length} processes ${outcome}; failures: ${JSON.stringify(bad)}`);
  }
  return ok;
}

/**
 * The ptrace floor of one process, what any tool that injects one system
 * call pays: seize every thread, stop one, one remote getpid through the stub
 * page (the apply left it), detach. Processes per second over `pids`.
 */
function floor(pids: number[]): number {
  const t0 = performance.now();
  for (const pid of pids) {
    const s = Session.open(pid, { deferSignals: false });
    try {
      s.borrow();
      s.syscall(NR.getpid);
    } finally {
      s.detach();
    }
  }
  return (pids.length / (performance.now() - t0)) * 1000;
}

const perSec = (n: number, ms: number) => (n / ms) * 1000;
const vsGoal = (rate: number, goal: number) =>
  `${rate.toFixed(0)} (${rate >= goal ? 'meets' : `${((rate / goal) * 100).toFixed(0)} % of`} ${goal})`;

/** runAll in this process, timing each process between onProcess callbacks. */
async function perProcess(
  fix: string,
  which: 'forward' | 'reverse',
): Promise<{ times: number[]; pauses: number[]; searchMs: number; phases: Phases; counts: Counts }> {
  const bundle = readBundleFile(fix);
  const marks: number[] = [];
  const t0 = performance.now();
  openTally();
  let tally: Tally;
  let r;
  try {
    r = await runAll(bundle, { which, onProcess: () => marks.push(performance.now()) });
  } finally {
    tally = closeTally();
  }
  const end = performance.now();
  marks.push(end);
  const times = marks.slice(1).map((m, i) => m - marks[i]!);
  const failed = r.processes.filter((p) => !p.ok);
  if (failed.length)
    throw new Error(`runAll ${which}: ${failed.length} failed: ${JSON.stringify(failed.slice(0, 3))}`);
  const results = r.processes.flatMap((p) =>
    p.ok && p.result.switch ? [{ result: p.result, ms: times[r.processes.indexOf(p)]! }] : [],
  );
  const phases: Phases = {
    readMs: median(
      results.map(
        (x) =>
          x.ms -
          x.result.switch!.timings.planMs -
          x.result.switch!.timings.stageMs -
          x.result.switch!.timings.switchMs,
      ),
    ),
    planMs: median(results.map((x) => x.result.switch!.timings.planMs)),
    stageMs: median(results.map((x) => x.result.switch!.timings.stageMs)),
    switchMs: median(results.map((x) => x.result.switch!.timings.switchMs)),
  };
  return {
    times,
    pauses: r.processes.map((p) => (p.ok ? (p.result.pauseMs ?? 0) : 0)),
    searchMs: (marks[0] ?? end) - t0,
    phases,
    counts: countsOf(tally, r.processes.length),
  };
}

/** What one process cost the tracer and the target, on average (runtime/sys/tally.ts). */
export interface Counts {
  stops: number;
  requests: number;
  waits: number;
  syscalls: number;
  calls: number;
  /** Every count per process, largest first. */
  detail: Array<[string, number]>;
}

export function countsOf(t: Tally, n: number): Counts {
  const per = (prefix: string) => total(t, prefix) / n;
  return {
    stops: per('stop'),
    requests: per('ptrace:'),
    waits: per('wait'),
    syscalls: per('syscall:'),
    calls: per('call'),
    detail: perItem(t, n),
  };
}

export function renderAll(rows: AllRow[]): string {
  const rateRow = (r: AllRow, c: Commands, which: string, speedup: string) => {
    const first = perSec(r.processes, c.apply.totalMs);
    const again = perSec(r.processes, c.reapply.totalMs);
    return [
      String(r.processes),
      r.mode === 'wait' ? 'pause()' : 'nanosleep(1 s)',
      String(r.jobs),
      which,
      vsGoal(first, GOAL.first),
      vsGoal(perSec(r.processes, c.revert.totalMs), GOAL.again),
      vsGoal(again, GOAL.again),
      c.floorPerSec.toFixed(0),
      `${(c.floorPerSec / first).toFixed(1)}×`,
      `${(c.floorPerSec / again).toFixed(1)}×`,
      speedup,
      [c.apply.commandMs, c.revert.commandMs, c.reapply.commandMs].map(fmtMs).join(' / '),
    ];
  };
  /** How many times faster this tree's command was than the baseline's: first apply / revert / re-apply. */
  const speedup = (now: Commands, before: Commands) =>
    (['apply', 'revert', 'reapply'] as const)
      .map((k) => `${(before[k].totalMs / now[k].totalMs).toFixed(2)}×`)
      .join(' / ');
  const rates = markdownTable(
    [
      'processes',
      'waiting in',
      'jobs',
      'command',
      'first apply/s (goal)',
      'revert/s (goal)',
      're-apply/s (goal)',
      'ptrace floor/s',
      'first apply / floor',
      're-apply / floor',
      'faster than baseline: apply / revert / re-apply',
      'commands (node start included): apply / revert / re-apply',
    ],
    rows.flatMap((r) => [
      rateRow(r, r, 'this tree', r.baseline ? speedup(r, r.baseline) : ''),
      ...(r.baseline ? [rateRow(r, r.baseline, 'baseline', '')] : []),
    ]),
  );
  const detail = markdownTable(
    [
      'processes',
      'waiting in',
      'on machine',
      'per process median (apply)',
      'per process worst (apply)',
      'read / plan / stage / switch (medians)',
      'per process median (revert)',
      'search /proc',
      'pause median / worst',
      'load 1/5/15 min',
    ],
    rows.map((r) => [
      String(r.processes),
      r.mode === 'wait' ? 'pause()' : 'nanosleep(1 s)',
      String(r.onMachine),
      fmtMs(r.perProcess.apply.median),
      fmtMs(r.perProcess.apply.worst),
      [r.phases.readMs, r.phases.planMs, r.phases.stageMs, r.phases.switchMs].map(fmtMs).join(' / '),
      fmtMs(r.perProcess.revert.median),
      fmtMs(r.searchMs),
      `${fmtMs(r.pauseMedianMs)} / ${fmtMs(r.pauseWorstMs)}`,
      r.loadAfter,
    ]),
  );
  const counts = markdownTable(
    [
      'processes',
      'waiting in',
      'run',
      'target stops',
      'ptrace requests',
      'waits',
      'remote syscalls',
      'remote calls',
      'largest counts',
    ],
    // Rows of a report written before the counts existed have none.
    rows.flatMap((r) =>
      (r.counts ? (['apply', 'revert'] as const) : []).map((k) => {
        const c = r.counts![k];
        return [
          String(r.processes),
          r.mode === 'wait' ? 'pause()' : 'nanosleep(1 s)',
          k === 'apply' ? 'first apply' : 'revert',
          c.stops.toFixed(1),
          c.requests.toFixed(1),
          c.waits.toFixed(1),
          c.syscalls.toFixed(1),
          c.calls.toFixed(1),
          c.detail
            .slice(0, 8)
            .map(([key, v]) => `${key} ${v.toFixed(1)}`)
            .join(', '),
        ];
      }),
    ),
  );
  return `${rates}\n\nPer process, from runAll() in the benchmark's process (one at a time):\n\n${detail}\n\nPer process, counted (runtime/sys/tally.ts) in the same runs:\n\n${counts}`;
}

/** The compiled command `trigger` on a fresh fleet: first apply, revert, re-apply, then the ptrace floor on it. */
async function commands(
  trigger: string,
  exe: string,
  lib: string,
  fix: string,
  n: number,
  mode: FleetMode,
  jobs: number,
): Promise<Commands> {
  const fleet = await startFleet(exe, n, mode, lib);
  try {
    const found = findProcesses(new Set([readBundleFile(fix).manifest.builds.old.buildId])).pids.length;
    if (found !== n) throw new Error(`the search found ${found} processes with the old build, expected ${n}`);
    const run = (args: string[], outcome: string) => {
      const c = runProgram(process.execPath, [
        trigger,
        '--all',
        fix,
        ...args,
        '--json',
        '--jobs',
        String(jobs),
      ]);
      return { commandMs: c.ms, totalMs: c.json.totalMs, ok: checkAll(c.json, fleet.pids, outcome) };
    };
    const apply = run([], 'applied');
    const revert = run(['--revert'], 'reverted');
    const reapply = run([], 'applied');
    const floorPerSec = floor(fleet.pids);
    if (/BAD/.test(fleet.output())) throw new Error('a fleet process computed a wrong result');
    return { apply, revert, reapply, floorPerSec };
  } finally {
    fleet.dispose();
  }
}

/** Each figure's median over rounds. */
function medianCommands(list: readonly Commands[]): Commands {
  const run = (k: 'apply' | 'revert' | 'reapply') => ({
    commandMs: median(list.map((c) => c[k].commandMs)),
    totalMs: median(list.map((c) => c[k].totalMs)),
    ok: Math.min(...list.map((c) => c[k].ok)),
  });
  return {
    apply: run('apply'),
    revert: run('revert'),
    reapply: run('reapply'),
    floorPerSec: median(list.map((c) => c.floorPerSec)),
  };
}

async function measure(
  exe: string,
  lib: string,
  fix: string,
  n: number,
  mode: FleetMode,
  jobs: number,
  profileIt: boolean,
): Promise<{ row: AllRow; profile?: Profile & { wallMs: number } }> {
  const loadBefore = loadAverage();
  // Fleet A: the command as users run it, first apply (stages the build in every process) and revert.
  const onMachine = readdirSync('/proc').filter((e) => /^\d+$/.test(e)).length;
  const mine: Commands[] = [];
  const theirs: Commands[] = [];
  for (let round = 0; round < (BASELINE ? ROUNDS : 1); round++) {
    const runMine = async () => mine.push(await commands(BIN.trigger, exe, lib, fix, n, mode, jobs));
    const runTheirs = async () =>
      theirs.push(
        await commands(join(BASELINE!, 'dist', 'bin', 'ulp-trigger.js'), exe, lib, fix, n, mode, jobs),
      );
    // Alternating order: the load drifts during a run, and neither tree should always go first.
    if (!BASELINE) await runMine();
    else if (round % 2 === 0) await runMine().then(runTheirs);
    else await runTheirs().then(runMine);
  }
  const { apply: a, revert: r, reapply: again, floorPerSec } = medianCommands(mine);
  const baseline = BASELINE ? medianCommands(theirs) : undefined;
  // Fleet B: the same work through runAll() in this process, timed per process.
  let fleet = await startFleet(exe, n, mode, lib);
  let pa, pr;
  try {
    pa = await perProcess(fix, 'forward');
    pr = await perProcess(fix, 'reverse');
    if (/BAD/.test(fleet.output())) throw new Error('a fleet process computed a wrong result');
  } finally {
    fleet.dispose();
  }
  let profile: (Profile & { wallMs: number }) | undefined;
  if (profileIt) {
    // Fleet C: a CPU profile of the command's first apply.
    fleet = await startFleet(exe, n, mode, lib);
    try {
      const dir = join(BENCH_DIR, 'profile-all');
      rmSync(dir, { recursive: true, force: true });
      const p = runProgram(process.execPath, [
        '--cpu-prof',
        '--cpu-prof-dir',
        dir,
        '--cpu-prof-interval',
        '200',
        BIN.trigger,
        '--all',
        fix,
        '--json',
      ]);
      checkAll(p.json, fleet.pids, 'applied');
      const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'))!;
      profile = { ...summariseProfile(join(dir, file)), wallMs: Math.round(p.ms) };
    } finally {
      fleet.dispose();
    }
  }
  const row: AllRow = {
    processes: n,
    mode,
    jobs,
    reapply: again,
    floorPerSec,
    onMachine,
    apply: a,
    revert: r,
    ...(baseline ? { baseline } : {}),
    perProcess: { apply: summary(pa.times), revert: summary(pr.times) },
    counts: { apply: pa.counts, revert: pr.counts },
    phases: pa.phases,
    searchMs: pa.searchMs,
    pauseMedianMs: summary(pa.pauses).median,
    pauseWorstMs: summary(pa.pauses).worst,
    loadBefore,
    loadAfter: loadAverage(),
  };
  return { row, ...(profile ? { profile } : {}) };
}

async function main(): Promise<void> {
  handleArgs(import.meta.url, {
    values: ['--processes', '--sleep-processes', '--jobs', '--json', '--baseline', '--rounds'],
    flags: ['--profile'],
  });
  ensureBuilt();
  const tag = `all-${process.pid}-${Date.now()}`;
  const w = workDir('bench-all');
  const rows: AllRow[] = [];
  let profile: (Profile & { wallMs: number; processes: number }) | undefined;
  try {
    const fix = pack(libdemo(1, tag), libdemo(2, tag), join(w.dir, 'fix.ulp'));
    const lib = libDir(w.dir, 'lib', { 'libdemo.so.1': libdemo(1, tag) });
    const exe = fleetProgram(tag);
    const runs: Array<[FleetMode, number]> = [
      ...COUNTS.map((n): [FleetMode, number] => ['wait', n]),
      ...SLEEP_COUNTS.map((n): [FleetMode, number] => ['sleep', n]),
    ];
    for (const [mode, n, jobs] of runs.flatMap(([mode, n]) =>
      JOBS.map((jobs): [FleetMode, number, number] => [mode, n, jobs]),
    )) {
      const m = await measure(
        exe,
        lib,
        fix,
        n,
        mode,
        jobs,
        PROFILE && mode === 'wait' && n === Math.max(...COUNTS) && jobs === JOBS[0],
      );
      rows.push(m.row);
      if (m.profile) profile = { ...m.profile, processes: n };
      const row = m.row;
      process.stderr.write(
        `  ${n} processes in ${mode}, --jobs ${jobs}: apply ${fmtMs(row.apply.commandMs)} (totalMs ${fmtMs(row.apply.totalMs)}), revert ${fmtMs(row.revert.commandMs)}, per process median ${fmtMs(row.perProcess.apply.median)} (load ${row.loadAfter})\n`,
      );
    }
    console.log(
      `ulp-trigger --all: first apply, revert, re-apply, with the ptrace floor on the same processes (${machine().cpus} CPUs, load ${loadAverage()})\n`,
    );
    console.log(renderAll(rows));
    if (profile) {
      console.log(
        `CPU profile of \`ulp-trigger --all\` (first apply) on ${profile.processes} processes: ${profile.wallMs} ms wall, ${profile.totalMs} ms sampled (idle included), self time:\n`,
      );
      console.log(renderProfile(profile, 15));
    }
    writeJsonResult({
      rows,
      profile: profile ?? null,
      processesArg: COUNTS,
      sleepProcessesArg: SLEEP_COUNTS,
      jobsArg: JOBS,
      defaultJobs: Object.fromEntries(
        [...new Set(rows.map((r) => r.processes))].map((n) => [n, autoJobs(n, availableParallelism())]),
      ),
      goals: GOAL,
    });
  } finally {
    w.dispose();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
