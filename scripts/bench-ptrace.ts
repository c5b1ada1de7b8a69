/**
 * How long a process is stopped for the shortest useful switch: stop every
 * thread, make one remote system call, detach. Measured by the session
 * itself, from the first PTRACE_INTERRUPT to the last PTRACE_DETACH, for
 * 1, 8, 64 and 256 threads that are idle (sleeping, like most threads of a
 * server) and busy (spinning on the CPU, the worst case on a small machine).
 *
 *   npx tsx scripts/bench-ptrace.ts [--runs N]
 *
 * Attaching (PTRACE_SEIZE of every thread) stops nothing and is reported
 * separately. The stub page is created before the runs, as the trigger's
 * staging phase does. Side by side, alternating with the measured runs, the
 * "floor" is the same stop and detach made with bare ptrace calls and no
 * remote syscall: what the kernel (and, here, the VM's wake-up latency)
 * costs before any runtime logic.
 */
import { cpus, loadavg } from 'node:os';
import { NR, Session } from '../runtime/index.js';
import { listTasks } from '../runtime/procfs.js';
import * as pt from '../runtime/sys/ptrace.js';
import { waitThread } from '../runtime/sys/wait.js';
import { startFixture } from '../test/runtime/helpers.js';

const arg = (name: string) => {
  const i = process.argv.indexOf(name);
  return i < 0 ? undefined : process.argv[i + 1];
};
const baseRuns = Number(arg('--runs') ?? 200);

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
}

const fmt = (ms: number) => (ms < 1 ? `${(ms * 1000).toFixed(0)} µs` : `${ms.toFixed(2)} ms`);

interface Row {
  threads: number;
  mode: string;
  runs: number;
  attach: number;
  median: number;
  p90: number;
  worst: number;
  floor: number;
}

/** Interrupt every thread, wait for each stop, detach each: the bare kernel cost of a pause. */
function floorPause(pid: number): number {
  const tids = listTasks(pid)!;
  for (const tid of tids) pt.seize(tid, 1);
  const t0 = performance.now();
  for (const tid of tids) pt.interrupt(tid);
  for (const tid of tids) waitThread(tid, performance.now() + 5000);
  for (const tid of tids) pt.detach(tid, 0);
  return performance.now() - t0;
}

async function measure(threads: number, mode: 'idle' | 'busy'): Promise<Row> {
  const t = await startFixture('threads', mode === 'idle' ? [String(threads), 'idle'] : [String(threads)]);
  try {
    const warm = Session.open(t.pid);
    warm.borrow();
    warm.stub();
    warm.detach();
    const runs = Math.max(10, Math.round(baseRuns / Math.max(1, threads / 8)));
    const pauses: number[] = [];
    const attaches: number[] = [];
    const floors: number[] = [];
    for (let i = 0; i < runs; i++) {
      floors.push(floorPause(t.pid));
      const a0 = performance.now();
      const s = Session.open(t.pid);
      attaches.push(performance.now() - a0);
      s.stub(); // staging work: found without stopping anything
      s.stopAll();
      if (s.syscall(NR.getpid) !== BigInt(t.pid)) throw new Error('wrong getpid result');
      s.detach();
      const p = s.pauses.find((x) => x.kind === 'all')!;
      if (p.threads !== threads + 1) throw new Error(`stopped ${p.threads} threads, expected ${threads + 1}`);
      pauses.push(p.ms);
    }
    return { threads, mode, runs, attach: quantile(attaches, 0.5), median: quantile(pauses, 0.5), p90: quantile(pauses, 0.9), worst: Math.max(...pauses), floor: quantile(floors, 0.5) };
  } finally {
    t.dispose();
  }
}

const loadAtStart = loadavg()[0]!;
const rows: Row[] = [];
for (const mode of ['idle', 'busy'] as const) {
  for (const n of [1, 8, 64, 256]) rows.push(await measure(n, mode));
}

console.log(`pause = all threads stopped for stopAll + 1 remote syscall + detach (${cpus().length} CPUs, load average ${loadAtStart.toFixed(1)} at start)\n`);
const header = ['threads', 'workers', 'runs', 'attach (median)', 'pause median', 'pause p90', 'pause worst', 'floor median', 'median / floor'];
const table = rows.map((r) => [String(r.threads), r.mode, String(r.runs), fmt(r.attach), fmt(r.median), fmt(r.p90), fmt(r.worst), fmt(r.floor), (r.median / r.floor).toFixed(2)]);
const widths = header.map((h, i) => Math.max(h.length, ...table.map((row) => row[i]!.length)));
const line = (cells: string[]) => '| ' + cells.map((c, i) => c.padStart(widths[i]!)).join(' | ') + ' |';
console.log(line(header));
console.log('|' + widths.map((w) => '-'.repeat(w + 2)).join('|') + '|');
for (const r of table) console.log(line(r));
