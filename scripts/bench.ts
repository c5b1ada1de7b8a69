/**
 * `npm run bench`: runs the benchmark scripts and writes one report, as
 * markdown and JSON, to .bench/ (git-ignored): report-<time>.{md,json} and
 * latest.{md,json}.
 *
 *   npm run bench [-- --quick] [-- --only pause,call,all,pack,elf,ptrace] [-- --docs] [-- --wait-load 1.0]
 *
 *   --quick        fewer cycles, rounds, runs and processes, three libraries (a smoke run, about 10 min)
 *   --only LIST    run some sections only (default: all six, in the order above)
 *   --docs         also paste the report into docs/PERFORMANCE.md (between its bench markers)
 *   --wait-load X  first wait (up to 30 min) until the 1-minute load average is below X
 *
 * The report opens with the goals table of issue 13 (lab/bench/goals.ts):
 * every goal with its figure, reading, ratio to the goal and to the floor
 * measured beside it, met or not, and the machine and load of the section it
 * comes from; a goal whose section was not run or failed, or whose case could
 * not run here, is listed with the reason instead of a number. The JSON has
 * the same rows under `goals`.
 *
 * Every figure is a ratio or a median taken side by side in one run; the
 * load average is printed with every section, since the machine may be
 * shared. Nothing here is asserted by tests.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { renderAll, type AllRow } from './bench-all.js';
import { renderCall, type CallResult } from './bench-call.js';
import { renderElf, type ElfResult } from './bench-elf.js';
import { renderCompression, renderPackSizes, type PackPair, type PackProfile } from './bench-pack.js';
import { renderShare, type ShareRow } from '../lab/bench/redirect-share.js';
import {
  renderCases,
  renderPause,
  renderPauseProfile,
  type CaseRow,
  type PauseProfile,
  type PauseRow,
} from './bench-pause.js';
import { renderPtrace, type PtraceRow } from './bench-ptrace.js';
import { arg, BENCH_DIR, ensureBuilt, flag, loadAverage, machine, ROOT, sleep } from '../lab/bench/common.js';
import { goalRows, renderGoals, type GoalInputs, type GoalRow, type SectionOf } from '../lab/bench/goals.js';
import { renderProfile, type Profile } from '../lab/bench/profile.js';
import { handleArgs } from '../lab/script-args.js';

handleArgs(import.meta.url, { values: ['--only', '--wait-load'], flags: ['--quick', '--docs'] });

type Section = 'pause' | 'call' | 'all' | 'pack' | 'elf' | 'ptrace';
const ALL_SECTIONS: Section[] = ['pause', 'call', 'all', 'pack', 'elf', 'ptrace'];
const QUICK = flag('--quick');
const ONLY = (arg('--only')?.split(',') as Section[] | undefined) ?? ALL_SECTIONS;
const UNKNOWN = ONLY.filter((x) => !ALL_SECTIONS.includes(x));
if (UNKNOWN.length) {
  process.stderr.write(
    `bench: unknown section ${UNKNOWN.join(', ')} (sections: ${ALL_SECTIONS.join(', ')})\n`,
  );
  process.exit(64);
}

const ARGS: Record<Section, string[]> = QUICK
  ? {
      // Every option of the full run, on less work: the quick run is the smoke test of every code path.
      pause: ['--cycles', '5', '--profile'],
      call: ['--rounds', '3'],
      all: ['--processes', '100', '--sleep-processes', '10', '--profile'],
      pack: ['--sizes', '--runs', '2', '--libs', 'libz.so.1,libssl.so.3,libcrypto.so.3', '--profile'],
      elf: ['--runs', '5'],
      ptrace: ['--runs', '20'],
    }
  : {
      pause: ['--cycles', '15', '--profile'],
      call: ['--rounds', '12'],
      all: ['--processes', '100,1000', '--sleep-processes', '100', '--jobs', '1,2', '--profile'],
      pack: ['--sizes', '--runs', '5', '--profile'],
      elf: ['--runs', '25'],
      ptrace: ['--runs', '200'],
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
  const r = spawnSync(
    process.execPath,
    ['--import', 'tsx', join(ROOT, 'scripts', `bench-${section}.ts`), ...ARGS[section], '--json', json],
    { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'] },
  );
  const seconds = (performance.now() - t0) / 1000;
  const ok = r.status === 0 && existsSync(json);
  return {
    section,
    ok,
    seconds,
    loadBefore,
    loadAfter: loadAverage(),
    data: ok ? JSON.parse(readFileSync(json, 'utf8')) : null,
    ...(ok ? {} : { error: `exited ${r.status ?? r.signal}` }),
  };
}

/** Each goal's section as the goals table reads it: its data and load, or why the run has none. */
function goalInputs(runs: SectionRun[]): GoalInputs {
  const of = (section: Section): SectionOf<any> => {
    const r = runs.find((x) => x.section === section);
    if (!r) return { missing: `the ${section} section was not run (--only ${ONLY.join(',')})` };
    if (!r.ok) return { missing: `the ${section} section failed (${r.error})` };
    return { data: r.data, load: `${r.loadBefore} → ${r.loadAfter}` };
  };
  return { pause: of('pause'), all: of('all'), pack: of('pack') };
}

