/**
 * Pack time against `readelf -a` on the same two files, side by side in one
 * run, medians of several runs, as a ratio. `objdump -d` on both files is
 * printed too: the packer disassembles both builds completely (to compare
 * code with addresses masked), which readelf does not do.
 *
 *   npx tsx scripts/bench-pack.ts [OLD.so NEW.so] [--runs N] [--baseline DIR] [--json FILE]
 *   npx tsx scripts/bench-pack.ts --sizes [--big | --libs a.so,b.so] [--runs N] [--profile] [--json FILE]
 *
 * Without files: OLD is the system's libcrypto.so.3 and NEW a copy of it
 * with a code-only change (OpenSSL_version_num returns another number) and
 * its own build-id, written to .bench/pack/. With --sizes: the same for a series
 * of system libraries from 0.1 to 8 MB (--big adds libLLVM, 110 MB), each
 * against a copy with one changed byte (an immediate operand of an exported
 * function when one starts with `mov $imm32, %eax`, else a byte of .rodata)
 * and a new build-id: pack time against library size; then, when the real
 * builds are there (lab/real-builds.ts), Debian's libcrypto 3.0.19 -> 3.0.20,
 * the pair of the goal (no slower than `readelf -a` on both files),
 * else the JSON's `realSkipped` says why it is not. A pair ulp-pack
 * refuses (exit 2: incompatible, or a downgrade; libLLVM's copy is one) is
 * reported with ulp-pack's reasons under the figures: --check is timed up to
 * that verdict, -o, which writes nothing then, is not timed. The command is
 * run as users run it, compiled (dist/bin/ulp-pack.js; `npm run build` first when
 * dist is older than the sources), as a fresh process each time, like
 * readelf. Runs are interleaved so that load on the machine affects both
 * sides alike; wall time and CPU time (user + system, from /usr/bin/time
 * when present) are both reported, since wall time is noisy on a shared
 * machine. With --profile, one more `ulp-pack -o` of the libcrypto.so.3
 * pair (else the largest pair) runs under `node --cpu-prof`, summarised by
 * self time per file and function: where the time goes. With --baseline DIR
 * (another checkout of ulp with its dist/ built, e.g. the commit before a
 * change), its `ulp-pack` runs interleaved with this one's, and the ratio of
 * the two is printed: the before/after figure of a change, measured side by
 * side under the same load.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { gzipSync } from 'node:zlib';
import { parseElf } from '../elf/index.js';
import {
  arg,
  BENCH_DIR as BENCH,
  BIN as BINS,
  ensureBuilt,
  flag,
  loadAverage,
  markdownTable,
  median,
  runProgram,
  writeJsonResult,
} from '../lab/bench/common.js';
import { judgePackRun } from '../lab/bench/pack-verdict.js';
import { REAL, REAL_BUILDS_ARCHIVE, REAL_FILES, realBuild, realBuildsDir } from '../lab/real-builds.js';
import { freshDir, profileIn, renderProfile, type Profile } from '../lab/bench/profile.js';
import { handleArgs } from '../lab/script-args.js';

const BIN = BINS.pack;
/** --baseline DIR: the compiled ulp-pack of another checkout, timed beside this one. */
const BASELINE = arg('--baseline')
  ? join(resolve(arg('--baseline')!), 'dist', 'bin', 'ulp-pack.js')
  : undefined;
const TIME = existsSync('/usr/bin/time') ? '/usr/bin/time' : undefined;
const LIBDIR = '/usr/lib/x86_64-linux-gnu';
const SERIES = [
  'libz.so.1',
  'libexpat.so.1',
  'libssl.so.3',
  'libsqlite3.so.0',
  'libstdc++.so.6',
  'libcrypto.so.3',
  'libpython3.11.so.1.0',
];
const BIG = ['libLLVM-14.so.1'];

