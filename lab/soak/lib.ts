/**
 * The reliability scenarios, shared by `npm run soak` (scripts/soak.ts,
 * long forms, a report) and test/integration/reliability/*.test.ts (short forms, with
 * assertions). Every scenario returns what it saw; callers judge.
 *
 * The target is test/fixtures/reliability/reliable_main.c on libdemo
 * (test/fixtures/trigger/libdemo.c): eight threads check every result of
 * every call, and the main thread checks that the library's own .bss
 * counter and the executable's copy of demo_counter both equal the round
 * number after every switch. `bad` counts every failed check.
 *
 * Commands run as separate processes through a Runner: the TypeScript
 * sources through tsx (tests: what is checked out) or the compiled dist/
 * (the soak: faster, what users run). The soak runs a private copy of dist/
 * taken when it starts (snapshotDist), so that one run judges one build even
 * when dist/ is rebuilt meanwhile (a shared checkout, a second terminal).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseElf } from '../../elf/index.js';
import { memfdDescriptors, tracedThreads } from '../process-state.js';
import { startTarget, type Target } from '../target.js';

import { outcomeOf, runCommand, type Outcome, type Program } from '../cli.js';
import { ROOT } from '../root.js';
import { type Relro } from '../relro.js';
import { libdemo, linkedProgram } from '../versioned.js';

export { ROOT };

// ---------------------------------------------------------------- runners

export type { Program };

/** What a command did; `code` is null when a signal ended it. */
export type Run = Outcome;

export interface Runner {
  name: 'tsx' | 'dist';
  argv(program: Program, args: string[]): string[];
  run(
    program: Program,
    args: string[],
    opts?: { env?: Record<string, string | undefined>; timeoutMs?: number },
  ): Run;
  spawn(program: Program, args: string[]): ChildProcess;
}

