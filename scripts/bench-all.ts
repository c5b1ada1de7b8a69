/**
 * `ulp-trigger --all` on many processes: total time of the command and the
 * time per process, for 100 and 1000 processes (libpulp reports about 4000
 * processes in 4 s, 1 ms per process).
 *
 *   npx tsx scripts/bench-all.ts [--processes 100,1000] [--sleep-processes 100]
 *                                [--profile] [--json FILE]
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
 *   - the compiled `ulp-trigger --all FIX --json`, apply then revert: the
 *     command's wall time (node start included) and its own totalMs;
 *   - the same work in this process through runAll() (what the command
 *     runs), timing each process from one onProcess callback to the next:
 *     the per-process median and worst, and the search over /proc;
 *   - with --profile, a CPU profile of the command (node --cpu-prof) for the
 *     largest N, summarised by self time per function and per source file.
 * Every process must end up switched: a failure fails the benchmark.
 */
import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { readBundleFile } from '../patches/index.js';
import { findProcesses, runAll } from '../trigger/all.js';
import { startTarget } from '../lab/target.js';
import { BIN, BENCH_DIR, ensureBuilt, flag, fmtMs, loadAverage, markdownTable, median, numbers, runBin, runProgram, summary, writeJsonResult, type Summary } from '../lab/bench/common.js';
import { renderProfile, summariseProfile, type Profile } from '../lab/bench/profile.js';
import { fleetProgram, libdemo, libDir, pack, workDir } from '../lab/bench/fixtures.js';

const COUNTS = numbers('--processes', [100, 1000]);
const SLEEP_COUNTS = numbers('--sleep-processes', [100]).filter((n) => n > 0);
const PROFILE = flag('--profile');

/** How the fleet's processes wait between calls (fleet_main.c). */
export type FleetMode = 'wait' | 'sleep';

export interface AllRow {
  processes: number;
  mode: FleetMode;
  /** Processes on the machine when it ran (the search reads every one). */
  onMachine: number;
  apply: { commandMs: number; totalMs: number; ok: number };
  revert: { commandMs: number; totalMs: number; ok: number };
  /** In-process runAll: time per process, and the search over /proc. */
  perProcess: { apply: Summary; revert: Summary };
  /** Where a process's time goes on the first apply (medians). */
  phases: Phases;
  searchMs: number;
  pauseMedianMs: number;
  pauseWorstMs: number;
  loadBefore: string;
  loadAfter: string;
}

/** Medians per process: reading the process (snapshot, checks, decision), planning, staging, switching. */
export interface Phases {
  readMs: number;
  planMs: number;
  stageMs: number;
  switchMs: number;
}


async function startFleet(exe: string, n: number, mode: FleetMode, lib: string): Promise<{ pids: number[]; dispose(): void; output(): string }> {
  const t = startTarget([exe, String(n), mode], { LD_LIBRARY_PATH: lib });
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
  const ok = json.processes.filter((p: any) => mine.has(p.pid) && p.ok && p.result.outcome === outcome).length;
  if (ok !== pids.length) {
    const bad = json.processes.filter((p: any) => !p.ok).slice(0, 5);
    throw new Error(`--all: ${ok} of ${pids.length} processes ${outcome}; failures: ${JSON.stringify(bad)}`);
  }
  return ok;
}

/** runAll in this process, timing each process between onProcess callbacks. */
function perProcess(fix: string, which: 'forward' | 'reverse'): { times: number[]; pauses: number[]; searchMs: number; phases: Phases } {
  const bundle = readBundleFile(fix);
  const marks: number[] = [];
  const t0 = performance.now();
  const r = runAll(bundle, { which, onProcess: () => marks.push(performance.now()) });
  const end = performance.now();
  marks.push(end);
  const times = marks.slice(1).map((m, i) => m - marks[i]!);
  const failed = r.processes.filter((p) => !p.ok);
  if (failed.length) throw new Error(`runAll ${which}: ${failed.length} failed: ${JSON.stringify(failed.slice(0, 3))}`);
  const results = r.processes.flatMap((p) => (p.ok && p.result.switch ? [{ result: p.result, ms: times[r.processes.indexOf(p)]! }] : []));
  const phases: Phases = {
    readMs: median(results.map((x) => x.ms - x.result.switch!.timings.planMs - x.result.switch!.timings.stageMs - x.result.switch!.timings.switchMs)),
    planMs: median(results.map((x) => x.result.switch!.timings.planMs)),
    stageMs: median(results.map((x) => x.result.switch!.timings.stageMs)),
    switchMs: median(results.map((x) => x.result.switch!.timings.switchMs)),
  };
  return { times, pauses: r.processes.map((p) => (p.ok ? (p.result.pauseMs ?? 0) : 0)), searchMs: (marks[0] ?? end) - t0, phases };
}

