/**
 * `npm run bench`: runs the benchmark scripts and writes one report, as
 * markdown and JSON, to .bench/ (git-ignored): report-<time>.{md,json} and
 * latest.{md,json}.
 *
 *   npm run bench [-- --quick] [-- --only pause,call,all,pack] [-- --docs] [-- --wait-load 1.0]
 *
 *   --quick        fewer cycles and rounds, 100 processes only, three libraries (a smoke run, ~3 min)
 *   --only LIST    run some sections only
 *   --docs         also paste the report into docs/PERFORMANCE.md (between its bench markers)
 *   --wait-load X  first wait (up to 30 min) until the 1-minute load average is below X
 *
 * Every figure is a ratio or a median taken side by side in one run; the
 * load average is printed with every section, since the machine may be
 * shared. Nothing here is asserted by tests.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { renderAll, type AllRow, type ProfileEntry } from './bench-all.js';
import { renderCall, type CallResult } from './bench-call.js';
import { renderPackSizes, type PackPair } from './bench-pack.js';
import { renderPause, type PauseRow } from './bench-pause.js';
import { arg, BENCH_DIR, ensureBuilt, flag, loadAverage, machine, markdownTable, ROOT, sleep } from './bench/common.js';

type Section = 'pause' | 'call' | 'all' | 'pack';
const ALL_SECTIONS: Section[] = ['pause', 'call', 'all', 'pack'];
const QUICK = flag('--quick');
const ONLY = (arg('--only')?.split(',') as Section[] | undefined) ?? ALL_SECTIONS;

const ARGS: Record<Section, string[]> = QUICK
  ? {
      pause: ['--cycles', '5'],
      call: ['--rounds', '3'],
      all: ['--processes', '100'],
      pack: ['--sizes', '--runs', '2', '--libs', 'libz.so.1,libssl.so.3,libcrypto.so.3'],
    }
  : {
      pause: ['--cycles', '15'],
      call: ['--rounds', '12'],
      all: ['--processes', '100,1000', '--profile'],
      pack: ['--sizes', '--runs', '5'],
    };

interface SectionRun {
  section: Section;
  ok: boolean;
  seconds: number;
  loadBefore: string;
  loadAfter: string;
  data: any;
  error?: string;
}

function git(args: string[]): string {
  return spawnSync('git', args, { cwd: ROOT, encoding: 'utf8' }).stdout?.trim() ?? '';
}

function runSection(section: Section, dir: string): SectionRun {
  const json = join(dir, `${section}.json`);
  const loadBefore = loadAverage();
  const t0 = performance.now();
  process.stderr.write(`\n== ${section} (load ${loadBefore})\n`);
  const r = spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'scripts', `bench-${section}.ts`), ...ARGS[section], '--json', json], { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'] });
  const seconds = (performance.now() - t0) / 1000;
  const ok = r.status === 0 && existsSync(json);
  return { section, ok, seconds, loadBefore, loadAfter: loadAverage(), data: ok ? JSON.parse(readFileSync(json, 'utf8')) : null, ...(ok ? {} : { error: `exited ${r.status ?? r.signal}` }) };
}

function renderReport(runs: SectionRun[], meta: { started: string; commit: string; machine: ReturnType<typeof machine>; loadStart: string; loadEnd: string; quick: boolean }): string {
  const m = meta.machine;
  const out: string[] = [];
  out.push(`Run ${meta.started}${meta.quick ? ' (--quick)' : ''}, commit ${meta.commit}. Machine: ${m.cpus} × ${m.cpu}, ${m.memoryGiB} GiB, ${m.virtualization}; ${m.os}, Linux ${m.kernel}; Node ${m.node}, gcc ${m.gcc}. Load average (1/5/15 min) at start ${meta.loadStart}, at end ${meta.loadEnd}.\n`);
  for (const r of runs) {
    if (!r.ok) {
      out.push(`### ${r.section}\n\nfailed: ${r.error}\n`);
      continue;
    }
    if (r.section === 'pause') {
      const d = r.data as { cycles: number; rows: PauseRow[] };
      out.push(`### Pause per apply and revert\n\nEvery thread stopped, as the trigger reports it (\`pauseMs\`, the longest \`all\` pause of \`switch.pauses\`), with the compiled \`ulp-trigger\`, ${d.cycles} apply/revert cycles per row after a first apply (which also stages the build and makes the data shared). "slots" is the number of GOT slots the switch rewrites. Load ${r.loadBefore} → ${r.loadAfter}; ${r.seconds.toFixed(0)} s.\n`);
      out.push(renderPause(d.rows));
    } else if (r.section === 'call') {
      const d = r.data as CallResult;
      out.push(`### Cost of a call into the patched library\n\nns per call through the executable's PLT/GOT, timed by the program itself, ${d.rounds} rounds in one process; each round measures the three states (order rotated), ratios are per round, the median (and range) over rounds is shown. Trampoline: a ${d.trampolineBytes}-byte jump written at the old build's entry. Load ${r.loadBefore} → ${r.loadAfter}.\n`);
      out.push(renderCall(d));
    } else if (r.section === 'all') {
      const d = r.data as { rows: AllRow[]; profile: { functions: ProfileEntry[]; files: ProfileEntry[]; totalMs: number; wallMs: number } | null };
      out.push(`### \`ulp-trigger --all\` on many processes\n\nA fleet of small processes using libdemo. "command" is the wall time of the compiled command (node start included); totalMs is its own figure. Per-process times come from \`runAll()\` run in the benchmark's process on a fresh fleet (the first apply stages the build in each process): read = snapshot, checks and decision; stage = borrowing a thread, the stub page, mapping and relocating the build; switch = the pause and the detach. libpulp reports about 4000 processes in 4 s (1000/s). Load ${r.loadBefore} → ${r.loadAfter}.\n`);
      out.push(renderAll(d.rows));
      if (d.profile) {
        out.push(`\nCPU profile of the command's first apply on the largest fleet (\`node --cpu-prof\`): ${d.profile.wallMs} ms wall, ${d.profile.totalMs} ms sampled; self time by file and by function (top 10):\n`);
        out.push(markdownTable(['file', 'self ms', 'share'], d.profile.files.slice(0, 10).map((f) => [f.name, String(f.selfMs), `${(f.share * 100).toFixed(1)} %`])));
        out.push('');
        out.push(markdownTable(['function', 'self ms', 'share'], d.profile.functions.slice(0, 10).map((f) => [f.name, String(f.selfMs), `${(f.share * 100).toFixed(1)} %`])));
      }
    } else if (r.section === 'pack') {
      const d = r.data as { runs: number; pairs: PackPair[] };
      out.push(`### Pack time against library size\n\nEach system library against a copy with one changed byte and a new build-id, the compiled \`ulp-pack -o\` as a fresh process next to \`readelf -a\` and \`objdump -d\` on the same two files, ${d.runs} interleaved runs, medians of wall time (CPU ratio from /usr/bin/time). Load ${r.loadBefore} → ${r.loadAfter}.\n`);
      out.push(renderPackSizes(d.pairs));
    }
    out.push('');
  }
  return out.join('\n');
}

async function main(): Promise<void> {
  const waitLoad = arg('--wait-load');
  if (waitLoad) {
    const deadline = Date.now() + 30 * 60_000;
    while (loadavg()[0]! >= Number(waitLoad) && Date.now() < deadline) {
      process.stderr.write(`bench: load ${loadAverage()}, waiting for < ${waitLoad}\n`);
      await sleep(30_000);
    }
  }
  ensureBuilt();
  const started = new Date().toISOString().replace(/\.\d+Z$/, 'Z');
  const stamp = started.replace(/[:]/g, '').replace(/-/g, '');
  const dir = join(BENCH_DIR, `run-${stamp}`);
  mkdirSync(dir, { recursive: true });
  const commit = `${git(['rev-parse', '--short', 'HEAD'])}${git(['status', '--porcelain', '--untracked-files=no']) ? ' (with uncommitted changes)' : ''}`;
  const loadStart = loadAverage();
  const runs: SectionRun[] = [];
  for (const s of ALL_SECTIONS.filter((x) => ONLY.includes(x))) runs.push(runSection(s, dir));
  const meta = { started, commit, machine: machine(), loadStart, loadEnd: loadAverage(), quick: QUICK };
  const md = renderReport(runs, meta);
  const json = JSON.stringify({ ...meta, sections: Object.fromEntries(runs.map((r) => [r.section, r])) }, null, 2) + '\n';
  for (const name of [`report-${stamp}`, 'latest']) {
    writeFileSync(join(BENCH_DIR, `${name}.md`), md);
    writeFileSync(join(BENCH_DIR, `${name}.json`), json);
  }
  process.stdout.write('\n' + md);
  process.stderr.write(`\nbench: wrote .bench/report-${stamp}.{md,json} and .bench/latest.{md,json}\n`);
  if (flag('--docs')) {
    const doc = join(ROOT, 'docs', 'PERFORMANCE.md');
    const text = readFileSync(doc, 'utf8');
    const begin = '<!-- bench:begin -->';
    const end = '<!-- bench:end -->';
    const a = text.indexOf(begin);
    const b = text.indexOf(end);
    if (a < 0 || b < a) throw new Error(`docs/PERFORMANCE.md has no ${begin} ... ${end} markers`);
    writeFileSync(doc, text.slice(0, a + begin.length) + '\n' + md + '\n' + text.slice(b));
    process.stderr.write('bench: pasted the report into docs/PERFORMANCE.md\n');
  }
  if (runs.some((r) => !r.ok)) process.exitCode = 1;
}

await main();
