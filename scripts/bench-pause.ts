/**
 * The pause: how long every thread of a process is stopped when a patch is
 * applied or reverted, as the trigger itself reports it (`--json`: pauseMs,
 * the longest `all` pause of switch.pauses), against the number of threads
 * and of loaded objects.
 *
 *   npx tsx scripts/bench-pause.ts [--threads 1,8,64,256] [--objects 10,50,200]
 *                                  [--cycles N] [--json FILE]
 *
 * For each (threads, objects): a program with that many threads (each calls
 * libdemo through one of the generated libraries every 5 ms) and that many
 * objects in its link map (generated libraries, each importing
 * demo_compute, plus the executable, libdemo, libc and ld.so) is started;
 * the first apply (which stages the new build and makes the data shared) is
 * reported on its own; then N apply/revert cycles, run back to back with
 * the compiled ulp-trigger, give the medians and the worst. The program
 * checks every result of every call; a wrong one fails the benchmark.
 */
import { join } from 'node:path';
import { startTarget } from '../test/helpers/target.js';
import { arg, ensureBuilt, fmtMs, loadAverage, markdownTable, numbers, runBin, summary, writeJsonResult, type Summary } from './bench/common.js';
import { libdemo, libDir, pack, pauseProgram, workDir } from './bench/fixtures.js';

const THREADS = numbers('--threads', [1, 8, 64, 256]);
const OBJECTS = numbers('--objects', [10, 50, 200]);
const CYCLES = Number(arg('--cycles') ?? 15);
/** Objects in the link map besides the generated libraries: the executable, libdemo, libc, ld.so. */
const BASE_OBJECTS = 4;

export interface PauseRow {
  threads: number;
  objects: number;
  /** Threads the trigger stopped (from switch.pauses). */
  stopped: number;
  /** Slots the apply rewrote. */
  rewritten: number;
  first: { pauseMs: number; stageMs: number; commandMs: number };
  apply: Summary;
  revert: Summary;
  commandMs: Summary;
  loadBefore: string;
  loadAfter: string;
}

function trigger(pid: number, fix: string, revert: boolean): { pauseMs: number; json: any; ms: number } {
  const r = runBin('trigger', [String(pid), fix, '--json', ...(revert ? ['--revert'] : [])]);
  if (r.code !== 0 || !r.json?.switch) throw new Error(`ulp-trigger ${revert ? '--revert ' : ''}exited ${r.code}:\n${r.stdout}\n${r.stderr}`);
  return { pauseMs: r.json.pauseMs, json: r.json, ms: r.ms };
}

async function measure(threads: number, objects: number, tag: string, fix: string, dir: string): Promise<PauseRow> {
  const loadBefore = loadAverage();
  const prog = pauseProgram(Math.max(0, objects - BASE_OBJECTS), tag);
  const lib = libDir(dir, `run-${threads}-${objects}`, { 'libdemo.so.1': libdemo(1, tag), ...prog.libs });
  const t = startTarget([prog.exe, String(threads)], { LD_LIBRARY_PATH: lib });
  try {
    await t.waitFor((o) => /^ready/m.test(o), 60_000);
    const st = runBin('trigger', ['--status', String(t.pid), '--json']);
    const loaded = st.json?.objects?.length ?? NaN;
    const first = trigger(t.pid, fix, false);
    const firstBorrow = first.json.switch.pauses.filter((p: { kind: string }) => p.kind === 'borrow').reduce((n: number, p: { ms: number }) => n + p.ms, 0);
    const stopped = Math.max(...first.json.switch.pauses.filter((p: { kind: string }) => p.kind === 'all').map((p: { threads: number }) => p.threads));
    const rewritten = first.json.switch.rewritten;
    trigger(t.pid, fix, true);
    const apply: number[] = [];
    const revert: number[] = [];
    const command: number[] = [];
    for (let i = 0; i < CYCLES; i++) {
      const a = trigger(t.pid, fix, false);
      const r = trigger(t.pid, fix, true);
      apply.push(a.pauseMs);
      revert.push(r.pauseMs);
      command.push(a.ms, r.ms);
    }
    // Every call the program made was checked; a wrong result is a failed benchmark, not a number.
    const mark = t.output().length;
    const out = await t.waitFor((o) => /bad=\d+/.test(o.slice(mark)), 30_000);
    const bad = Number(/bad=(\d+)/.exec(out.slice(mark))![1]);
    if (bad !== 0 || !t.alive()) throw new Error(`the program saw ${bad} wrong results (alive: ${t.alive()})`);
    return {
      threads,
      objects: loaded,
      stopped,
      rewritten,
      first: { pauseMs: first.pauseMs, stageMs: firstBorrow, commandMs: first.ms },
      apply: summary(apply),
      revert: summary(revert),
      commandMs: summary(command),
      loadBefore,
      loadAfter: loadAverage(),
    };
  } finally {
    t.dispose();
  }
}

export function renderPause(rows: PauseRow[]): string {
  return markdownTable(
    ['threads', 'objects', 'slots', 'first apply pause', 'apply median', 'apply worst', 'revert median', 'revert worst', 'command median', 'load 1/5/15 min'],
    rows.map((r) => [String(r.threads), String(r.objects), String(r.rewritten), fmtMs(r.first.pauseMs), fmtMs(r.apply.median), fmtMs(r.apply.worst), fmtMs(r.revert.median), fmtMs(r.revert.worst), fmtMs(r.commandMs.median), r.loadAfter]),
  );
}

async function main(): Promise<void> {
  ensureBuilt();
  const tag = `pause-${process.pid}-${Date.now()}`;
  const w = workDir('bench-pause');
  try {
    const fix = pack(libdemo(1, tag), libdemo(2, tag), join(w.dir, 'fix.ulp'));
    const rows: PauseRow[] = [];
    process.stderr.write(`bench-pause: ${THREADS.length * OBJECTS.length} configurations, ${CYCLES} apply/revert cycles each (load ${loadAverage()})\n`);
    for (const objects of OBJECTS) {
      for (const threads of THREADS) {
        const row = await measure(threads, objects, tag, fix, w.dir);
        rows.push(row);
        process.stderr.write(`  threads=${threads} objects=${row.objects}: apply median ${fmtMs(row.apply.median)} worst ${fmtMs(row.apply.worst)}, revert median ${fmtMs(row.revert.median)} worst ${fmtMs(row.revert.worst)} (load ${row.loadAfter})\n`);
      }
    }
    console.log(`pause = every thread stopped (the trigger's pauseMs), ${CYCLES} apply/revert cycles per row after a first apply\n`);
    console.log(renderPause(rows));
    writeJsonResult({ cycles: CYCLES, rows });
  } finally {
    w.dispose();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
