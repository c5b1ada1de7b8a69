/**
 * ELF reader benchmark: parses a large library completely (every accessor,
 * and a lookup of every defined dynamic symbol) N times and prints the median
 * and the worst run next to the median of `readelf -a -W` on the same file,
 * as a ratio. Also times a memory-mode parse of libc.so.6 as loaded in this
 * process (/proc/self/mem).
 *
 *   npx tsx scripts/bench-elf.ts [file] [--runs N]
 */
import { spawnSync } from 'node:child_process';
import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import { imageSpan, parseElf, parseElfFromMemory, writableRegion, type ElfObject } from '../elf/index.js';

const args = process.argv.slice(2);
const runsAt = args.indexOf('--runs');
const RUNS = runsAt >= 0 ? Number(args[runsAt + 1]) : 25;
const FILE = args.find((a, i) => !a.startsWith('--') && args[i - 1] !== '--runs') ?? '/usr/lib/x86_64-linux-gnu/libcrypto.so.3';

function everything(o: ElfObject): number {
  let n = o.header.phnum + o.programHeaders.length + o.sections.length + o.loadSegments.length;
  n += (o.dynamic?.entries.length ?? 0) + o.dynamicSymbols.length + o.symtab.length + o.relocations.length + o.notes.length;
  n += (o.buildId?.length ?? 0) + (o.soname?.length ?? 0) + (o.tls ? 1 : 0) + (o.relro ? 1 : 0);
  n += Number(imageSpan(o).end) + Number(writableRegion(o)?.end ?? 0n);
  for (const s of o.dynamicSymbols) if (s.defined && o.lookup(s.name, s.version)) n++;
  return n;
}

function stats(ms: number[]): { median: number; worst: number; best: number } {
  const s = [...ms].sort((a, b) => a - b);
  return { median: s[Math.floor(s.length / 2)]!, worst: s[s.length - 1]!, best: s[0]! };
}

const fmt = (v: number) => `${v.toFixed(1)} ms`;

const ours: number[] = [];
let facts = '';
for (let i = 0; i < RUNS; i++) {
  const t = performance.now();
  const o = parseElf(readFileSync(FILE), { expect: 'any' });
  everything(o);
  ours.push(performance.now() - t);
  if (i === 0) facts = `${o.dynamicSymbols.length} dynamic symbols, ${o.symtab.length} .symtab symbols, ${o.relocations.length} relocations, ${o.sections.length} sections`;
}

const theirs: number[] = [];
const devnull = openSync('/dev/null', 'w');
for (let i = 0; i < Math.min(RUNS, 15); i++) {
  const t = performance.now();
  const r = spawnSync('readelf', ['-a', '-W', FILE], { stdio: ['ignore', devnull, 'ignore'] });
  theirs.push(performance.now() - t);
  if (r.error) throw r.error;
}
closeSync(devnull);

// Memory mode: libc.so.6 as this process has it mapped.
const maps = readFileSync('/proc/self/maps', 'utf8').split('\n');
const libcLine = maps.find((l) => / 00000000 .*\/libc\.so\.6$/.test(l));
const mem: number[] = [];
if (libcLine) {
  const bias = BigInt(`0x${libcLine.split('-')[0]}`);
  const fd = openSync('/proc/self/mem', 'r');
  const read = (addr: bigint, len: number) => {
    const b = Buffer.alloc(len);
    return b.subarray(0, readSync(fd, b, 0, len, Number(addr)));
  };
  for (let i = 0; i < RUNS; i++) {
    const t = performance.now();
    everything(parseElfFromMemory(read, { bias }));
    mem.push(performance.now() - t);
  }
  closeSync(fd);
}

const a = stats(ours);
const b = stats(theirs);
console.log(`file: ${FILE} (${facts})`);
console.log(`ulp elf reader, read + parse everything, ${RUNS} runs: median ${fmt(a.median)}, worst ${fmt(a.worst)} (the first run includes JIT warm-up), best ${fmt(a.best)}`);
console.log(`readelf -a -W, ${theirs.length} runs:                   median ${fmt(b.median)}, worst ${fmt(b.worst)}`);
console.log(`ratio (ours / readelf, medians): ${(a.median / b.median).toFixed(2)}`);
if (mem.length) {
  const m = stats(mem);
  console.log(`memory mode, libc.so.6 from /proc/self/mem, ${RUNS} runs: median ${fmt(m.median)}, worst ${fmt(m.worst)}`);
}