function renderReport(
  runs: SectionRun[],
  goals: readonly GoalRow[],
  meta: {
    started: string;
    commit: string;
    machine: ReturnType<typeof machine>;
    loadStart: string;
    loadEnd: string;
    quick: boolean;
  },
): string {
  const m = meta.machine;
  const out: string[] = [];
  out.push(
    `Run ${meta.started}${meta.quick ? ' (--quick)' : ''}, commit ${meta.commit}. Machine: ${m.cpus} × ${m.cpu}, ${m.memoryGiB} GiB, ${m.virtualization}; ${m.os}, Linux ${m.kernel}; Node ${m.node}, gcc ${m.gcc}. Load average (1/5/15 min) at start ${meta.loadStart}, at end ${meta.loadEnd}.\n`,
  );
  out.push(
    `### Goals of issue 13\n\nEvery goal of the issue against this run's figure. "reading / goal" is the reading over the goal's bound (a rate: under 1 is short of it); "floor" is what the same work costs without the tool, measured beside it (the pause: stop, read back, the same writes and resume on the same process; \`--all\`: seize, one remote getpid and detach per process of the same fleet; a command: node starting an empty script), and "reading / floor" how many times the floor the reading costs. The pause rows come from the real cases of the pause section, the \`--all\` rows from its largest fleet waiting in pause(), the pack rows from the pack section. The load is that of the row's own measurement, or of its section.\n`,
  );
  out.push(renderGoals(goals, `${m.cpus} × ${m.cpu}`));
  for (const r of runs) {
    if (!r.ok) {
      out.push(`### ${r.section}\n\nfailed: ${r.error}\n`);
      continue;
    }
    if (r.section === 'pause') {
      const d = r.data as { cycles: number; rows: PauseRow[]; profile: PauseProfile | null };
      out.push(
        `### Pause per apply and revert\n\nEvery thread stopped, as the trigger reports it (\`pauseMs\`, the longest \`all\` pause of \`switch.pauses\`), with the compiled \`ulp-trigger\`, ${d.cycles} apply/revert cycles per row after a first apply (which also stages the build and makes the data shared). "slots" is the number of GOT slots the switch rewrites. Load ${r.loadBefore} → ${r.loadAfter}; ${r.seconds.toFixed(0)} s.\n`,
      );
      out.push(renderPause(d.rows));
      if (d.profile) {
        const p = d.profile;
        out.push(
          `\nWhere the pause goes, on the ${p.threads}-thread, ${p.objects}-object process (${p.slots} slots): three more applies of the command under \`node --cpu-prof\` (pauses ${p.pausesMs.map((x) => x.toFixed(2)).join(', ')} ms), inclusive time of the functions that run while every thread is stopped; then the primitives the switch uses, timed on that process's own GOT slots inside real stops (each slot written back with the value it holds); then the same apply/revert made by a long-lived process, where V8 has compiled the switch code after the first one.\n`,
        );
        out.push(renderPauseProfile(p));
      }
      const share = (r.data as { redirects?: { rows: ShareRow[]; skipped?: string } }).redirects;
      if (share) {
        out.push(
          `\nThe entry redirects' share of the pause (lab/bench/redirect-share.ts): apply/revert cycles made from the benchmark's process (runOne, what the command runs), with every write of the pause (one \`/proc/PID/mem\` write per block of patches) timed and sorted by where it lands: code pages and the \`ulp:redirects:\` journal (the redirects) or elsewhere (GOT slots, data pointers), in ms and write calls; stop, read back + compare and resume are the switch's own phases (\`switch.pauseIo\`). Medians of ${d.cycles} warm cycles; the first apply runs the switch code cold in V8.${share.skipped ? ` Real libcrypto left out: ${share.skipped}.` : ''}\n`,
        );
        out.push(renderShare(share.rows));
      }
      const cases = (r.data as { cases?: CaseRow[] }).cases ?? [];
      const skipped =
        (r.data as { casesSkipped?: Array<{ key: string; reason: string }> }).casesSkipped ?? [];
      if (cases.length || skipped.length) {
        out.push(
          `\nThe real cases (the Debian builds 3.0.19 -> 3.0.20 in Debian's python3, and libdemo in a 27-thread C program): each apply and revert of ${d.cycles} cycles beside its floor, measured right after it on the same process (stop every thread, read back as many pages with one process_vm_readv, make as many 8-byte writes of what was read, resume); "command" is the wall time of the compiled ulp-trigger, node's start included, beside node starting an empty script.\n`,
        );
        if (cases.length) out.push(renderCases(cases));
        for (const k of skipped) out.push(`Case ${k.key} left out: ${k.reason}.\n`);
      }
    } else if (r.section === 'call') {
      const d = r.data as CallResult;
      out.push(
        `### Cost of a call into the patched library\n\nns per call through the executable's PLT/GOT, timed by the program itself, ${d.rounds} rounds in one process; each round measures the three states (order rotated), ${d.callsPerLoop / 1e6} M calls of call_tiny (an eighth as many of call_small) per loop, five loops per state and round;ratios are taken within each round and their median (and range) over rounds is shown, once from each state's median loop and once from its fastest loop (interference on a shared machine only adds time). The ns columns are the median over rounds (median loop) and the fastest loop of the run (fastest loop). Trampoline: a ${d.trampolineBytes}-byte jump written at the old build's entry. Load ${r.loadBefore} → ${r.loadAfter}.\n`,
      );
      out.push(renderCall(d));
    } else if (r.section === 'all') {
      const d = r.data as {
        rows: AllRow[];
        profile: (Profile & { wallMs: number; processes: number }) | null;
      };
      out.push(
        `### \`ulp-trigger --all\` on many processes\n\nA fleet of small single-threaded processes using libdemo, each calling it once a second, waiting in between either in pause() (an untimed wait, like a worker in epoll_wait(-1) or read()) or in nanosleep(1 s) (a timed sleep). The first table gives processes/s (from the command's own \`totalMs\`) for the first apply, the revert and a re-apply against the issue's goals (500/s, 1000/s, 1000/s), and the ptrace floor on the same processes (per process: seize, stop one thread, one remote getpid, detach) with the ratios; "commands" is the wall time of the compiled command, node start included. Per-process times come from \`runAll()\` run in the benchmark's process on a fresh fleet (the first apply stages the build in each process): read = snapshot, checks and decision; stage = borrowing a thread, the stub page, fork handlers, unwinder registration, mapping and relocating the build; switch = the pause and the detach. libpulp reports about 4000 processes in 4 s (1000/s). Load ${r.loadBefore} → ${r.loadAfter}; ${r.seconds.toFixed(0)} s.\n`,
      );
      out.push(renderAll(d.rows));
      if (d.profile) {
        out.push(
          `\nCPU profile of the command's first apply on ${d.profile.processes} processes (\`node --cpu-prof\`): ${d.profile.wallMs} ms wall, ${d.profile.totalMs} ms sampled of which ${d.profile.busyMs} ms not idle; self time by file and by function (top 10), inclusive time of the project's functions (top 25; runtime/sys/wait.ts is the tracer waiting for the target):\n`,
        );
        out.push(renderProfile(d.profile, 10, 25));
      }
    } else if (r.section === 'pack') {
      const d = r.data as {
        runs: number;
        pairs: PackPair[];
        profile: PackProfile | null;
        realSkipped?: string;
      };
      out.push(
        `### Pack time against library size\n\nEach system library against a copy with one changed byte and a new build-id, then the real pair of the goal (Debian's libcrypto 3.0.19 -> 3.0.20${d.realSkipped ? `: left out, ${d.realSkipped}` : ''}), the compiled \`ulp-pack -o\` as a fresh process next to \`readelf -a\` and \`objdump -d\` on the same two files, ${d.runs} interleaved runs, medians of wall time; CPU time (user + system) from /usr/bin/time, whose resolution is 10 ms. Load ${r.loadBefore} → ${r.loadAfter}; ${r.seconds.toFixed(0)} s.\n`,
      );
      out.push(renderPackSizes(d.pairs));
      if (d.profile) {
        out.push(
          `\nCPU profile of \`ulp-pack -o\` on ${d.profile.library} (\`node --cpu-prof\`, main thread): ${d.profile.wallMs} ms wall, ${d.profile.totalMs} ms sampled of which ${d.profile.busyMs} ms not idle ("(idle)": waiting for the thread pool's gzip); self time by file and by function (top 10), inclusive time of the project's functions (top 15):\n`,
        );
        out.push(renderProfile(d.profile, 10, 15));
        if (d.profile.compression) out.push(renderCompression(d.profile.compression));
      }
    } else if (r.section === 'elf') {
      const d = r.data as ElfResult;
      out.push(
        `### Parsing ${d.file.replace(/^.*\//, '')} (${(d.bytes / 1e6).toFixed(2)} MB)\n\nThe ELF reader (elf/) reads the file and parses everything (headers, dynamic section, both symbol tables with versions, every relocation, notes) and looks up every defined dynamic symbol through the hash tables, in the benchmark's process, alternating with \`readelf -a -W\` as a fresh process. ${d.facts}. Load ${r.loadBefore} → ${r.loadAfter}.\n`,
      );
      out.push(renderElf(d));
    } else if (r.section === 'ptrace') {
      const d = r.data as { rows: PtraceRow[] };
      out.push(
        `### Attach, one remote syscall, detach\n\nThe time every thread is stopped for \`stopAll()\` + one remote \`getpid\` + \`detach()\` (runtime/ directly, no trigger), as the session measures it, from the first PTRACE_INTERRUPT to the last PTRACE_DETACH; attaching (PTRACE_SEIZE, which stops nothing) is shown apart. "idle" workers sleep 1 ms per step, "busy" ones spin on the CPU (on 2 cores, 64 spinning threads wait for a CPU to take the stop). "floor" is the same stop and detach with bare ptrace calls and no remote syscall, measured alternately in the same process. Load ${r.loadBefore} → ${r.loadAfter}; ${r.seconds.toFixed(0)} s.\n`,
      );
      out.push(renderPtrace(d.rows));
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
  const goals = goalRows(goalInputs(runs));
  const md = renderReport(runs, goals, meta);
  const json =
    JSON.stringify(
      { ...meta, goals, sections: Object.fromEntries(runs.map((r) => [r.section, r])) },
      null,
      2,
    ) + '\n';
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
