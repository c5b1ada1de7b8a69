/**
 * Pack time against `readelf -a` on the same two files, side by side in one
 * run, medians of several runs, as a ratio. `objdump -d` on both files is
 * printed too: the packer disassembles both builds completely (to compare
 * code with addresses masked), which readelf does not do.
 *
 *   npx tsx scripts/bench-pack.ts [OLD.so NEW.so] [--runs N]
 *
 * Without files: OLD is the system's libcrypto.so.3 and NEW a copy of it
 * with a code-only change (OpenSSL_version_num returns another number) and
 * its own build-id, written to .bench/. The command is run as users run it,
 * compiled (dist/bin/ulp-pack.js; `npm run build` first when dist is older
 * than the sources), as a fresh process each time, like readelf. Runs are
 * interleaved so that load on the machine affects both sides alike; wall
 * time and CPU time (user + system, from /usr/bin/time when present) are
 * both reported, since wall time is noisy on a shared machine.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseElf } from '../elf/index.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const BENCH = join(ROOT, '.bench');
const BIN = join(ROOT, 'dist', 'bin', 'ulp-pack.js');
const TIME = existsSync('/usr/bin/time') ? '/usr/bin/time' : undefined;

function args(): { old: string; neu: string; runs: number } {
  const argv = process.argv.slice(2);
  const i = argv.indexOf('--runs');
  const runs = i >= 0 ? Number(argv.splice(i, 2)[1]) : 7;
  if (argv.length === 2) return { old: resolve(argv[0]!), neu: resolve(argv[1]!), runs };
  return { ...defaultPair(), runs };
}

/** libcrypto.so.3 and a copy with a one-instruction change and a new build-id. */
function defaultPair(): { old: string; neu: string } {
  const old = '/usr/lib/x86_64-linux-gnu/libcrypto.so.3';
  if (!existsSync(old)) throw new Error(`${old} not found: give OLD.so NEW.so`);
  mkdirSync(BENCH, { recursive: true });
  const neu = join(BENCH, 'libcrypto.so.3.modified');
  const bytes = Buffer.from(readFileSync(old));
  const obj = parseElf(bytes);
  const fn = obj.dynamicSymbols.find((s) => s.name === 'OpenSSL_version_num' && s.defined);
  const seg = obj.loadSegments.find((p) => fn && fn.value >= p.vaddr && fn.value < p.vaddr + p.filesz);
  if (!fn || !seg) throw new Error('OpenSSL_version_num not found in libcrypto.so.3');
  const at = Number(seg.offset + (fn.value - seg.vaddr));
  if (bytes[at] !== 0xb8) throw new Error('OpenSSL_version_num does not start with mov $imm32, %eax');
  bytes[at + 1] ^= 0x01; // the version number it returns
  const note = obj.notes.find((n) => n.name === 'GNU' && n.type === 3)!;
  const id = bytes.indexOf(note.desc);
  bytes[id + note.desc.length - 1] ^= 0xff; // a different build is a different build-id
  writeFileSync(neu, bytes);
  return { old, neu };
}

function newestMtime(dir: string): number {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) newest = Math.max(newest, newestMtime(p));
    else if (e.name.endsWith('.ts')) newest = Math.max(newest, statSync(p).mtimeMs);
  }
  return newest;
}

function ensureBuilt(): void {
  const sources = Math.max(...['common', 'elf', 'patches', 'packer', 'bin'].map((d) => newestMtime(join(ROOT, d))));
  if (existsSync(BIN) && statSync(BIN).mtimeMs >= sources) return;
  process.stderr.write('bench-pack: building dist/ (npm run build)\n');
  spawnSync('npm', ['run', 'build', '--silent'], { cwd: ROOT, stdio: 'inherit' });
  if (!existsSync(BIN)) throw new Error('dist/bin/ulp-pack.js was not built');
}

interface Sample {
  wall: number;
  cpu: number | undefined;
}

/** Runs one command line and returns its wall and CPU seconds; stdout is discarded. */
function timed(cmd: string, argv: string[]): Sample {
  const t0 = process.hrtime.bigint();
  const r = TIME ? spawnSync(TIME, ['-f', '%U %S', cmd, ...argv], { encoding: 'utf8', maxBuffer: 1 << 28 }) : spawnSync(cmd, argv, { encoding: 'utf8', maxBuffer: 1 << 28 });
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.status !== 0) throw new Error(`${cmd} ${argv.join(' ')} exited ${r.status}: ${r.stderr.slice(-500)}`);
  const m = TIME ? /(\d+\.\d+) (\d+\.\d+)\s*$/.exec(r.stderr) : null;
  return { wall, cpu: m ? Number(m[1]) + Number(m[2]) : undefined };
}

const sum = (a: Sample, b: Sample): Sample => ({ wall: a.wall + b.wall, cpu: a.cpu !== undefined && b.cpu !== undefined ? a.cpu + b.cpu : undefined });

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function main(): void {
  const { old, neu, runs } = args();
  ensureBuilt();
  const out = join(BENCH, 'bench.ulp');
  mkdirSync(BENCH, { recursive: true });
  const cases: Record<string, () => Sample> = {
    'readelf -a (both files)': () => sum(timed('readelf', ['-a', old]), timed('readelf', ['-a', neu])),
    // ulp-pack decodes every instruction of both builds; objdump -d is the reference for that much work.
    'objdump -d (both files)': () => sum(timed('objdump', ['-d', old]), timed('objdump', ['-d', neu])),
    'ulp-pack --check': () => timed(process.execPath, [BIN, old, neu, '--check']),
    'ulp-pack -o (writes the bundle)': () => timed(process.execPath, [BIN, old, neu, '-o', out, '--created-at', '0']),
    'node startup (empty script)': () => timed(process.execPath, ['-e', '0']),
  };
  const samples: Record<string, Sample[]> = Object.fromEntries(Object.keys(cases).map((k) => [k, []]));
  cases['ulp-pack -o (writes the bundle)']!(); // warm the page cache for every file involved
  for (let i = 0; i < runs; i++) for (const [k, f] of Object.entries(cases)) samples[k]!.push(f());
  rmSync(out, { force: true });

  const size = (p: string) => (statSync(p).size / 1e6).toFixed(1);
  console.log(`pack ${old} (${size(old)} MB) -> ${neu} (${size(neu)} MB), ${runs} runs, medians`);
  const base = samples['readelf -a (both files)']!;
  const bw = median(base.map((s) => s.wall));
  const bc = base[0]!.cpu !== undefined ? median(base.map((s) => s.cpu!)) : undefined;
  console.log(`${'command'.padEnd(34)} ${'wall s'.padStart(8)} ${'x readelf'.padStart(10)} ${'cpu s'.padStart(8)} ${'x readelf'.padStart(10)}`);
  for (const [k, xs] of Object.entries(samples)) {
    const w = median(xs.map((s) => s.wall));
    const c = xs[0]!.cpu !== undefined ? median(xs.map((s) => s.cpu!)) : undefined;
    const ratio = (a: number, b: number | undefined) => (b ? (a / b).toFixed(2) : '-');
    console.log(`${k.padEnd(34)} ${w.toFixed(3).padStart(8)} ${ratio(w, bw).padStart(10)} ${(c?.toFixed(3) ?? '-').padStart(8)} ${(c !== undefined ? ratio(c, bc) : '-').padStart(10)}`);
  }
}

main();
