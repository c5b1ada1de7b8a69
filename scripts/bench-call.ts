/**
 * The cost of a call into a patched library, against the same call before
 * the patch and against a function-entry trampoline, in one process run.
 *
 *   npx tsx scripts/bench-call.ts [--rounds N] [--calls N] [--json FILE]
 *
 * The program (test/fixtures/bench/callcost_main.c) times loops of calls to
 * libcall.so.1 through its PLT/GOT, itself, on request. Each round measures
 * three states of the same process, in an order that alternates between
 * rounds:
 *   unpatched   the loader's build (v1), as the process started;
 *   patched     after `ulp-trigger PID fix.ulp`: the GOT slot points at the
 *               v2 build the trigger mapped (reverted again afterwards);
 *   trampoline  the baseline the design avoids: v1 stays live and a jump to
 *               v2's copy of the function is written at v1's entry (what
 *               LibCare, upatch or kpatch do), made by the program itself.
 * The timed functions are identical in v1 and v2, so any difference is the
 * path of the call. Ratios are taken within each round, then the median
 * over rounds is reported, twice: from each state's median loop and from
 * its fastest loop (on a shared machine, interference only ever adds time,
 * so the fastest of the loops is the least disturbed estimate). With valgrind present, instruction counts per
 * call (callgrind, deterministic) of the three paths are reported too; the
 * "patched" path there is emulated by the program writing v2's address into
 * its own GOT slot, which is what the trigger's relink leaves behind.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startTarget, type Target } from '../lab/target.js';
import {
  arg,
  ensureBuilt,
  loadAverage,
  markdownTable,
  median,
  runBin,
  writeJsonResult,
} from '../lab/bench/common.js';
import { callcost, libDir, pack, workDir } from '../lab/bench/fixtures.js';
import { handleArgs } from '../lab/script-args.js';

const ROUNDS = Number(arg('--rounds') ?? 10);
const CALLS = Number(arg('--calls') ?? 20_000_000);
const REPS = 5;
const FNS = ['tiny', 'small'] as const;
type Fn = (typeof FNS)[number];
type State = 'unpatched' | 'patched' | 'trampoline';

export interface CallResult {
  rounds: number;
  callsPerLoop: number;
  /** ns per call: per function and state, the median over rounds of each round's median. */
  ns: Record<Fn, Record<State, number>>;
  /** Per function: median, lowest and highest over rounds of the per-round ratio to unpatched (median loops). */
  ratios: Record<Fn, Record<'patched' | 'trampoline', { median: number; min: number; max: number }>>;
  /** The same from each round's fastest loop of each state. */
  bestRatios: Record<Fn, Record<'patched' | 'trampoline', { median: number; min: number; max: number }>>;
  /** ns per call of the fastest loop over the whole run, per function and state. */
  bestNs: Record<Fn, Record<State, number>>;
  trampolineBytes: string;
  /** Instructions per call from callgrind, when valgrind is installed. */
  instructions: Record<'unpatched' | 'patched' | 'trampoline', number> | null;
  /** Every round's median ns per call, per function and state. */
  samples: Record<Fn, Record<State, number[]>>;
  /** Every round's fastest loop, ns per call. */
  bestSamples: Record<Fn, Record<State, number[]>>;
  loadBefore: string;
  loadAfter: string;
}

class Program {
  constructor(
    private readonly t: Target,
    private readonly fifo: string,
  ) {}

  /** Sends a command and returns the program's next line matching `answer`. */
  async ask(cmd: string, answer: RegExp): Promise<string> {
    const mark = this.t.output().length;
    writeFileSync(this.fifo, cmd + '\n');
    const out = await this.t.waitFor(
      (o) => answer.test(o.slice(mark)) || /^error/m.test(o.slice(mark)),
      120_000,
    );
    const line = out
      .slice(mark)
      .split('\n')
      .find((l) => answer.test(l) || l.startsWith('error'))!;
    if (line.startsWith('error')) throw new Error(`program: ${line}`);
    return line;
  }