interface PairSpec {
  old: string;
  neu: string;
  change: string;
  /** What the tables call it (default: OLD's file name). */
  label?: string;
  /** NEW is a copy this script wrote (removed afterwards), not a file of the user's or the real builds'. */
  own: boolean;
  /** One of the real Debian updates. */
  real?: boolean;
}

/** The real libcrypto pair of the goal, or why it cannot be packed here. */
function realPair(): PairSpec | string {
  if (!existsSync(REAL_BUILDS_ARCHIVE)) return `no real builds (${REAL_BUILDS_ARCHIVE})`;
  const dir = realBuildsDir()!;
  return {
    old: realBuild(dir, REAL.ssl19, REAL_FILES.crypto),
    neu: realBuild(dir, REAL.ssl20, REAL_FILES.crypto),
    change: 'the Debian security update 3.0.19 -> 3.0.20',
    label: 'libcrypto.so.3 3.0.19 -> 3.0.20 (Debian)',
    own: false,
    real: true,
  };
}

function args(): { pairs: PairSpec[]; runs: number; realSkipped?: string } {
  const argv = process.argv
    .slice(2)
    .filter(
      (a, i, all) =>
        !a.startsWith('--') && !['--runs', '--json', '--libs', '--baseline'].includes(all[i - 1] ?? ''),
    );
  const runs = Number(arg('--runs') ?? (flag('--sizes') ? 5 : 7));
  if (argv.length === 2)
    return { pairs: [{ old: resolve(argv[0]!), neu: resolve(argv[1]!), change: 'given', own: false }], runs };
  if (flag('--sizes')) {
    const names = arg('--libs')?.split(',') ?? [...SERIES, ...(flag('--big') ? BIG : [])];
    const libs = names.map((l) => (l.includes('/') ? l : join(LIBDIR, l))).filter(existsSync);
    const real = realPair();
    return {
      pairs: [...libs.map(modifiedCopy), ...(typeof real === 'string' ? [] : [real])],
      runs,
      ...(typeof real === 'string' ? { realSkipped: real } : {}),
    };
  }
  return { pairs: [modifiedCopy(join(LIBDIR, 'libcrypto.so.3'))], runs };
}

/** A copy of `old` with one changed byte (code when possible) and a different build-id, in .bench/. */
function modifiedCopy(old: string): PairSpec {
  if (!existsSync(old)) throw new Error(`${old} not found: give OLD.so NEW.so`);
  mkdirSync(join(BENCH, 'pack'), { recursive: true });
  const neu = join(BENCH, 'pack', `${basename(old)}.modified`);
  const bytes = Buffer.from(readFileSync(old));
  const obj = parseElf(bytes);
  const fileOffset = (vaddr: bigint) => {
    const seg = obj.loadSegments.find((p) => vaddr >= p.vaddr && vaddr < p.vaddr + p.filesz);
    return seg ? Number(seg.offset + (vaddr - seg.vaddr)) : undefined;
  };
  let change: string | undefined;
  // Prefer OpenSSL_version_num (the historical default), then any exported function starting with mov $imm32, %eax.
  const fns = obj.dynamicSymbols
    .filter((s) => s.defined && s.type === 2 && s.size > 0n)
    .sort((a, b) => Number(b.name === 'OpenSSL_version_num') - Number(a.name === 'OpenSSL_version_num'));
  for (const fn of fns) {
    const at = fileOffset(fn.value);
    if (at === undefined) continue;
    const skip = bytes.readUInt32BE(at) === 0xf30f1efa ? 4 : 0; // endbr64
    if (bytes[at + skip] === 0xb8) {
      bytes[at + skip + 1] ^= 0x01;
      change = `immediate of ${fn.name}`;
      break;
    }
  }
  if (!change) {
    const ro = obj.sections.find((s) => s.name === '.rodata' && s.size > 16n);
    if (!ro) throw new Error(`${old}: no function to change and no .rodata`);
    bytes[Number(ro.offset) + 8] ^= 0x01;
    change = 'a byte of .rodata';
  }
  const note = obj.notes.find((n) => n.name === 'GNU' && n.type === 3);
  if (!note) throw new Error(`${old} has no build-id`);
  const id = bytes.indexOf(note.desc);
  bytes[id + note.desc.length - 1] ^= 0xff; // a different build is a different build-id
  writeFileSync(neu, bytes);
  return { old, neu, change, own: true };
}

