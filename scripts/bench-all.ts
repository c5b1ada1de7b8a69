/**
 * `ulp-trigger --all` on many processes: total time of the command and the
 * time per process, for 100 and 1000 processes (libpulp reports about 4000
 * processes in 4 s, 1 ms per process).
 *
 *   npx tsx scripts/bench-all.ts [--processes 100,1000] [--profile] [--json FILE]
 *
 * The fleet is one small program (test/fixtures/bench/fleet_main.c) forked
 * into N processes, each with libdemo loaded and calling it once a second.
 * For each N:
 *   - the compiled `ulp-trigger --all FIX --json`, apply then revert: the
 *     command's wall time (node start included) and its own totalMs;
 *   - the same work in this process through runAll() (what the command
 *     runs), timing each process from one onProcess callback to the next:
 *     the per-process median and worst, and the search over /proc;
 *   - with --profile, a CPU profile of the command (node --cpu-prof) for the
 *     largest N, summarised by self time per function and per source file.
 * Every process must end up switched: a failure fails the benchmark.
 */
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { readBundleFile } from '../patches/index.js';
import { findProcesses, runAll } from '../trigger/all.js';
import { startTarget } from '../test/helpers/target.js';
import { arg, BIN, BENCH_DIR, ensureBuilt, flag, fmtMs, loadAverage, markdownTable, median, numbers, runBin, runProgram, summary, writeJsonResult, type Summary } from './bench/common.js';
import { fleetProgram, libdemo, libDir, pack, workDir } from './bench/fixtures.js';

const COUNTS = numbers('--processes', [100, 1000]);
const PROFILE = flag('--profile');

export interface AllRow {
  processes: number;
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

export interface ProfileEntry {
  name: string;
  selfMs: number;
  share: number;
}

async function startFleet(exe: string, n: number, lib: string): Promise<{ pids: number[]; dispose(): void; output(): string }> {
  const t = startTarget([exe, String(n)], { LD_LIBRARY_PATH: lib });
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

/** Self time per function and per file from a .cpuprofile (V8's sampled call tree). */
export function summariseProfile(file: string, top = 15): { functions: ProfileEntry[]; files: ProfileEntry[]; totalMs: number } {
  const prof = JSON.parse(readFileSync(file, 'utf8')) as {
    nodes: Array<{ id: number; callFrame: { functionName: string; url: string; lineNumber: number } }>;
    samples: number[];
    timeDeltas: number[];
  };
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  prof.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (prof.timeDeltas[i] ?? 0) / 1000));
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  const fn = new Map<string, number>();
  const files = new Map<string, number>();
  for (const [id, ms] of self) {
    const cf = byId.get(id)!.callFrame;
    const file = cf.url.replace(/^file:\/\//, '').replace(/^.*\/work\/main\//, '').replace(/^.*\/node_modules\//, 'node_modules/') || '(native)';
    const name = `${cf.functionName || '(anonymous)'} ${file}${cf.url ? `:${cf.lineNumber + 1}` : ''}`;
    fn.set(name, (fn.get(name) ?? 0) + ms);
    files.set(file, (files.get(file) ?? 0) + ms);
  }
  const list = (m: Map<string, number>) =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, ms]) => ({ name, selfMs: Math.round(ms), share: ms / total }));
  return { functions: list(fn), files: list(files), totalMs: Math.round(total) };
}

export function renderAll(rows: AllRow[]): string {
  return markdownTable(
    ['processes', 'on machine', 'apply: command', 'apply: totalMs', 'revert: command', 'processes/s (apply)', 'per process median (apply)', 'per process worst (apply)', 'read / plan / stage / switch (medians)', 'per process median (revert)', 'search /proc', 'pause median', 'load 1/5/15 min'],
    rows.map((r) => [
      String(r.processes),
      String(r.onMachine),
      fmtMs(r.apply.commandMs),
      fmtMs(r.apply.totalMs),
      fmtMs(r.revert.commandMs),
      ((r.processes / r.apply.commandMs) * 1000).toFixed(0),
      fmtMs(r.perProcess.apply.median),
      fmtMs(r.perProcess.apply.worst),
      [r.phases.readMs, r.phases.planMs, r.phases.stageMs, r.phases.switchMs].map(fmtMs).join(' / '),
      fmtMs(r.perProcess.revert.median),
      fmtMs(r.searchMs),
      fmtMs(r.pauseMedianMs),
      r.loadAfter,
    ]),
  );
}

async function main(): Promise<void> {
  ensureBuilt();
  const tag = `all-${process.pid}-${Date.now()}`;
  const w = workDir('bench-all');
  const rows: AllRow[] = [];
  let profile: (ReturnType<typeof summariseProfile> & { wallMs: number }) | undefined;
  try {
    const fix = pack(libdemo(1, tag), libdemo(2, tag), join(w.dir, 'fix.ulp'));
    const lib = libDir(w.dir, 'lib', { 'libdemo.so.1': libdemo(1, tag) });
    const exe = fleetProgram(tag);
    for (const n of COUNTS) {
      const loadBefore = loadAverage();
      // Fleet A: the command as users run it, first apply (stages the build in every process) and revert.
      let fleet = await startFleet(exe, n, lib);
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
      fleet = await startFleet(exe, n, lib);
      let pa, pr;
      try {
        pa = perProcess(fix, 'forward');
        pr = perProcess(fix, 'reverse');
        if (/BAD/.test(fleet.output())) throw new Error('a fleet process computed a wrong result');
      } finally {
        fleet.dispose();
      }
      if (PROFILE && n === Math.max(...COUNTS)) {
        // Fleet C: a CPU profile of the command's first apply.
        fleet = await startFleet(exe, n, lib);
        try {
          const dir = join(BENCH_DIR, 'profile');
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
      rows.push(row);
      process.stderr.write(`  ${n} processes: apply ${fmtMs(a.ms)} (totalMs ${fmtMs(a.json.totalMs)}), revert ${fmtMs(r.ms)}, per process median ${fmtMs(row.perProcess.apply.median)} (load ${row.loadAfter})\n`);
    }
    console.log(`ulp-trigger --all, apply then revert; per-process times from runAll() in the benchmark's own process\n`);
    console.log(renderAll(rows));
    if (profile) {
      console.log(`CPU profile of \`ulp-trigger --all\` (first apply) on ${Math.max(...COUNTS)} processes: ${profile.wallMs} ms wall, ${profile.totalMs} ms on the CPU (the rest is waiting for the targets), self time:\n`);
      console.log(markdownTable(['file', 'self ms', 'share'], profile.files.map((f) => [f.name, String(f.selfMs), `${(f.share * 100).toFixed(1)} %`])));
      console.log(markdownTable(['function', 'self ms', 'share'], profile.functions.map((f) => [f.name, String(f.selfMs), `${(f.share * 100).toFixed(1)} %`])));
    }
    writeJsonResult({ rows, profile: profile ?? null, processesArg: COUNTS, arg: arg('--processes') ?? null });
  } finally {
    w.dispose();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
