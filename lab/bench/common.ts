/**
 * Shared pieces of the benchmark scripts (scripts/bench-*.ts) and the soak
 * run (scripts/soak.ts): the compiled commands, statistics, the machine
 * description, load average, markdown tables, and the `--json FILE` output
 * every benchmark script accepts so that scripts/bench.ts can assemble one
 * report.
 *
 * Benchmarks run the commands as users run them: compiled (dist/bin/*.js),
 * as fresh processes. `ensureBuilt()` runs `npm run build` when dist/ is
 * older than the sources.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';

import { runCommand, type RunOptions } from '../cli.js';
import { ROOT } from '../root.js';

export { fmtMs, markdownTable } from './format.js';

export { ROOT };
export const BENCH_DIR = join(ROOT, '.bench');
export const BIN = {
  pack: join(ROOT, 'dist', 'bin', 'ulp-pack.js'),
  trigger: join(ROOT, 'dist', 'bin', 'ulp-trigger.js'),
};

// ---------------------------------------------------------------- arguments

const argv = process.argv.slice(2);

/** The value after `--name`, or undefined. */
export function arg(name: string): string | undefined {
  const i = argv.indexOf(name);
  return i < 0 ? undefined : argv[i + 1];
}

export function flag(name: string): boolean {
  return argv.includes(name);
}

/** Numbers from `--name a,b,c`, or the default. */
export function numbers(name: string, fallback: number[]): number[] {
  const v = arg(name);
  return v ? v.split(',').map(Number) : fallback;
}

/** Writes the script's result to the file named by `--json`, if given. */
export function writeJsonResult(result: unknown): void {
  const file = arg('--json');
  if (!file) return;
  mkdirSync(dirname(resolve(file)), { recursive: true });
  writeFileSync(
    file,
    JSON.stringify(result, (_k, v) => (typeof v === 'bigint' ? `0x${v.toString(16)}` : v), 2) + '\n',
  );
}

// ---------------------------------------------------------------- build

function newestMtime(dir: string): number {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) newest = Math.max(newest, newestMtime(p));
    else if (e.name.endsWith('.ts')) newest = Math.max(newest, statSync(p).mtimeMs);
  }
  return newest;
}

/** Runs `npm run build` when dist/ is missing or older than a source file of the commands. */
export function ensureBuilt(): void {
  const sources = Math.max(
    ...['common', 'elf', 'patches', 'packer', 'runtime', 'trigger', 'bin'].map((d) =>
      newestMtime(join(ROOT, d)),
    ),
  );
  const built = Math.min(...Object.values(BIN).map((b) => (existsSync(b) ? statSync(b).mtimeMs : 0)));
  if (built >= sources) return;
  process.stderr.write('bench: building dist/ (npm run build)\n');
  const r = spawnSync('npm', ['run', 'build', '--silent'], { cwd: ROOT, stdio: 'inherit' });
  if (r.status !== 0 || !Object.values(BIN).every(existsSync)) throw new Error('npm run build failed');
}

// ---------------------------------------------------------------- commands

export interface CommandRun {
  code: number;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  json: any;
  /** Wall time of the whole command, process start to exit, in ms. */
  ms: number;
}

/** Runs a compiled command (`ulp-pack` or `ulp-trigger`) as a fresh process. */
export function runBin(which: keyof typeof BIN, args: string[], opts: RunOptions = {}): CommandRun {
  return runProgram(process.execPath, [BIN[which], ...args], opts);
}

/**
 * Runs `cmd args` through the lab's one runner (lab/cli.ts runCommand), as
 * the benchmarks always did: from this process's folder, with its
 * environment as it is (SOURCE_DATE_EPOCH included), up to 256 MiB of output.
 */
export function runProgram(cmd: string, args: string[], opts: RunOptions = {}): CommandRun {
  const r = runCommand(cmd, args, {
    cwd: process.cwd(),
    maxBuffer: 256 << 20,
    ...opts,
    env: { SOURCE_DATE_EPOCH: process.env.SOURCE_DATE_EPOCH, ...opts.env },
  });
  return { ...r, code: r.code ?? -1 };
}

/** The same, failing loudly unless the command exits 0. */
export function mustRun(which: keyof typeof BIN, args: string[]): CommandRun {
  const r = runBin(which, args);
  if (r.code !== 0) throw new Error(`${which} ${args.join(' ')} exited ${r.code}:\n${r.stdout}\n${r.stderr}`);
  return r;
}

// ---------------------------------------------------------------- statistics

export function sorted(xs: readonly number[]): number[] {
  return [...xs].sort((a, b) => a - b);
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = sorted(xs);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Nearest-rank quantile. */
export function quantile(xs: readonly number[], q: number): number {
  if (xs.length === 0) return NaN;
  const s = sorted(xs);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!;
}

export function worst(xs: readonly number[]): number {
  return xs.length ? Math.max(...xs) : NaN;
}

export interface Summary {
  n: number;
  median: number;
  p90: number;
  worst: number;
  best: number;
}

export function summary(xs: readonly number[]): Summary {
  return {
    n: xs.length,
    median: median(xs),
    p90: quantile(xs, 0.9),
    worst: worst(xs),
    best: xs.length ? Math.min(...xs) : NaN,
  };
}

/** Milliseconds for a table: µs below 1 ms. */

// ---------------------------------------------------------------- machine

export function loadAverage(): string {
  return loadavg()
    .map((l) => l.toFixed(2))
    .join(' ');
}

export interface Machine {
  cpu: string;
  cpus: number;
  memoryGiB: number;
  kernel: string;
  os: string;
  node: string;
  gcc: string;
  virtualization: string;
}

export function machine(): Machine {
  const os = /PRETTY_NAME="([^"]+)"/.exec(safeRead('/etc/os-release'))?.[1] ?? 'unknown';
  const gcc = spawnSync('gcc', ['-dumpfullversion'], { encoding: 'utf8' }).stdout?.trim() ?? '?';
  const virt = spawnSync('systemd-detect-virt', [], { encoding: 'utf8' });
  const hv = /hypervisor/.test(safeRead('/proc/cpuinfo'))
    ? 'virtual machine (cpuinfo: hypervisor)'
    : 'bare metal or unknown';
  return {
    cpu: cpus()[0]?.model ?? 'unknown',
    cpus: cpus().length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    kernel: safeRead('/proc/sys/kernel/osrelease').trim(),
    os,
    node: process.version,
    gcc,
    virtualization: virt.status === 0 && virt.stdout.trim() !== 'none' ? virt.stdout.trim() : hv,
  };
}

function safeRead(p: string): string {
  try {
    return readFileSync(p, 'utf8');
  } catch {
    return '';
  }
}

// ---------------------------------------------------------------- waiting

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Waits (polling) until `pred` holds; throws after `timeoutMs`. */
export async function until(pred: () => boolean, what: string, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}
