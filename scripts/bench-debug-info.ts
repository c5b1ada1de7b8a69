/**
 * DWARF structure-layout benchmark: reads every structure layout of a debug
 * file (inflating its sections) N times and prints the median next to the
 * median of `pahole --sizes` on the same file (a C tool that reads the same
 * DWARF for the same purpose), run alternately with it, as a ratio.
 *
 *   npx tsx scripts/bench-debug-info.ts [FILE] [--runs N] [--json OUT]
 *
 * FILE defaults to the debug file of this machine's libc.so.6 (libc6-dbg,
 * found by build-id under /usr/lib/debug). The first run carries the JIT
 * warm-up and is what one ulp-pack pays per build.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, statSync } from 'node:fs';
import { debugSectionsOfFile, readStructLayouts } from '../elf/debug-info.js';
import { parseElf } from '../elf/index.js';
import {
  arg,
  fmtMs,
  loadAverage,
  markdownTable,
  summary,
  writeJsonResult,
  type Summary,
} from '../lab/bench/common.js';
import { handleArgs } from '../lab/script-args.js';

export interface DebugInfoResult {
  file: string;
  infoBytes: number;
  structures: number;
  runs: number;
  firstMs: number;
  ours: Summary;
  pahole: Summary | null;
  loadBefore: string;
  loadAfter: string;
}

function defaultFile(): string | undefined {
  const libc = '/lib/x86_64-linux-gnu/libc.so.6';
  if (!existsSync(libc)) return undefined;
  const id = parseElf(readFileSync(libc)).buildId;
  const p = id && `/usr/lib/debug/.build-id/${id.slice(0, 2)}/${id.slice(2)}.debug`;
  return p && existsSync(p) ? p : undefined;
}

export function measureDebugInfo(file: string, runs: number): DebugInfoResult {
  const loadBefore = loadAverage();
  const ours: number[] = [];
  const theirs: number[] = [];
  let infoBytes = 0;
  let structures = 0;
  const hasPahole = spawnSync('pahole', ['--version']).status === 0;
  const devnull = openSync('/dev/null', 'w');
  try {
    for (let i = 0; i < runs; i++) {
      const t = performance.now();
      const s = debugSectionsOfFile(readFileSync(file));
      if (!s) throw new Error(`${file} has no .debug_info`);
      const l = readStructLayouts(s);
      ours.push(performance.now() - t);
      infoBytes = s.info.length;
      structures = l.byName.size;
      if (!hasPahole) continue;
      // pahole alternates with our run, so that load on the machine falls on both alike.
      const p0 = performance.now();
      const r = spawnSync('pahole', ['--sizes', file], { stdio: ['ignore', devnull, 'ignore'] });
      if (r.error) throw r.error;
      theirs.push(performance.now() - p0);
    }
  } finally {
    closeSync(devnull);
  }
  return {
    file,
    infoBytes,
    structures,
    runs,
    firstMs: ours[0]!,
    ours: summary(ours),
    pahole: hasPahole ? summary(theirs) : null,
    loadBefore,
    loadAfter: loadAverage(),
  };
}

export function renderDebugInfo(r: DebugInfoResult): string {
  const mb = r.infoBytes / 1e6;
  const rows = [
    [
      `ulp DWARF layouts (${r.runs} runs)`,
      fmtMs(r.ours.median),
      fmtMs(r.ours.worst),
      fmtMs(r.firstMs),
      `${(mb / (r.ours.median / 1000)).toFixed(1)} MB/s`,
      r.pahole ? (r.ours.median / r.pahole.median).toFixed(2) : '-',
    ],
  ];
  if (r.pahole)
    rows.push([
      `pahole --sizes, a fresh process (${r.pahole.n} runs)`,
      fmtMs(r.pahole.median),
      fmtMs(r.pahole.worst),
      '-',
      `${(mb / (r.pahole.median / 1000)).toFixed(1)} MB/s`,
      '1.00',
    ]);
  return markdownTable(
    ['what', 'median', 'worst', 'first run (cold JIT)', '.debug_info rate', 'median / pahole'],
    rows,
  );
}

function main(): void {
  handleArgs(import.meta.url, { values: ['--runs', '--json'], operands: 1 });
  const runs = Number(arg('--runs') ?? 7);
  const argv = process.argv.slice(2);
  const file =
    argv.find((a, i) => !a.startsWith('--') && !['--runs', '--json'].includes(argv[i - 1] ?? '')) ??
    defaultFile();
  if (!file) {
    console.error('bench-debug-info: give a file with .debug_info (no libc6-dbg debug file for this libc)');
    process.exit(64);
  }
  const r = measureDebugInfo(file, runs);
  console.log(
    `${r.file}, ${(statSync(file).size / 1e6).toFixed(2)} MB, .debug_info ${(r.infoBytes / 1e6).toFixed(2)} MB inflated, ${r.structures} structure names; load ${r.loadAfter}\n`,
  );
  console.log(renderDebugInfo(r));
  writeJsonResult(r);
}

if (import.meta.url === `file://${process.argv[1]}`) main();