interface Sample {
  wall: number;
  cpu: number | undefined;
  /** ulp-pack refused the pair (exit 2): the reasons it gave. The time is that of the analysis up to the verdict. */
  refused?: string[];
}

/**
 * Runs one command line and returns its wall and CPU seconds with what it
 * printed. stdout goes to /dev/null unless `keepStdout` (readelf -a prints
 * megabytes; piping them into this process would time this process's
 * reading too); ulp-pack's report is a few lines, kept to name a refusal.
 */
function run(cmd: string, argv: string[], keepStdout = false) {
  const opts = {
    encoding: 'utf8' as const,
    maxBuffer: 1 << 30,
    stdio: ['ignore', keepStdout ? 'pipe' : 'ignore', 'pipe'] as ['ignore', 'pipe' | 'ignore', 'pipe'],
  };
  const t0 = process.hrtime.bigint();
  const r = TIME ? spawnSync(TIME, ['-f', '%U %S', cmd, ...argv], opts) : spawnSync(cmd, argv, opts);
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  const m = TIME ? /(\d+\.\d+) (\d+\.\d+)\s*$/.exec(r.stderr) : null;
  const sample: Sample = { wall, cpu: m ? Number(m[1]) + Number(m[2]) : undefined };
  return { sample, code: r.status, signal: r.signal, stdout: r.stdout ?? '', stderr: r.stderr };
}

/** A command that must succeed (readelf, objdump, node). */
function timed(cmd: string, argv: string[]): Sample {
  const r = run(cmd, argv);
  if (r.code !== 0) throw new Error(`${cmd} ${argv.join(' ')} exited ${r.code}: ${r.stderr.slice(-500)}`);
  return r.sample;
}

/** One ulp-pack run (`bin` is this checkout's or the baseline's): a refusal is a result, any other failure stops the benchmark. */
function timedPack(bin: string, argv: string[]): Sample {
  const r = run(process.execPath, [bin, ...argv], true);
  const verdict = judgePackRun(`ulp-pack ${argv.join(' ')}`, r);
  return verdict.refused ? { ...r.sample, refused: verdict.reasons } : r.sample;
}

const sum = (a: Sample, b: Sample): Sample => ({
  wall: a.wall + b.wall,
  cpu: a.cpu !== undefined && b.cpu !== undefined ? a.cpu + b.cpu : undefined,
});

interface Row {
  command: string;
  /** Undefined when the command was not timed: `-o` of a pair ulp-pack refuses writes nothing to time. */
  wall: number | undefined;
  cpu: number | undefined;
  /** ulp-pack refused the pair: its reasons. */
  refused?: string[];
}

export interface PackPair {
  old: string;
  neu: string;
  change: string;
  label?: string;
  real?: boolean;
  bytes: number;
  functions: number;
  runs: number;
  rows: Row[];
  loadAfter: string;
}

const PACK_O = 'ulp-pack -o (writes the bundle)';

