/**
 * ELF reader benchmark: parses a large library completely (every accessor,
 * and a lookup of every defined dynamic symbol) N times and prints the median
 * and the worst run next to the median of `readelf -a -W` on the same file,
 * run alternately with it, as a ratio. Also times a memory-mode parse of
 * libc.so.6 as loaded in this process (/proc/self/mem).
 *
 *   npx tsx scripts/bench-elf.ts [FILE] [--runs N] [--json OUT]
 *
 * The goal (issue 2): parsing libcrypto.so.3 completely takes well under a
 * second. The parse runs in this process, so node's start-up is not part of
 * the figure; the first run carries the JIT warm-up and is what a one-shot
 * command pays (ulp-pack parses each build once).
 */
import { spawnSync } from 'node:child_process';
import { closeSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { imageSpan, parseElf, parseElfFromMemory, writableRegion, type ElfObject } from '../elf/index.js';
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

export interface ElfResult {
  file: string;
  bytes: number;
  facts: string;
  runs: number;
  /** The first run: cold JIT, what a one-shot command pays. */
  firstMs: number;
  ours: Summary;
  readelf: Summary;
  /** libc.so.6 parsed from this process's memory. */
  memory: Summary | null;
  loadBefore: string;
  loadAfter: string;
}

function everything(o: ElfObject): number {
  let n = o.header.phnum + o.programHeaders.length + o.sections.length + o.loadSegments.length;
  n +=
    (o.dynamic?.entries.length ?? 0) +
    o.dynamicSymbols.length +
    o.symtab.length +
    o.relocations.length +
    o.notes.length;
  n += (o.buildId?.length ?? 0) + (o.soname?.length ?? 0) + (o.tls ? 1 : 0) + (o.relro ? 1 : 0);
  n += Number(imageSpan(o).end) + Number(writableRegion(o)?.end ?? 0n);
  for (const s of o.dynamicSymbols) if (s.defined && o.lookup(s.name, s.version)) n++;
  return n;
}

/** Memory mode: libc.so.6 as this process has it mapped, or null when it is not found. */
function memoryRuns(runs: number): number[] | null {
  const maps = readFileSync('/proc/self/maps', 'utf8').split('\n');
  const libcLine = maps.find((l) => / 00000000 .*\/libc\.so\.6$/.test(l));
  if (!libcLine) return null;
  const bias = BigInt(`0x${libcLine.split('-')[0]}`);
  const fd = openSync('/proc/self/mem', 'r');
  const read = (addr: bigint, len: number) => {
    const b = Buffer.alloc(len);
    return b.subarray(0, readSync(fd, b, 0, len, Number(addr)));
  };
  const mem: number[] = [];
  try {
    for (let i = 0; i < runs; i++) {
      const t = performance.now();
      everything(parseElfFromMemory(read, { bias }));
      mem.push(performance.now() - t);
    }
  } finally {
    closeSync(fd);
  }
  return mem;
}

export function measureElf(file: string, runs: number): ElfResult {
  const loadBefore = loadAverage();
  const ours: number[] = [];
  const theirs: number[] = [];
  let facts = '';
  const devnull = openSync('/dev/null', 'w');
  try {
    for (let i = 0; i < runs; i++) {
      const t = performance.now();
      const o = parseElf(readFileSync(file), { expect: 'any' });
      everything(o);
      ours.push(performance.now() - t);
      if (i === 0)
        facts = `${o.dynamicSymbols.length} dynamic symbols, ${o.symtab.length} .symtab symbols, ${o.relocations.length} relocations, ${o.sections.length} sections`;
      // readelf alternates with the parse, so that load on the machine falls on both alike.
      const r0 = performance.now();
      const r = spawnSync('readelf', ['-a', '-W', file], { stdio: ['ignore', devnull, 'ignore'] });
      if (r.error) throw r.error;
      theirs.push(performance.now() - r0);
    }
  } finally {
    closeSync(devnull);
  }
  const mem = memoryRuns(runs);
  return {
    file,
    bytes: statSync(file).size,
    facts,
    runs,
    firstMs: ours[0]!,
    ours: summary(ours),
    readelf: summary(theirs),
    memory: mem ? summary(mem) : null,
    loadBefore,
    loadAfter: loadAverage(),
  };
}

export function renderElf(r: ElfResult): string {
  const rows = [
    [
      `ulp ELF reader, parse everything (${r.runs} runs)`,
      fmtMs(r.ours.median),
      fmtMs(r.ours.worst),
      fmtMs(r.firstMs),
      (r.ours.median / r.readelf.median).toFixed(2),
    ],
    [
      `readelf -a -W, a fresh process (${r.readelf.n} runs)`,
      fmtMs(r.readelf.median),
      fmtMs(r.readelf.worst),
      '-',
      '1.00',
    ],
  ];
  if (r.memory)
    rows.push([
      `ulp ELF reader, libc.so.6 from /proc/self/mem (${r.memory.n} runs)`,
      fmtMs(r.memory.median),
      fmtMs(r.memory.worst),
      '-',
      '-',
    ]);
  return markdownTable(['what', 'median', 'worst', 'first run (cold JIT)', 'median / readelf'], rows);
}

function main(): void {
  handleArgs(import.meta.url, { values: ['--runs', '--json'], operands: 1 });
  const runs = Number(arg('--runs') ?? 25);
  const argv = process.argv.slice(2);
  const file =
    argv.find((a, i) => !a.startsWith('--') && !['--runs', '--json'].includes(argv[i - 1] ?? '')) ??
    '/usr/lib/x86_64-linux-gnu/libcrypto.so.3';
  const r = measureElf(file, runs);
  console.log(`${r.file}, ${(r.bytes / 1e6).toFixed(2)} MB: ${r.facts}; load ${r.loadAfter}\n`);
  console.log(renderElf(r));
  writeJsonResult(r);
}

if (import.meta.url === `file://${process.argv[1]}`) main();
