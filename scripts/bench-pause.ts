/**
 * The pause: how long every thread of a process is stopped when a patch is
 * applied or reverted, as the trigger itself reports it (`--json`: pauseMs,
 * the longest `all` pause of switch.pauses), against the number of threads
 * and of loaded objects.
 *
 *   npx tsx scripts/bench-pause.ts [--threads 1,8,64,256] [--objects 10,50,200]
 *                                  [--cycles N] [--profile] [--json FILE]
 *                                  [--cases crypto,blocked | --only-cases]
 *
 * For each (threads, objects): a program with that many threads (each calls
 * libdemo through one of the generated libraries every 5 ms) and that many
 * objects in its link map (generated libraries, each importing
 * demo_compute, plus the executable, libdemo, libc and ld.so) is started;
 * the first apply (which stages the new build and makes the data shared) is
 * reported on its own; then N apply/revert cycles, run back to back with
 * the compiled ulp-trigger, give the medians and the worst. The program
 * checks every result of every call; a wrong one fails the benchmark.
 *
 * With --profile, on the configuration with the most objects and 8 threads
 * (or the nearest thread count): three more applies of the compiled
 * ulp-trigger under `node --cpu-prof` (sampled every 50 µs), reduced to the
 * inclusive time of the functions that run inside the pause, and the cost
 * of the primitives the switch uses on that process's own GOT slots
 * (bench/switch-costs.ts). That is where the time of a long pause goes.
 *
 * Then the entry redirects' share of the pause (bench/redirect-share.ts): the
 * real libcrypto 3.0.19 -> 3.0.20 bundle (hundreds of jumps) in python3
 * doing TLS, beside libdemo's (a few), as the time spent writing jumps and
 * journal over the pause, with the switch's own phases (stop, read back,
 * resume). `--redirects-only` runs that section alone; it is left out, with
 * the reason, when the real builds are not there.
 *
 * Then the real cases (--cases LIST, default all four; --only-cases skips the
 * grid), the Debian builds 3.0.19 -> 3.0.20 in Debian's python3
 * (bench/real-openssl.ts) and a C program:
 *   crypto          the libcrypto bundle, python3 with 8 threads hashing;
 *   ssl             the libssl bundle, python3 doing TLS handshakes, hashes
 *                   and HMACs (test/fixtures/real/openssl_loop.py);
 *   blocked         libdemo, a 27-thread C program whose threads all block
 *                   (futex, nanosleep, epoll_wait, read, sigwaitinfo);
 *   crypto-blocked  the libcrypto bundle, python3 with 27 threads all
 *                   blocked (futex, clock_nanosleep, select, read, sigwait);
 *   ssl-blocked     the libssl bundle in the same 27-thread python3.
 * Each apply and revert is set beside its floor, measured right after it on
 * the same process (bench/pause-floor.ts: stop, the same pages read and the
 * same number of writes, resume), and the command's wall time is the apply
 * wall time a user sees, beside node's own start (an empty script). A case
 * that cannot run here (no real builds, no python3) is listed with the
 * reason in the JSON's `casesSkipped`.
 */
import { mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { readBundleFile } from '../patches/index.js';
import { runOne } from '../trigger/apply.js';
import { startTarget } from '../lab/target.js';
import {
  arg,
  BENCH_DIR,
  BIN,
  ensureBuilt,
  flag,
  fmtMs,
  loadAverage,
  markdownTable,
  median,
  numbers,
  quantile,
  runBin,
  runProgram,
  summary,
  writeJsonResult,
  type Summary,
} from '../lab/bench/common.js';
import { libdemo, libDir, pack, pauseProgram, workDir } from '../lab/bench/fixtures.js';
import { freshDir, profileIn } from '../lab/bench/profile.js';
import { measureSwitchCosts, SWITCH_PRIMITIVES, type SwitchCosts } from '../lab/bench/switch-costs.js';
import { measureShare, renderShare, type ShareRow } from '../lab/bench/redirect-share.js';
import { pauseFloor } from '../lab/bench/pause-floor.js';
import { realOpenSslTarget } from '../lab/bench/real-openssl.js';
import { compile } from '../lab/compile.js';
import { handleArgs } from '../lab/script-args.js';

const THREADS = numbers('--threads', [1, 8, 64, 256]);
const OBJECTS = numbers('--objects', [10, 50, 200]);
const CYCLES = Number(arg('--cycles') ?? 15);
const PROFILE = flag('--profile');
const REDIRECTS_ONLY = flag('--redirects-only');
/** The real cases, in the order they run. */
export const CASE_NAMES = ['crypto', 'ssl', 'blocked', 'crypto-blocked', 'ssl-blocked'] as const;
export type CaseName = (typeof CASE_NAMES)[number];
const CASES = (arg('--cases')?.split(',').filter(Boolean) ?? [...CASE_NAMES]) as CaseName[];
const ONLY_CASES = flag('--only-cases');
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

/**
 * The functions that run only while every thread is stopped: Session.stopAll,
 * the first switch's aliasCanonical, and switchInPause (runtime/loader/switch.ts).
 * Their subtrees are the pause, but for resume() (Session.resume also ends
 * the staging's borrow, so a profile cannot tell the two apart by name).
 */
const PAUSE_ROOTS = /^(stopAll|aliasCanonical|switchInPause)$/;

export interface PauseProfile {
  threads: number;
  objects: number;
  slots: number;
  /** The trigger's pauseMs of each profiled apply (the profiler slows it down a little). */
  pausesMs: number[];
  /** Median over the profiled applies of the inclusive ms of each function in the subtrees of PAUSE_ROOTS (the 15 largest). */
  inPause: Array<{ name: string; ms: number }>;
  costs: SwitchCosts;
  /**
   * The same apply/revert cycles made by this process through runOne (what
   * the command runs): the first with the switch code not yet compiled by
   * V8 here, the others with it warm. The command is a fresh process, so
   * every pause it reports is a first one.
   */
  inProcess: { firstApplyMs: number; applyMedianMs: number; revertMedianMs: number; cycles: number };
}

function trigger(pid: number, fix: string, revert: boolean): { pauseMs: number; json: any; ms: number } {
  const r = runBin('trigger', [String(pid), fix, '--json', ...(revert ? ['--revert'] : [])]);
  if (r.code !== 0 || !r.json?.switch)
    throw new Error(`ulp-trigger ${revert ? '--revert ' : ''}exited ${r.code}:\n${r.stdout}\n${r.stderr}`);
  return { pauseMs: r.json.pauseMs, json: r.json, ms: r.ms };
}

/** Applies under the CPU profiler (then reverts), and the switch primitives on the same process. */
function profilePause(
  pid: number,
  fix: string,
  row: { threads: number; objects: number; slots: number },
): PauseProfile {
  const pausesMs: number[] = [];
  const per = new Map<string, number[]>();
  const runs = 3;
  for (let i = 0; i < runs; i++) {
    const dir = freshDir(join(BENCH_DIR, 'profile-pause'));
    const r = runProgram(process.execPath, [
      '--cpu-prof',
      '--cpu-prof-dir',
      dir,
      '--cpu-prof-interval',
      '50',
      BIN.trigger,
      String(pid),
      fix,
      '--json',
    ]);
    if (r.code !== 0 || !r.json?.switch)
      throw new Error(`ulp-trigger under --cpu-prof exited ${r.code}: ${r.stderr.slice(-500)}`);
    pausesMs.push(r.json.pauseMs);
    // Names without line numbers (function and file): two functions of one name in one file add up.
    const here = new Map<string, number>();
    for (const e of profileIn(dir, 15, PAUSE_ROOTS).inclusive) {
      const fn = e.name.replace(/^(\S+) (?:dist\/)?(\S+?):\d+$/, '$1 $2');
      here.set(fn, (here.get(fn) ?? 0) + e.selfMs);
    }
    for (const [fn, ms] of here) per.set(fn, [...(per.get(fn) ?? []), ms]);
    trigger(pid, fix, true);
  }
  // A function absent from a profile took less than a sample there.
  const inPause = [...per]
    .map(([name, xs]) => ({ name, ms: median([...xs, ...Array(runs - xs.length).fill(0)]) }))
    .filter((e) => e.ms > 0)
    .sort((a, b) => b.ms - a.ms)
    .slice(0, 15);
  const bundle = readBundleFile(fix);
  const applies: number[] = [];
  const reverts: number[] = [];
  const cycles = 8;
  for (let i = 0; i < cycles; i++) {
    const a = runOne(pid, bundle, { which: 'forward' });
    const r = runOne(pid, bundle, { which: 'reverse' });
    if (
      a.outcome !== 'applied' ||
      r.outcome !== 'reverted' ||
      a.pauseMs === undefined ||
      r.pauseMs === undefined
    )
      throw new Error(`in-process cycle ${i}: ${a.outcome} / ${r.outcome}`);
    applies.push(a.pauseMs);
    reverts.push(r.pauseMs);
  }
  const inProcess = {
    firstApplyMs: applies[0]!,
    applyMedianMs: median(applies.slice(1)),
    revertMedianMs: median(reverts.slice(1)),
    cycles,
  };
  return { ...row, pausesMs, inPause, costs: measureSwitchCosts(pid, 'demo_compute'), inProcess };
}

export function renderPauseProfile(p: PauseProfile): string {
  const fmt = (ms: number) => (ms < 1 ? `${(ms * 1000).toFixed(0)} µs` : `${ms.toFixed(2)} ms`);
  const inside = markdownTable(
    [
      'inside the pause: stopAll, switchInPause and what they call (inclusive ms, median of 3 profiled applies)',
      'ms',
    ],
    p.inPause.map((e) => [e.name, e.ms.toFixed(2)]),
  );
  const c = p.costs;
  const costs = markdownTable(
    [
      `primitive, on the ${c.slots} GOT slots of ${c.symbol} (median of ${c.repetitions} stops)`,
      'all slots',
      'per slot',
    ],
    [
      ['stopAll()', fmt(c.stopMs), '-'],
      ...SWITCH_PRIMITIVES.map((k) => [k, fmt(c.ms[k]), fmt(c.ms[k] / c.slots)]),
      ['resume()', fmt(c.resumeMs), '-'],
    ],
  );
  const w = p.inProcess;
  const warm = markdownTable(
    ['the same switch, made from one long-lived process (runOne)', 'pause'],
    [
      ['first apply (switch code cold in V8, like every run of the command)', fmt(w.firstApplyMs)],
      [`apply, median of the next ${w.cycles - 1} (code warm)`, fmt(w.applyMedianMs)],
      [`revert, median of the next ${w.cycles - 1} (code warm)`, fmt(w.revertMedianMs)],
    ],
  );
  return `${inside}\n${costs}\n${warm}`;
}

async function measure(
  threads: number,
  objects: number,
  tag: string,
  fix: string,
  dir: string,
  profileIt = false,
): Promise<PauseRow & { profile?: PauseProfile }> {
  const loadBefore = loadAverage();
  const prog = pauseProgram(Math.max(0, objects - BASE_OBJECTS), tag);
  const lib = libDir(dir, `run-${threads}-${objects}`, { 'libdemo.so.1': libdemo(1, tag), ...prog.libs });
  const t = startTarget([prog.exe, String(threads)], { LD_LIBRARY_PATH: lib });
  try {
    await t.waitFor((o) => /^ready/m.test(o), 60_000);
    const st = runBin('trigger', ['--status', String(t.pid), '--json']);
    const loaded = st.json?.objects?.length ?? NaN;
    const first = trigger(t.pid, fix, false);
    const firstBorrow = first.json.switch.pauses
      .filter((p: { kind: string }) => p.kind === 'borrow')
      .reduce((n: number, p: { ms: number }) => n + p.ms, 0);
    const stopped = Math.max(
      ...first.json.switch.pauses
        .filter((p: { kind: string }) => p.kind === 'all')
        .map((p: { threads: number }) => p.threads),
    );
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
    if (bad !== 0 || !t.alive())
      throw new Error(`the program saw ${bad} wrong results (alive: ${t.alive()})`);
    if (stopped !== threads)
      throw new Error(`the trigger stopped ${stopped} threads, the program has ${threads}`);
    const profile = profileIt
      ? profilePause(t.pid, fix, { threads, objects: loaded, slots: rewritten })
      : undefined;
    if (profile) {
      const mark2 = t.output().length;
      const out2 = await t.waitFor((o) => /bad=\d+/.test(o.slice(mark2)), 30_000);
      const bad2 = Number(/bad=(\d+)/.exec(out2.slice(mark2))![1]);
      if (bad2 !== 0 || !t.alive())
        throw new Error(`after profiling, the program saw ${bad2} wrong results (alive: ${t.alive()})`);
    }
    return {
      ...(profile ? { profile } : {}),
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
    [
      'threads',
      'objects',
      'slots',
      'first apply pause',
      'apply median',
      'apply worst',
      'revert median',
      'revert worst',
      'command median',
      'load 1/5/15 min',
    ],
    rows.map((r) => [
      String(r.threads),
      String(r.objects),
      String(r.rewritten),
      fmtMs(r.first.pauseMs),
      fmtMs(r.apply.median),
      fmtMs(r.apply.worst),
      fmtMs(r.revert.median),
      fmtMs(r.revert.worst),
      fmtMs(r.commandMs.median),
      r.loadAfter,
    ]),
  );
}

/** The redirects' share of the pause, many (real libcrypto) beside few (libdemo), or why the real side cannot run. */
async function redirectShare(
  tag: string,
  demoFix: string,
  dir: string,
): Promise<{ rows: ShareRow[]; skipped?: string }> {
  const rows: ShareRow[] = [];
  const prog = pauseProgram(0, tag);
  const demo = startTarget([prog.exe, '1'], {
    LD_LIBRARY_PATH: libDir(dir, 'share-demo', { 'libdemo.so.1': libdemo(1, tag), ...prog.libs }),
  });
  try {
    await demo.waitFor((o) => /^ready/m.test(o), 60_000);
    rows.push(measureShare(demo.pid, demoFix, 'libdemo 1 -> 2', CYCLES));
    const mark = demo.output().length;
    const out = await demo.waitFor((o) => /bad=\d+/.test(o.slice(mark)), 30_000);
    if (Number(/bad=(\d+)/.exec(out.slice(mark))![1]) !== 0 || !demo.alive())
      throw new Error('the libdemo program saw wrong results');
  } finally {
    demo.dispose();
  }
  const crypto = await realOpenSslTarget(mkdtempSync(join(dir, 'share-crypto-')), 'crypto', 'tls');
  if (typeof crypto === 'string') return { rows, skipped: crypto };
  try {
    rows.push(
      measureShare(crypto.target.pid, crypto.fix, 'libcrypto 3.0.19 -> 3.0.20 (python3, TLS)', CYCLES),
    );
    await crypto.check();
  } finally {
    crypto.target.dispose();
  }
  return { rows };
}

export interface CaseRow {
  /** Which case (CASE_NAMES) and what it is. */
  key: CaseName;
  name: string;
  threads: number;
  /** Every thread of the process blocks in a system call: the apply wall time goal's case. */
  allBlocked: boolean;
  /** Slot words and redirect jumps of an apply; pages read back and write calls in its pause. */
  words: number;
  jumps: number;
  pages: number;
  writes: number;
  first: { pauseMs: number; commandMs: number };
  pause: Summary & { p99: number };
  floor: Summary & { p99: number };
  bare: Summary;
  /** Median pause / median floor. */
  ratio: number;
  commandMs: Summary;
  /** node starting an empty script, the least any run of the command takes (median of 3). */
  nodeStartMs: number;
  loadBefore: string;
  loadAfter: string;
}

interface CaseTarget {
  pid: number;
  threads: number;
  fix: string;
  name: string;
  allBlocked: boolean;
  /** Throws when the target is not behaving (a wrong result, or gone); `live` is the version that should run. */
  check(live: 'old' | 'new'): Promise<void>;
  dispose(): void;
}

async function blockedCase(dir: string, tag: string): Promise<CaseTarget> {
  const exe = compile({
    sources: ['trigger/blocked_main.c'],
    out: 'blocked_main',
    flags: ['-O2', '-pthread', '-Wl,-z,relro,-z,now'],
    libs: [`-L${libDir(dir, 'blocked-link', { 'libdemo.so.1': libdemo(1, tag) })}`, '-l:libdemo.so.1'],
  });
  const fix = pack(libdemo(1, tag), libdemo(2, tag), join(dir, 'blocked.ulp'));
  const t = startTarget([exe, '22'], {
    LD_LIBRARY_PATH: libDir(dir, 'blocked-run', { 'libdemo.so.1': libdemo(1, tag) }),
  });
  await t.waitFor((o) => /^ready threads=27/m.test(o), 60_000);
  return {
    pid: t.pid,
    threads: 27,
    fix,
    name: 'libdemo, 27 threads all blocked',
    allBlocked: true,
    async check(live) {
      const mark = t.output().length;
      process.kill(t.pid, 'SIGUSR1');
      const out = await t.waitFor((o) => /wake=\d+ version=\d+ compute=\d+/.test(o.slice(mark)), 30_000);
      const [, version, compute] = /version=(\d+) compute=(\d+)/.exec(out.slice(mark))!;
      const want = live === 'new' ? ['2', '36'] : ['1', '33'];
      if (version !== want[0] || compute !== want[1])
        throw new Error(
          `the program runs version ${version} (compute ${compute}), expected ${want.join('/')}`,
        );
    },
    dispose: () => t.dispose(),
  };
}

/** The python3 cases on the real OpenSSL builds (bench/real-openssl.ts), or why they cannot run. */
async function realCase(name: Exclude<CaseName, 'blocked'>, dir: string): Promise<CaseTarget | string> {
  const spec = {
    crypto: {
      lib: 'crypto',
      program: 'hashing',
      what: 'libcrypto 3.0.19 -> 3.0.20, python3, 8 hashing threads',
    },
    ssl: { lib: 'ssl', program: 'tls', what: 'libssl 3.0.19 -> 3.0.20, python3 doing TLS handshakes' },
    'crypto-blocked': {
      lib: 'crypto',
      program: 'blocked',
      what: 'libcrypto 3.0.19 -> 3.0.20, python3, 27 threads all blocked',
    },
    'ssl-blocked': {
      lib: 'ssl',
      program: 'blocked',
      what: 'libssl 3.0.19 -> 3.0.20, python3, 27 threads all blocked',
    },
  } as const;
  const s = spec[name];
  const r = await realOpenSslTarget(mkdtempSync(join(dir, `case-${name}-`)), s.lib, s.program);
  if (typeof r === 'string') return r;
  return {
    pid: r.target.pid,
    threads: r.threads,
    fix: r.fix,
    name: s.what,
    allBlocked: s.program === 'blocked',
    check: (live) => r.check(live),
    dispose: () => r.target.dispose(),
  };
}

function nodeStart(): number {
  return median([0, 1, 2].map(() => runProgram(process.execPath, ['-e', '0']).ms));
}

async function measureCase(name: CaseName, dir: string, tag: string): Promise<CaseRow | string> {
  const loadBefore = loadAverage();
  const c = name === 'blocked' ? await blockedCase(dir, tag) : await realCase(name, dir);
  if (typeof c === 'string') return c;
  try {
    const first = trigger(c.pid, c.fix, false);
    const stopped = Math.max(
      ...first.json.switch.pauses
        .filter((p: { kind: string }) => p.kind === 'all')
        .map((p: { threads: number }) => p.threads),
    );
    if (stopped !== c.threads)
      throw new Error(`${c.name}: the trigger stopped ${stopped} threads, the program has ${c.threads}`);
    await c.check('new');
    trigger(c.pid, c.fix, true);
    await c.check('old');
    const pauses: number[] = [];
    const floors: number[] = [];
    const bares: number[] = [];
    const commands: number[] = [];
    let io = { pages: 0, writes: 0, words: 0, jumps: 0 };
    for (let i = 0; i < CYCLES; i++) {
      for (const revert of [false, true]) {
        const r = trigger(c.pid, c.fix, revert);
        const p = r.json.switch.pauseIo as { pages: number; writes: number };
        if (!revert)
          io = {
            pages: p.pages,
            writes: p.writes,
            words: r.json.switch.rewritten + r.json.switch.lazyBound + r.json.switch.pointers.retargeted,
            jumps: r.json.switch.redirects.written,
          };
        pauses.push(r.pauseMs);
        commands.push(r.ms);
        const f = pauseFloor(c.pid, p.pages, p.writes);
        floors.push(f.ms);
        bares.push(f.bareMs);
      }
    }
    await c.check('old');
    const pause = { ...summary(pauses), p99: quantile(pauses, 0.99) };
    const floor = { ...summary(floors), p99: quantile(floors, 0.99) };
    return {
      key: name,
      name: c.name,
      threads: c.threads,
      allBlocked: c.allBlocked,
      ...io,
      first: { pauseMs: first.pauseMs, commandMs: first.ms },
      pause,
      floor,
      bare: summary(bares),
      ratio: pause.median / floor.median,
      commandMs: summary(commands),
      nodeStartMs: nodeStart(),
      loadBefore,
      loadAfter: loadAverage(),
    };
  } finally {
    c.dispose();
  }
}

export function renderCases(rows: CaseRow[]): string {
  return markdownTable(
    [
      'case',
      'threads',
      'words / jumps',
      'pages read / writes',
      'first apply pause',
      'pause median',
      'pause p99',
      'floor median',
      'stop+resume median',
      'pause / floor',
      'first apply command (wall)',
      'command median (wall)',
      'node start',
      'load 1/5/15 min',
    ],
    rows.map((r) => [
      r.name,
      String(r.threads),
      `${r.words} / ${r.jumps}`,
      `${r.pages} / ${r.writes}`,
      fmtMs(r.first.pauseMs),
      fmtMs(r.pause.median),
      fmtMs(r.pause.p99),
      fmtMs(r.floor.median),
      fmtMs(r.bare.median),
      r.ratio.toFixed(2),
      fmtMs(r.first.commandMs),
      fmtMs(r.commandMs.median),
      fmtMs(r.nodeStartMs),
      r.loadAfter,
    ]),
  );
}

async function main(): Promise<void> {
  handleArgs(import.meta.url, {
    values: ['--threads', '--objects', '--cycles', '--cases', '--json'],
    flags: ['--profile', '--only-cases', '--redirects-only'],
  });
  const unknown = CASES.filter((c) => !CASE_NAMES.includes(c));
  if (unknown.length) {
    process.stderr.write(
      `bench-pause: unknown case ${unknown.join(', ')} (cases: ${CASE_NAMES.join(', ')})\n`,
    );
    process.exit(64);
  }
  ensureBuilt();
  const tag = `pause-${process.pid}-${Date.now()}`;
  const w = workDir('bench-pause');
  try {
    const fix = pack(libdemo(1, tag), libdemo(2, tag), join(w.dir, 'fix.ulp'));
    const rows: PauseRow[] = [];
    let profile: PauseProfile | undefined;
    if (REDIRECTS_ONLY) {
      const share = await redirectShare(tag, fix, w.dir);
      console.log(renderShare(share.rows));
      if (share.skipped) console.log(`(real libcrypto left out: ${share.skipped})`);
      writeJsonResult({ cycles: CYCLES, rows, profile: null, redirects: share });
      return;
    }
    const profileAt = {
      objects: Math.max(...OBJECTS),
      threads: [...THREADS].sort((a, b) => Math.abs(a - 8) - Math.abs(b - 8))[0]!,
    };
    process.stderr.write(
      `bench-pause: ${ONLY_CASES ? 0 : THREADS.length * OBJECTS.length} configurations, ${CASES.length} real cases, ${CYCLES} apply/revert cycles each (load ${loadAverage()})\n`,
    );
    for (const objects of ONLY_CASES ? [] : OBJECTS) {
      for (const threads of THREADS) {
        const { profile: p, ...row } = await measure(
          threads,
          objects,
          tag,
          fix,
          w.dir,
          PROFILE && objects === profileAt.objects && threads === profileAt.threads,
        );
        rows.push(row);
        if (p) profile = p;
        process.stderr.write(
          `  threads=${threads} objects=${row.objects}: apply median ${fmtMs(row.apply.median)} worst ${fmtMs(row.apply.worst)}, revert median ${fmtMs(row.revert.median)} worst ${fmtMs(row.revert.worst)} (load ${row.loadAfter})\n`,
        );
      }
    }
    console.log(
      `pause = every thread stopped (the trigger's pauseMs), ${CYCLES} apply/revert cycles per row after a first apply\n`,
    );
    console.log(renderPause(rows));
    if (profile) {
      console.log(
        `where the pause goes: ${profile.threads} threads, ${profile.objects} objects, ${profile.slots} slots; profiled pauses ${profile.pausesMs.map(fmtMs).join(', ')}\n`,
      );
      console.log(renderPauseProfile(profile));
    }
    const share = await redirectShare(tag, fix, w.dir);
    console.log(
      `\nthe entry redirects' share of the pause (writes to code pages and the journal, inside the pause; medians of ${CYCLES} warm cycles)\n`,
    );
    console.log(renderShare(share.rows));
    if (share.skipped) console.log(`(real libcrypto left out: ${share.skipped})`);
    const cases: CaseRow[] = [];
    const casesSkipped: Array<{ key: CaseName; reason: string }> = [];
    for (const c of CASES) {
      const row = await measureCase(c, w.dir, tag);
      if (typeof row === 'string') {
        casesSkipped.push({ key: c, reason: row });
        process.stderr.write(`  case ${c} left out: ${row}\n`);
        continue;
      }
      cases.push(row);
      process.stderr.write(
        `  ${row.name}: pause median ${fmtMs(row.pause.median)} p99 ${fmtMs(row.pause.p99)}, floor ${fmtMs(row.floor.median)}, ratio ${row.ratio.toFixed(2)} (load ${row.loadAfter})\n`,
      );
    }
    if (cases.length) {
      console.log(
        `\nreal cases: every apply and revert (the trigger's pauseMs) beside its floor on the same process, measured right after it: stop, the same pages read back, the same number of writes, resume\n`,
      );
      console.log(renderCases(cases));
    }
    for (const k of casesSkipped) console.log(`(case ${k.key} left out: ${k.reason})`);
    writeJsonResult({
      cycles: CYCLES,
      rows,
      profile: profile ?? null,
      redirects: share,
      cases,
      casesSkipped,
    });
  } finally {
    w.dispose();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