function measurePair(spec: PairSpec, runs: number): PackPair {
  const { old, neu, change } = spec;
  const out = join(BENCH, 'pack', 'bench.ulp');
  const cases: Record<string, () => Sample> = {
    'readelf -a (both files)': () => sum(timed('readelf', ['-a', old]), timed('readelf', ['-a', neu])),
    // ulp-pack decodes every instruction of both builds; objdump -d is the reference for that much work.
    'objdump -d (both files)': () => sum(timed('objdump', ['-d', old]), timed('objdump', ['-d', neu])),
    'ulp-pack --check': () => timedPack(BIN, [old, neu, '--check']),
    [PACK_O]: () => timedPack(BIN, [old, neu, '-o', out, '--created-at', '0']),
    'node startup (empty script)': () => timed(process.execPath, ['-e', '0']),
  };
  if (BASELINE) {
    if (!existsSync(BASELINE))
      throw new Error(`--baseline: no ${BASELINE} (build that checkout first: npx tsc -p tsconfig.json)`);
    cases['baseline ulp-pack --check'] = () => timedPack(BASELINE, [old, neu, '--check']);
    cases['baseline ulp-pack -o'] = () => timedPack(BASELINE, [old, neu, '-o', out, '--created-at', '0']);
  }
  const commands = Object.keys(cases);
  // Warms the page cache for every file involved, and finds out whether ulp-pack packs this pair at all.
  const warm = cases[PACK_O]!();
  // A refused -o wrote nothing: its time is --check's again, not a pack's, so it is reported, not timed.
  if (warm.refused) delete cases[PACK_O];
  const samples: Record<string, Sample[]> = Object.fromEntries(Object.keys(cases).map((k) => [k, []]));
  for (let i = 0; i < runs; i++) for (const [k, f] of Object.entries(cases)) samples[k]!.push(f());
  rmSync(out, { force: true });
  const rows: Row[] = commands.map((command) => {
    const xs = samples[command];
    if (!xs) return { command, wall: undefined, cpu: undefined, refused: warm.refused! };
    const refused = xs.find((s) => s.refused)?.refused;
    return {
      command,
      wall: median(xs.map((s) => s.wall)),
      cpu: xs[0]!.cpu !== undefined ? median(xs.map((s) => s.cpu!)) : undefined,
      ...(refused ? { refused } : {}),
    };
  });
  const functions =
    parseElf(readFileSync(old)).symtab.filter((s) => s.type === 2 && s.defined).length ||
    parseElf(readFileSync(old)).dynamicSymbols.filter((s) => s.type === 2 && s.defined).length;
  return {
    old,
    neu,
    change,
    ...(spec.label ? { label: spec.label } : {}),
    ...(spec.real ? { real: true } : {}),
    bytes: statSync(old).size,
    functions,
    runs,
    rows,
    loadAfter: loadAverage(),
  };
}

const ratio = (a: number | undefined, b: number | undefined) =>
  a !== undefined && b ? (a / b).toFixed(2) : '-';

/** A row's wall time: "refused" when ulp-pack refused the pair and the command was not timed. */
const seconds = (r: Row, unit = '') => (r.wall === undefined ? 'refused' : `${r.wall.toFixed(3)}${unit}`);

/** What ulp-pack said when it refused the pair, for the reader of the figures; nothing when it did not. */
function refusalLines(p: PackPair): string[] {
  const reasons = p.rows.find((r) => r.refused)?.refused;
  if (!reasons) return [];
  return [
    `${p.label ?? basename(p.old)}: ulp-pack refused the pair (exit 2), so -o wrote no bundle and is not timed; --check is timed up to that verdict. Reasons:`,
    ...reasons.slice(0, 10).map((r) => `  ${r}`),
    ...(reasons.length > 10 ? [`  and ${reasons.length - 10} more (ulp-pack --check shows them all)`] : []),
  ];
}

function printPair(p: PackPair): void {
  const size = (f: string) => (statSync(f).size / 1e6).toFixed(1);
  console.log(
    `pack ${p.old} (${size(p.old)} MB) -> ${p.neu} (${size(p.neu)} MB; changed: ${p.change}), ${p.runs} runs, medians, load ${p.loadAfter}`,
  );
  const base = p.rows.find((r) => r.command.startsWith('readelf'))!;
  console.log(
    `${'command'.padEnd(34)} ${'wall s'.padStart(8)} ${'x readelf'.padStart(10)} ${'cpu s'.padStart(8)} ${'x readelf'.padStart(10)}`,
  );
  for (const r of p.rows) {
    console.log(
      `${r.command.padEnd(34)} ${seconds(r).padStart(8)} ${ratio(r.wall, base.wall).padStart(10)} ${(r.cpu?.toFixed(3) ?? '-').padStart(8)} ${ratio(r.cpu, base.cpu).padStart(10)}`,
    );
  }
  for (const mode of ['--check', '-o']) {
    const now = p.rows.find((r) => r.command.startsWith(`ulp-pack ${mode}`));
    const before = p.rows.find((r) => r.command === `baseline ulp-pack ${mode}`);
    if (now && before)
      console.log(
        `ulp-pack ${mode}: this checkout / baseline ${ratio(now.wall, before.wall)} wall, ${ratio(now.cpu, before.cpu)} cpu`,
      );
  }
  for (const line of refusalLines(p)) console.log(line);
}