/** `dist`: the directory holding the compiled bin/ (default ROOT/dist; snapshotDist gives a private copy). */
export function makeRunner(name: 'tsx' | 'dist', dist = join(ROOT, 'dist')): Runner {
  const argv = (program: Program, args: string[]) =>
    name === 'tsx'
      ? ['--import', 'tsx', join(ROOT, 'bin', `${program}.ts`), ...args]
      : [join(dist, 'bin', `${program}.js`), ...args];
  return {
    name,
    argv,
    run(program, args, opts = {}) {
      return runCommand(process.execPath, argv(program, args), {
        env: opts.env,
        timeoutMs: opts.timeoutMs ?? 120_000,
      });
    },
    spawn(program, args) {
      return spawn(process.execPath, argv(program, args), { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    },
  };
}

/** The folders of dist/ the commands need (only the product is built into dist/). */
const DIST_PARTS = ['bin', 'common', 'elf', 'packer', 'patches', 'runtime', 'trigger'];

/**
 * Copies the compiled commands into a fresh folder readable by every user
 * (the other-users scenario runs them as uid 65534), with the project's
 * package.json (ESM, the version the commands print) and a link to its
 * node_modules. Returns the copy's dist/ and a function that removes it.
 */
export function snapshotDist(): { dist: string; dispose(): void } {
  const from = join(ROOT, 'dist');
  if (!existsSync(join(from, 'bin', 'ulp-trigger.js')))
    throw new Error(`${from}/bin/ulp-trigger.js is missing: run npm run build (npm run soak does)`);
  const top = mkdtempSync(join(tmpdir(), 'ulp-soak-dist-'));
  chmodSync(top, 0o755);
  for (const part of DIST_PARTS) cpSync(join(from, part), join(top, 'dist', part), { recursive: true });
  copyFileSync(join(ROOT, 'package.json'), join(top, 'package.json'));
  symlinkSync(join(ROOT, 'node_modules'), join(top, 'node_modules'));
  return { dist: join(top, 'dist'), dispose: () => rmSync(top, { recursive: true, force: true }) };
}

/** Waits for a spawned command to end; returns what it printed and how it ended. */
export function finished(child: ChildProcess, timeoutMs = 120_000): Promise<Run> {
  return outcomeOf(child, timeoutMs);
}

// ---------------------------------------------------------------- the target

export type { Relro };

export interface Reliable {
  dir: string;
  relro: Relro;
  lib(version: number): string;
  exe: string;
  /** Bundles packed with the real ulp-pack. */
  fix12: string;
  fix23: string;
  buildIds: Record<1 | 2 | 3, string>;
  /** Starts the program with `version` installed as libdemo.so.1 (period ms, worker threads). */
  start(version?: number, args?: string[]): Target;
  dispose(): void;
}

/** libdemo v1..v3 (tagged), the reliability program, and the bundles v1->v2, v2->v3. */
export function buildReliable(runner: Runner, opts: { relro?: Relro; tag?: string } = {}): Reliable {
  const relro = opts.relro ?? 'partial';
  const tag = opts.tag ?? `rel-${process.pid}-${Date.now()}`;
  const dir = mkdtempSync(join(tmpdir(), 'ulp-reliable-'));
  const lib = (v: number) => libdemo(v, { tag, relro });
  const exe = linkedProgram({
    sources: ['reliability/reliable_main.c'],
    out: 'reliable_main',
    relro,
    flags: ['-pthread'],
    against: { 'libdemo.so.1': lib(1) },
  });
  const packOne = (a: number, b: number) => {
    const out = join(dir, `fix-${a}-${b}.ulp`);
    const r = runner.run('ulp-pack', [lib(a), lib(b), '-o', out, '--created-at', '0']);
    if (r.code !== 0) throw new Error(`ulp-pack v${a} -> v${b}: ${r.stdout}${r.stderr}`);
    return out;
  };
  const fix12 = packOne(1, 2);
  const fix23 = packOne(2, 3);
  const idOf = (v: number) => parseElf(readFileSync(lib(v))).buildId!;
  const targets: Target[] = [];
  return {
    dir,
    relro,
    lib,
    exe,
    fix12,
    fix23,
    buildIds: { 1: idOf(1), 2: idOf(2), 3: idOf(3) },
    start(version = 1, args = ['20']) {
      const libDir = join(dir, `run-${targets.length}`);
      mkdirSync(libDir);
      copyFileSync(lib(version), join(libDir, 'libdemo.so.1'));
      const t = startTarget([exe, ...args], { LD_LIBRARY_PATH: libDir });
      targets.push(t);
      return t;
    },
    dispose() {
      for (const t of targets) t.dispose();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface Round {
  round: number;
  version: number;
  calls: number;
  counter: number;
  bad: number;
  k11: number;
  k12: number;
  k13: number;
  threads: number[];
}

export function parseRounds(out: string): Round[] {
  const rounds: Round[] = [];
  for (const line of out.split('\n')) {
    if (!line.startsWith('round=') || (!/ t\d+=\d+$/.test(line) && !/k13=\d+$/.test(line))) continue;
    const kv = Object.fromEntries(line.split(' ').map((p) => p.split('=') as [string, string]));
    const threads = Object.keys(kv)
      .filter((k) => /^t\d+$/.test(k))
      .map((k) => Number(kv[k]));
    rounds.push({
      round: +kv.round!,
      version: +kv.version!,
      calls: +kv.calls!,
      counter: +kv.counter!,
      bad: +kv.bad!,
      k11: +kv.k11!,
      k12: +kv.k12!,
      k13: +kv.k13!,
      threads,
    });
  }
  return rounds;
}

export interface Health {
  ok: boolean;
  alive: boolean;
  last: Round | undefined;
  problems: string[];
}

/**
 * Waits for `n` complete rounds printed after output offset `since` and
 * judges: alive, bad = 0, every worker made progress since `since`.
 */
export async function health(t: Target, since: number, n = 2, timeoutMs = 15_000): Promise<Health> {
  const problems: string[] = [];
  try {
    await t.waitFor((o) => parseRounds(o.slice(since)).length >= n, timeoutMs);
  } catch (e) {
    problems.push((e as Error).message.split('\n')[0]!);
  }
  const all = parseRounds(t.output());
  const after = parseRounds(t.output().slice(since));
  const last = all.at(-1);
  const alive = t.alive();
  if (!alive) problems.push('the target died');
  if (last && last.bad !== 0)
    problems.push(
      `bad=${last.bad}: a call returned a wrong result or the library's state was lost (calls=${last.calls} counter=${last.counter} round=${last.round})`,
    );
  const before = parseRounds(t.output().slice(0, since)).at(-1);
  if (before && after.length) {
    const stuck = before.threads
      .map((c, i) => (after.at(-1)!.threads[i]! > c ? -1 : i))
      .filter((i) => i >= 0);
    if (stuck.length) problems.push(`worker threads ${stuck.join(', ')} made no progress`);
  }
  return { ok: problems.length === 0, alive, last, problems };
}

// ---------------------------------------------------------------- state of the library in a process

export type Live = 'v1' | 'v2' | 'v3' | 'unknown';

export interface LibState {
  live: Live;
  mixed: boolean;
  aliased: boolean;
  ulpMappedBytes: number;
  /** Stagings a killed trigger never finished (--status `abandoned`): memfd names. */
  abandoned: string[];
  /** --status failed: its error code (the process died, for one). */
  error?: string;
}

/** `ulp-trigger --status PID --json`, reduced to libdemo. */
export function libState(runner: Runner, rel: Reliable, pid: number): LibState {
  const r = runner.run('ulp-trigger', ['--status', String(pid), '--json']);
  if (r.code !== 0)
    return {
      live: 'unknown',
      mixed: false,
      aliased: false,
      ulpMappedBytes: 0,
      abandoned: [],
      error: r.json?.error?.code ?? (r.signal ? `killed by ${r.signal}` : `exit ${r.code}`),
    };
  const lib = r.json?.libraries?.find((l: { soname: string }) => l.soname === 'libdemo.so.1');
  const byId = Object.fromEntries(Object.entries(rel.buildIds).map(([v, id]) => [id, `v${v}` as Live]));
  const abandoned = ((r.json?.abandoned ?? []) as Array<{ name: string }>).map((a) => a.name);
  if (!lib) {
    // Never patched: ulp-trigger lists only libraries it has touched; the loader's build is live.
    const loaded = r.json?.objects?.find((o: { soname?: string }) => o.soname === 'libdemo.so.1');
    return {
      live: loaded ? (byId[loaded.buildId] ?? 'unknown') : 'unknown',
      mixed: false,
      aliased: false,
      ulpMappedBytes: r.json?.ulpMappedBytes ?? 0,
      abandoned,
    };
  }
  return {
    live: byId[lib.live] ?? 'unknown',
    mixed: lib.mixed,
    aliased: lib.aliased,
    ulpMappedBytes: r.json.ulpMappedBytes,
    abandoned,
  };
}

/** What a tracer may leave behind in a target: traced threads, open memfds. */
export function leftovers(pid: number): string[] {
  const out: string[] = [];
  for (const t of tracedThreads(pid)) out.push(`thread ${t.tid} still traced by ${t.tracer}`);
  try {
    for (const fd of memfdDescriptors(pid)) out.push(`open memfd descriptor ${fd}`);
  } catch {
    // the process is gone
  }
  return out;
}

export function memoryOf(pid: number): {
  vmRssKiB: number;
  mappedBytes: number;
  mappings: number;
  fds: number;
} {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  let mapped = 0;
  let mappings = 0;
  for (const line of readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n')) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) /.exec(line);
    if (!m) continue;
    mapped += Number(BigInt('0x' + m[2]) - BigInt('0x' + m[1]));
    mappings++;
  }
  const fds = readdirSync(`/proc/${pid}/fd`).length;
  return { vmRssKiB: Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN), mappedBytes: mapped, mappings, fds };
}