export function renderAll(rows: AllRow[]): string {
  return markdownTable(
    ['processes', 'waiting in', 'on machine', 'apply: command', 'processes/s (apply)', 'revert: command', 'processes/s (revert)', 'per process median (apply)', 'per process worst (apply)', 'read / plan / stage / switch (medians)', 'per process median (revert)', 'search /proc', 'pause median / worst', 'load 1/5/15 min'],
    rows.map((r) => [
      String(r.processes),
      r.mode === 'wait' ? 'pause()' : 'nanosleep(1 s)',
      String(r.onMachine),
      fmtMs(r.apply.commandMs),
      ((r.processes / r.apply.commandMs) * 1000).toFixed(0),
      fmtMs(r.revert.commandMs),
      ((r.processes / r.revert.commandMs) * 1000).toFixed(0),
      fmtMs(r.perProcess.apply.median),
      fmtMs(r.perProcess.apply.worst),
      [r.phases.readMs, r.phases.planMs, r.phases.stageMs, r.phases.switchMs].map(fmtMs).join(' / '),
      fmtMs(r.perProcess.revert.median),
      fmtMs(r.searchMs),
      `${fmtMs(r.pauseMedianMs)} / ${fmtMs(r.pauseWorstMs)}`,
      r.loadAfter,
    ]),
  );
}

async function measure(exe: string, lib: string, fix: string, n: number, mode: FleetMode, profileIt: boolean): Promise<{ row: AllRow; profile?: Profile & { wallMs: number } }> {
  const loadBefore = loadAverage();
  // Fleet A: the command as users run it, first apply (stages the build in every process) and revert.
  let fleet = await startFleet(exe, n, mode, lib);
  let a, r, onMachine, applyOk, revertOk;
  try {
    onMachine = readdirSync('/proc').filter((e) => /^\d+$/.test(e)).length;
    const found = findProcesses(new Set([readBundleFile(fix).manifest.builds.old.buildId])).pids.length;
    if (found !== n) throw new Error(`the search found ${found} processes with the old build, expected ${n}`);
    a = runBin('trigger', ['--all', fix, '--json']);
    applyOk = checkAll(a.json, fleet.pids, 'applied');
    r = runBin('trigger', ['--all', fix, '--revert', '--json']);
    revertOk = checkAll(r.json, fleet.pids, 'reverted');
    if (/BAD/.test(fleet.output())) throw new Error('a fleet process computed a wrong result');
  } finally {
    fleet.dispose();
  }
  // Fleet B: the same work through runAll() in this process, timed per process.
  fleet = await startFleet(exe, n, mode, lib);
  let pa, pr;
  try {
    pa = perProcess(fix, 'forward');
    pr = perProcess(fix, 'reverse');
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
      const p = runProgram(process.execPath, ['--cpu-prof', '--cpu-prof-dir', dir, '--cpu-prof-interval', '200', BIN.trigger, '--all', fix, '--json']);
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
    onMachine,
    apply: { commandMs: a.ms, totalMs: a.json.totalMs, ok: applyOk },
    revert: { commandMs: r.ms, totalMs: r.json.totalMs, ok: revertOk },
    perProcess: { apply: summary(pa.times), revert: summary(pr.times) },
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
  ensureBuilt();
  const tag = `all-${process.pid}-${Date.now()}`;
  const w = workDir('bench-all');
  const rows: AllRow[] = [];
  let profile: (Profile & { wallMs: number; processes: number }) | undefined;
  try {
    const fix = pack(libdemo(1, tag), libdemo(2, tag), join(w.dir, 'fix.ulp'));
    const lib = libDir(w.dir, 'lib', { 'libdemo.so.1': libdemo(1, tag) });
    const exe = fleetProgram(tag);
    const runs: Array<[FleetMode, number]> = [...COUNTS.map((n): [FleetMode, number] => ['wait', n]), ...SLEEP_COUNTS.map((n): [FleetMode, number] => ['sleep', n])];
    for (const [mode, n] of runs) {
      const m = await measure(exe, lib, fix, n, mode, PROFILE && mode === 'wait' && n === Math.max(...COUNTS));
      rows.push(m.row);
      if (m.profile) profile = { ...m.profile, processes: n };
      const row = m.row;
      process.stderr.write(`  ${n} processes in ${mode}: apply ${fmtMs(row.apply.commandMs)} (totalMs ${fmtMs(row.apply.totalMs)}), revert ${fmtMs(row.revert.commandMs)}, per process median ${fmtMs(row.perProcess.apply.median)} (load ${row.loadAfter})\n`);
    }
    console.log(`ulp-trigger --all, apply then revert; per-process times from runAll() in the benchmark's own process\n`);
    console.log(renderAll(rows));
    if (profile) {
      console.log(`CPU profile of \`ulp-trigger --all\` (first apply) on ${profile.processes} processes: ${profile.wallMs} ms wall, ${profile.totalMs} ms sampled (idle included), self time:\n`);
      console.log(renderProfile(profile, 15));
    }
    writeJsonResult({ rows, profile: profile ?? null, processesArg: COUNTS, sleepProcessesArg: SLEEP_COUNTS });
  } finally {
    w.dispose();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