/** One row per library: pack time against size, next to readelf -a and objdump -d on the same files. */
export function renderPackSizes(pairs: PackPair[]): string {
  const get = (p: PackPair, prefix: string) => p.rows.find((r) => r.command.startsWith(prefix))!;
  const table = markdownTable(
    [
      'library',
      'size',
      'functions',
      'readelf -a (both)',
      'objdump -d (both)',
      'ulp-pack --check',
      'ulp-pack -o',
      'ulp-pack --check / readelf (wall)',
      'ulp-pack -o / readelf (wall)',
      'cpu: readelf / ulp-pack -o',
      'ulp-pack -o / readelf (cpu)',
      'node startup',
      'load 1/5/15 min',
    ],
    pairs.map((p) => {
      const re = get(p, 'readelf');
      const ob = get(p, 'objdump');
      const ck = get(p, 'ulp-pack --check');
      const pk = get(p, 'ulp-pack -o');
      const nd = get(p, 'node');
      const cpu = (x: Row) => (x.cpu === undefined ? '-' : `${x.cpu.toFixed(2)} s`);
      return [
        p.label ?? basename(p.old),
        `${(p.bytes / 1e6).toFixed(2)} MB`,
        String(p.functions),
        seconds(re, ' s'),
        seconds(ob, ' s'),
        seconds(ck, ' s') + (ck.refused ? ' (refused)' : ''),
        seconds(pk, ' s'),
        ratio(ck.wall, re.wall),
        ratio(pk.wall, re.wall),
        `${cpu(re)} / ${cpu(pk)}`,
        ratio(pk.cpu, re.cpu),
        seconds(nd, ' s'),
        p.loadAfter,
      ];
    }),
  );
  // The figures of a refused pair are not a pack's: say so under the table, with ulp-pack's reasons.
  const notes = pairs.flatMap(refusalLines);
  return notes.length > 0 ? `${table}\n${notes.join('\n')}\n` : table;
}

export interface Compression {
  /** Bytes of both builds, the bundle's two large entries. */
  inputBytes: number;
  /** Per zlib level: median ms of compressing both builds one after the other on one thread, and the compressed size. */
  levels: Array<{ level: number; ms: number; bytes: number }>;
}

export type PackProfile = Profile & {
  library: string;
  wallMs: number;
  compression: Compression;
  /** ulp-pack refused the pair: the profile is of the analysis up to that verdict, no bundle was compressed. */
  refused?: string[];
};

/**
 * What compressing the two builds costs (the bundle is gzip, patches/gzip.ts,
 * level 6): zlib in this process, on one thread, at the bundle's level and
 * at level 1, median of 3. ulp-pack compresses on the thread pool while it
 * analyses, so this is CPU time, not all of it wall time.
 */
function compressionCost(old: string, neu: string): Compression {
  const builds = [readFileSync(old), readFileSync(neu)];
  const levels = [6, 1].map((level) => {
    const times: number[] = [];
    let bytes = 0;
    for (let i = 0; i < 3; i++) {
      const t0 = performance.now();
      bytes = builds.reduce((n, b) => n + gzipSync(b, { level }).length, 0);
      times.push(performance.now() - t0);
    }
    return { level, ms: median(times), bytes };
  });
  return { inputBytes: builds.reduce((n, b) => n + b.length, 0), levels };
}