  async measure(fn: Fn): Promise<{ ns: number; best: number; version: number }> {
    const line = await this.ask(
      `measure ${fn} ${fn === 'tiny' ? CALLS : CALLS / 8} ${REPS}`,
      new RegExp(`^result fn=${fn} `),
    );
    const loops = /ns=([\d.,]+)/.exec(line)![1]!.split(',').map(Number);
    return {
      ns: Number(/median=([\d.]+)/.exec(line)![1]),
      best: Math.min(...loops),
      version: Number(/version=(\d+)/.exec(line)![1]),
    };
  }
}

function trigger(pid: number, fix: string, revert: boolean): void {
  const r = runBin('trigger', [String(pid), fix, '--json', ...(revert ? ['--revert'] : [])]);
  const want = revert ? 'reverted' : 'applied';
  if (r.code !== 0 || r.json?.outcome !== want)
    throw new Error(`ulp-trigger ${revert ? '--revert' : ''}: ${r.stdout}${r.stderr}`);
}

/** Instructions per call of each path under callgrind (deterministic), or null without valgrind. */
function instructionCounts(exe: string, lib: string, v2: string): CallResult['instructions'] {
  if (spawnSync('valgrind', ['--version']).status !== 0) return null;
  const n = 200_000;
  const count = (mode: string) => {
    const r = spawnSync(
      'valgrind',
      [
        '--tool=callgrind',
        '--callgrind-out-file=/dev/null',
        '--collect-atstart=no',
        '--toggle-collect=loop_tiny',
        exe,
        '--count',
        mode,
        String(n),
        v2,
      ],
      {
        encoding: 'utf8',
        env: { ...process.env, LD_LIBRARY_PATH: lib },
      },
    );
    const m = /Collected : (\d+)/.exec(r.stderr);
    if (r.status !== 0 || !m) throw new Error(`callgrind ${mode}: ${r.stderr.slice(-800)}`);
    return Number(m[1]) / n;
  };
  return { unpatched: count('got'), patched: count('got-new'), trampoline: count('tramp') };
}

export function renderCall(r: CallResult): string {
  const rows: string[][] = [];
  const range = (x: { median: number; min: number; max: number }) =>
    `${x.median.toFixed(3)} (${x.min.toFixed(3)}–${x.max.toFixed(3)})`;
  for (const fn of FNS) {
    const name = fn === 'tiny' ? 'call_tiny (x*3+1)' : 'call_small (16-step loop)';
    rows.push([
      `${name}, median loop`,
      r.ns[fn].unpatched.toFixed(3),
      r.ns[fn].patched.toFixed(3),
      r.ns[fn].trampoline.toFixed(3),
      range(r.ratios[fn].patched),
      range(r.ratios[fn].trampoline),
    ]);
    if (r.bestRatios)
      rows.push([
        `${name}, fastest loop`,
        r.bestNs[fn].unpatched.toFixed(3),
        r.bestNs[fn].patched.toFixed(3),
        r.bestNs[fn].trampoline.toFixed(3),
        range(r.bestRatios[fn].patched),
        range(r.bestRatios[fn].trampoline),
      ]);
  }
  if (r.instructions) {
    const i = r.instructions;
    rows.push([
      'instructions per call (callgrind, call_tiny)',
      i.unpatched.toFixed(2),
      i.patched.toFixed(2),
      i.trampoline.toFixed(2),
      (i.patched / i.unpatched).toFixed(3),
      (i.trampoline / i.unpatched).toFixed(3),
    ]);
  }
  return markdownTable(
    [
      'function, estimate',
      'unpatched ns/call',
      'patched ns/call',
      'trampoline ns/call',
      'patched / unpatched, per round: median (range)',
      'trampoline / unpatched, per round: median (range)',
    ],
    rows,
  );
}

