/**
 * `ulp-trigger --outdated` on a machine with many processes: N processes map
 * a library whose file is then replaced (as dpkg does), and the whole-machine
 * scan is timed against what any such tool must at least do and against the
 * tools operators use today.
 *
 *   npx tsx scripts/bench-outdated.ts [--processes 100,1000] [--runs 5] [--json FILE]
 *
 * For each N, medians of `--runs` runs, side by side:
 *   - `ulp-trigger --outdated --json` (the compiled command, node start included);
 *   - `node -e 0`: node's start alone;
 *   - `cat /proc/[0-9]*\/maps`: reading every process's memory map, the floor
 *     for any tool that looks at mappings;
 *   - `checkrestart -m` (debian-goodies) and `needrestart -b -r l -m a`, when
 *     installed: the stock tools, which list processes but say nothing
 *     about patching.
 * The ratios (ulp / floor, ulp / stock tool) are the result; absolute times
 * depend on the machine and its load, printed alongside. Every process of the
 * fleet must be listed as patchable, or the benchmark fails.
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, renameSync, copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { startTarget } from '../lab/target.js';
import {
  ensureBuilt,
  fmtMs,
  loadAverage,
  markdownTable,
  median,
  numbers,
  runBin,
  runProgram,
  writeJsonResult,
  arg,
} from '../lab/bench/common.js';
import { fleetProgram, libdemo, libDir, workDir } from '../lab/bench/fixtures.js';
import { handleArgs } from '../lab/script-args.js';

const COUNTS = numbers('--processes', [100, 1000]);
const RUNS = Number(arg('--runs') ?? 5);

interface Row {
  processes: number;
  onMachine: number;
  outdatedMs: number;
  nodeMs: number;
  mapsMs: number;
  checkrestartMs: number | undefined;
  needrestartMs: number | undefined;
  pairs: number;
  load: string;
}

const has = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;

function timed(run: () => { code: number; ms: number }, ok: (code: number) => boolean): number {
  const times: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const r = run();
    if (!ok(r.code)) throw new Error(`exit ${r.code}`);
    times.push(r.ms);
  }
  return median(times);
}

async function measure(n: number): Promise<Row> {
  const work = workDir('bench-outdated');
  const tag = `outdated-${process.pid}-${n}`;
  const lib = libDir(work.dir, 'lib', { 'libdemo.so.1': libdemo(1, tag) });
  const t = startTarget([fleetProgram(tag), String(n), 'wait'], { LD_LIBRARY_PATH: lib });
  try {
    const out = await t.waitFor((o) => /^ready$/m.test(o), 300_000);
    const pids = [...out.matchAll(/^pid (\d+)$/gm)].map((m) => Number(m[1]));
    // dpkg's way: the new build beside the old one, renamed over the path.
    copyFileSync(libdemo(2, tag), join(lib, '.libdemo.so.1.dpkg-new'));
    renameSync(join(lib, '.libdemo.so.1.dpkg-new'), join(lib, 'libdemo.so.1'));

    const check = runBin('trigger', ['--outdated', '--json']);
    const listed = check.json?.libraries?.find((l: { path: string }) => l.path === join(lib, 'libdemo.so.1'));
    const patchable = new Set(
      listed?.processes
        .filter((p: { state: string }) => p.state === 'patchable')
        .map((p: { pid: number }) => p.pid),
    );
    const missing = pids.filter((p) => !patchable.has(p));
    if (missing.length)
      throw new Error(
        `--outdated missed ${missing.length} of ${pids.length} fleet processes (first: ${missing.slice(0, 5).join(', ')})`,
      );

    const outdatedMs = timed(
      () => runBin('trigger', ['--outdated', '--json']),
      (c) => c === 7,
    );
    const nodeMs = timed(
      () => runProgram(process.execPath, ['-e', '0']),
      (c) => c === 0,
    );
    const mapsMs = timed(
      () => runProgram('sh', ['-c', 'cat /proc/[0-9]*/maps >/dev/null 2>&1; true']),
      (c) => c === 0,
    );
    const checkrestartMs = has('checkrestart')
      ? timed(
          () => runProgram('checkrestart', ['-m']),
          () => true,
        )
      : undefined;
    const needrestartMs = has('needrestart')
      ? timed(
          () => runProgram('needrestart', ['-b', '-r', 'l', '-m', 'a']),
          () => true,
        )
      : undefined;
    return {
      processes: n,
      onMachine: readdirSync('/proc').filter((e) => /^\d+$/.test(e)).length,
      outdatedMs,
      nodeMs,
      mapsMs,
      checkrestartMs,
      needrestartMs,
      pairs: check.json.pairs.length,
      load: loadAverage(),
    };
  } finally {
    t.dispose();
    work.dispose();
  }
}

export function renderOutdated(rows: Row[]): string {
  const ratio = (a: number, b: number | undefined) => (b ? (a / b).toFixed(2) : 'n/a');
  return markdownTable(
    [
      'processes (fleet)',
      'on machine',
      '--outdated',
      'node start',
      'cat all maps',
      'checkrestart -m',
      'needrestart -b',
      '--outdated / (node + maps)',
      '--outdated / checkrestart',
      '--outdated / needrestart',
      'pairs analysed',
      'load 1/5/15 min',
    ],
    rows.map((r) => [
      String(r.processes),
      String(r.onMachine),
      fmtMs(r.outdatedMs),
      fmtMs(r.nodeMs),
      fmtMs(r.mapsMs),
      r.checkrestartMs === undefined ? 'not installed' : fmtMs(r.checkrestartMs),
      r.needrestartMs === undefined ? 'not installed' : fmtMs(r.needrestartMs),
      ratio(r.outdatedMs, r.nodeMs + r.mapsMs),
      ratio(r.outdatedMs, r.checkrestartMs),
      ratio(r.outdatedMs, r.needrestartMs),
      String(r.pairs),
      r.load,
    ]),
  );
}

async function main(): Promise<void> {
  handleArgs(import.meta.url, { values: ['--processes', '--runs', '--json'] });
  ensureBuilt();
  const rows: Row[] = [];
  for (const n of COUNTS) rows.push(await measure(n));
  process.stdout.write(renderOutdated(rows) + '\n');
  writeJsonResult(rows);
}

if (import.meta.url === `file://${process.argv[1]}`) await main();