/** One `ulp-pack -o` under node --cpu-prof, and the cost of the compression it does. */
function profilePack(old: string, neu: string): PackProfile {
  const dir = freshDir(join(BENCH, 'profile-pack'));
  const out = join(BENCH, 'pack', 'profile.ulp');
  const r = runProgram(process.execPath, [
    '--cpu-prof',
    '--cpu-prof-dir',
    dir,
    '--cpu-prof-interval',
    '200',
    BIN,
    old,
    neu,
    '-o',
    out,
    '--created-at',
    '0',
  ]);
  rmSync(out, { force: true });
  const verdict = judgePackRun('ulp-pack under --cpu-prof', r);
  return {
    ...profileIn(dir, 15),
    library: basename(old),
    wallMs: Math.round(r.ms),
    compression: compressionCost(old, neu),
    ...(verdict.refused ? { refused: verdict.reasons } : {}),
  };
}

export function renderCompression(c: Compression): string {
  return markdownTable(
    [`zlib on both builds (${(c.inputBytes / 1e6).toFixed(2)} MB), one thread`, 'ms', 'compressed'],
    c.levels.map((l) => [
      `level ${l.level}${l.level === 6 ? " (the bundle's)" : ''}`,
      l.ms.toFixed(0),
      `${(l.bytes / 1e6).toFixed(2)} MB`,
    ]),
  );
}

function main(): void {
  handleArgs(import.meta.url, {
    values: ['--runs', '--baseline', '--libs', '--json'],
    flags: ['--sizes', '--big', '--profile'],
    operands: 2,
  });
  const { pairs, runs, realSkipped } = args();
  ensureBuilt();
  mkdirSync(join(BENCH, 'pack'), { recursive: true });
  const results: PackPair[] = [];
  const profiled = flag('--profile')
    ? (pairs.find((p) => basename(p.old) === 'libcrypto.so.3') ??
      [...pairs].sort((a, b) => statSync(b.old).size - statSync(a.old).size)[0])
    : undefined;
  let profile: PackProfile | undefined;
  for (const p of pairs) {
    // Big libraries: fewer runs (each pack of libLLVM takes long).
    const n = statSync(p.old).size > 50e6 ? Math.min(runs, 2) : runs;
    const r = measurePair(p, n);
    results.push(r);
    if (!flag('--sizes')) printPair(r);
    else
      process.stderr.write(
        `  ${p.label ?? basename(p.old)}: ulp-pack ${seconds(
          r.rows.find((x) => x.command.startsWith('ulp-pack -o'))!,
          ' s',
        )}, readelf ${seconds(r.rows[0]!, ' s')} (load ${r.loadAfter})\n`,
      );
    if (p === profiled) profile = profilePack(p.old, p.neu);
    // Only the modified copies this script wrote: NEW given on the command line is the user's file, a real build the cache's.
    if (p.own) rmSync(p.neu, { force: true });
  }
  if (flag('--sizes')) {
    console.log(
      `pack time against library size: each library against a copy with one changed byte, ${runs} runs, medians\n`,
    );
    console.log(renderPackSizes(results));
    if (realSkipped) console.log(`(the real libcrypto pair left out: ${realSkipped})`);
  }
  if (profile) {
    console.log(
      `CPU profile of ulp-pack -o on ${profile.library}${profile.refused ? ' (refused the pair: the analysis only, no bundle written)' : ''}: ${profile.wallMs} ms wall, ${profile.totalMs} ms sampled, ${profile.busyMs} ms not idle\n`,
    );
    console.log(renderProfile(profile, 15, 20));
    console.log(renderCompression(profile.compression));
  }
  writeJsonResult({
    runs,
    pairs: results,
    profile: profile ?? null,
    ...(realSkipped ? { realSkipped } : {}),
  });
}

if (import.meta.url === `file://${process.argv[1]}`) main();