async function main(): Promise<void> {
  handleArgs(import.meta.url, { values: ['--rounds', '--calls', '--json'] });
  ensureBuilt();
  const tag = `call-${process.pid}-${Date.now()}`;
  const w = workDir('bench-call');
  try {
    const { v1, v2, exe } = callcost(tag);
    const fix = pack(v1, v2, join(w.dir, 'fix.ulp'));
    const lib = libDir(w.dir, 'lib', { 'libcall.so.1': v1 });
    const v2copy = join(w.dir, 'libcall-v2-for-trampoline.so');
    copyFileSync(v2, v2copy);
    const fifo = join(w.dir, 'ctl');
    execFileSync('mkfifo', [fifo]);
    const loadBefore = loadAverage();
    const t = startTarget([exe, fifo, v2copy], { LD_LIBRARY_PATH: lib });
    const samples: Record<Fn, Record<State, number[]>> = {
      tiny: { unpatched: [], patched: [], trampoline: [] },
      small: { unpatched: [], patched: [], trampoline: [] },
    };
    const bestSamples: Record<Fn, Record<State, number[]>> = {
      tiny: { unpatched: [], patched: [], trampoline: [] },
      small: { unpatched: [], patched: [], trampoline: [] },
    };
    let trampolineBytes = '';
    try {
      await t.waitFor((o) => /^ready/m.test(o));
      const p = new Program(t, fifo);
      const measureAll = async (state: State, version: number) => {
        for (const fn of FNS) {
          const m = await p.measure(fn);
          if (m.version !== version)
            throw new Error(`${state}: the program runs version ${m.version}, expected ${version}`);
          samples[fn][state].push(m.ns);
          bestSamples[fn][state].push(m.best);
        }
      };
      const steps: Record<State, () => Promise<void>> = {
        unpatched: () => measureAll('unpatched', 1),
        trampoline: async () => {
          trampolineBytes = /bytes=(\S+)/.exec(await p.ask('tramp on', /^tramp on/))![1]!;
          await measureAll('trampoline', 1);
          await p.ask('tramp off', /^tramp off/);
        },
        patched: async () => {
          trigger(t.pid, fix, false);
          await measureAll('patched', 2);
          trigger(t.pid, fix, true);
        },
      };
      const orders: State[][] = [
        ['unpatched', 'patched', 'trampoline'],
        ['patched', 'trampoline', 'unpatched'],
        ['trampoline', 'unpatched', 'patched'],
      ];
      for (let round = 0; round < ROUNDS; round++) {
        for (const s of orders[round % orders.length]!) await steps[s]();
        process.stderr.write(
          `  round ${round + 1}/${ROUNDS}: tiny ${samples.tiny.unpatched.at(-1)!.toFixed(3)} / ${samples.tiny.patched.at(-1)!.toFixed(3)} / ${samples.tiny.trampoline.at(-1)!.toFixed(3)} ns (load ${loadAverage()})\n`,
        );
      }
      await p.ask('quit', /^$/).catch(() => undefined);
    } finally {
      t.dispose();
    }
    const ratio = (fn: Fn, s: 'patched' | 'trampoline', from = samples) => {
      const xs = from[fn][s].map((v, i) => v / from[fn].unpatched[i]!);
      return { median: median(xs), min: Math.min(...xs), max: Math.max(...xs) };
    };
    const result: CallResult = {
      rounds: ROUNDS,
      callsPerLoop: CALLS,
      ns: Object.fromEntries(
        FNS.map((fn) => [
          fn,
          {
            unpatched: median(samples[fn].unpatched),
            patched: median(samples[fn].patched),
            trampoline: median(samples[fn].trampoline),
          },
        ]),
      ) as CallResult['ns'],
      ratios: Object.fromEntries(
        FNS.map((fn) => [fn, { patched: ratio(fn, 'patched'), trampoline: ratio(fn, 'trampoline') }]),
      ) as CallResult['ratios'],
      bestRatios: Object.fromEntries(
        FNS.map((fn) => [
          fn,
          { patched: ratio(fn, 'patched', bestSamples), trampoline: ratio(fn, 'trampoline', bestSamples) },
        ]),
      ) as CallResult['bestRatios'],
      bestNs: Object.fromEntries(
        FNS.map((fn) => [
          fn,
          {
            unpatched: Math.min(...bestSamples[fn].unpatched),
            patched: Math.min(...bestSamples[fn].patched),
            trampoline: Math.min(...bestSamples[fn].trampoline),
          },
        ]),
      ) as CallResult['bestNs'],
      trampolineBytes,
      instructions: instructionCounts(exe, lib, v2copy),
      samples,
      bestSamples,
      loadBefore,
      loadAfter: loadAverage(),
    };
    console.log(
      `cost of a call through the executable's PLT/GOT, ${ROUNDS} rounds in one process, ${REPS} loops per state and round (jump written at the old entry: ${trampolineBytes} bytes)\n`,
    );
    console.log(renderCall(result));
    writeJsonResult(result);
  } finally {
    w.dispose();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
