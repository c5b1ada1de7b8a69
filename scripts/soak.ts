/**
 * `npm run soak`: the long forms of the reliability scenarios against real
 * processes, with a report (markdown on stdout, JSON in .bench/ or --out).
 * Exits 1 when any check failed, 64 on a usage error. docs/RELIABILITY.md
 * says what each scenario does and guarantees; test/integration/reliability/ runs the
 * short forms in CI.
 *
 *   npm run soak                                   # defaults: about 12 minutes on 2 cores
 *   npm run soak -- --soak-seconds 30 --kills 20 --interrupts 6 --deaths 10
 *   npm run soak -- --only corpus,env --json       # JSON on stdout instead of markdown
 */
import { cpus, loadavg, release } from 'node:os';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { buildCorpus, runCorpus } from '../lab/soak/corpus.js';
import {
  alreadyTraced,
  concurrentTriggers,
  interleavedTriggers,
  otherUsers,
  targetDies,
  type DeathResult,
  type EnvResult,
} from '../lab/soak/environments.js';
import { buildReliable, makeRunner, ROOT, snapshotDist, type Relro, type Reliable } from '../lab/soak/lib.js';
import { seededRandom } from '../lab/random.js';
import { MILESTONES, type Point } from '../lab/soak/points.js';
import { renderMarkdown, checks, type SoakReport } from '../lab/soak/report.js';
import {
  ATTEMPT_KINDS,
  faultAttempt,
  interruptedSwitch,
  soak,
  STAGING_KINDS,
  summariseFaults,
  type AttemptKind,
  type FaultAttempt,
  type MixedCheck,
  type SoakPattern,
  type SoakResult,
} from '../lab/soak/scenarios.js';

const SCENARIOS = ['soak', 'faults', 'mixed', 'corpus', 'deaths', 'env'] as const;
type Scenario = (typeof SCENARIOS)[number];

interface Options {
  soakSeconds: number;
  soakRuns: Array<{ relro: Relro; pattern: SoakPattern }>;
  kills: number;
  interrupts: number;
  milestones: boolean;
  deaths: number;
  flips: number;
  elfFuzz: number;
  heavy: boolean;
  seed: number;
  runner: 'dist' | 'tsx';
  only: Scenario[];
  json: boolean;
  out: string | undefined;
}

const int = (name: string) => (v: string) => {
  if (!/^\d+$/.test(v)) throw new InvalidArgumentError(`${name} takes a whole number`);
  return Number(v);
};

function parseOptions(argv: string[]): Options {
  const cmd = new Command('soak')
    .description('Long reliability runs of ulp-trigger against real processes (docs/RELIABILITY.md)')
    .option('--soak-seconds <s>', 'length of each soak run', int('--soak-seconds'), 60)
    .option(
      '--soak-runs <list>',
      'soak runs as RELRO/PATTERN (partial|full, pair|stack)',
      'partial/pair,full/pair,partial/stack',
    )
    .option(
      '--kills <n>',
      'SIGKILLs of the trigger at random points (besides one at each milestone)',
      int('--kills'),
      30,
    )
    .option(
      '--interrupts <n>',
      'SIGINTs and as many SIGTERMs at random points (besides the milestones)',
      int('--interrupts'),
      8,
    )
    .option('--no-milestones', 'no signals at the staging milestones (points.ts)')
    .option(
      '--deaths <n>',
      'targets killed at random points of a trigger run (besides the milestones)',
      int('--deaths'),
      20,
    )
    .option('--flips <n>', 'random single-bit flips of a bundle', int('--flips'), 40)
    .option('--elf-fuzz <n>', 'random header mutations of a build given to ulp-pack', int('--elf-fuzz'), 40)
    .option(
      '--heavy',
      'also a 1.2 GiB gzip bomb, a 1.1 GiB sparse bundle and FIFOs (slower, more memory)',
      false,
    )
    .option('--seed <n>', 'seed of every random choice (repeat a run)', int('--seed'), Date.now() % 100000)
    .option(
      '--runner <r>',
      'run the commands from dist/ (built by npm run soak) or the sources through tsx',
      'dist',
    )
    .option('--only <list>', `scenarios to run: ${SCENARIOS.join(',')}`, SCENARIOS.join(','))
    .option('--json', 'print the JSON report on stdout instead of markdown', false)
    .option('--out <file>', 'where to write the JSON report (default .bench/soak-DATE.json)')
    .exitOverride()
    // Errors are printed once, by main(); help still goes to stdout.
    .configureOutput({ writeErr: () => {} });
  cmd.parse(argv, { from: 'user' });
  const o = cmd.opts();
  const soakRuns = String(o.soakRuns)
    .split(',')
    .map((s) => {
      const [relro, pattern] = s.split('/');
      if ((relro !== 'partial' && relro !== 'full') || (pattern !== 'pair' && pattern !== 'stack'))
        throw new InvalidArgumentError(`--soak-runs: "${s}" is not RELRO/PATTERN`);
      return { relro, pattern } as { relro: Relro; pattern: SoakPattern };
    });
  const only = String(o.only).split(',') as Scenario[];
  for (const s of only)
    if (!SCENARIOS.includes(s)) throw new InvalidArgumentError(`--only: unknown scenario "${s}"`);
  if (o.runner !== 'dist' && o.runner !== 'tsx') throw new InvalidArgumentError('--runner is dist or tsx');
  return { ...o, soakRuns, only, out: o.out } as Options;
}

/** Which signals, kinds and points the fault scenario tries. Every milestone with every signal on partial RELRO, SIGKILL on full too, then random points. */
function faultPlan(
  o: Pick<Options, 'kills' | 'interrupts' | 'milestones'>,
  rnd: () => number,
): Array<{ relro: Relro; signal: NodeJS.Signals; kind: AttemptKind; point: Point }> {
  const plan: Array<{ relro: Relro; signal: NodeJS.Signals; kind: AttemptKind; point: Point }> = [];
  if (o.milestones) {
    for (const kind of STAGING_KINDS)
      for (const milestone of MILESTONES) {
        for (const signal of ['SIGKILL', 'SIGINT', 'SIGTERM'] as const)
          plan.push({ relro: 'partial', signal, kind, point: { milestone } });
        plan.push({ relro: 'full', signal: 'SIGKILL', kind, point: { milestone } });
      }
  }
  const random = (): Point => (rnd() < 0.2 ? { afterSpawn: 150 + rnd() * 300 } : { afterAttach: rnd() * 40 });
  const kind = () => ATTEMPT_KINDS[Math.floor(rnd() * ATTEMPT_KINDS.length)]!;
  const relro = (): Relro => (rnd() < 0.5 ? 'partial' : 'full');
  for (let i = 0; i < o.kills; i++)
    plan.push({ relro: relro(), signal: 'SIGKILL', kind: kind(), point: random() });
  for (let i = 0; i < o.interrupts; i++)
    for (const signal of ['SIGINT', 'SIGTERM'] as const)
      plan.push({ relro: relro(), signal, kind: kind(), point: random() });
  return plan;
}

async function main(): Promise<number> {
  let o: Options;
  try {
    o = parseOptions(process.argv.slice(2));
  } catch (e) {
    if (
      (e as { code?: string }).code === 'commander.helpDisplayed' ||
      (e as { code?: string }).code === 'commander.help'
    )
      return 0;
    process.stderr.write(`soak: ${(e as Error).message}\n`);
    return 64;
  }
  const log = (s: string) => process.stderr.write(s + '\n');
  // One run judges one build: a private copy of dist/, whatever rebuilds dist/ meanwhile.
  const snapshot = o.runner === 'dist' ? snapshotDist() : undefined;
  const runner = makeRunner(o.runner, snapshot?.dist);
  const rnd = seededRandom(o.seed);
  const t0 = performance.now();
  const loadStart = loadavg();
  const want = (s: Scenario) => o.only.includes(s);
  const rels = new Map<Relro, Reliable>();
  const rel = (relro: Relro) => {
    if (!rels.has(relro)) rels.set(relro, buildReliable(runner, { relro }));
    return rels.get(relro)!;
  };
  log(`soak: seed ${o.seed}, runner ${o.runner}, scenarios ${o.only.join(',')}`);
  const report: SoakReport = {
    date: new Date().toISOString(),
    machine: {
      cpus: cpus().length,
      model: cpus()[0]?.model ?? 'unknown',
      kernel: release(),
      node: process.version,
      loadAverage: { start: loadStart, end: [] },
    },
    options: { ...o, soakRuns: o.soakRuns.map((r) => `${r.relro}/${r.pattern}`) },
    seconds: 0,
    soak: [],
    faults: { attempts: [], summary: [] },
    mixed: [],
    corpus: undefined,
    deaths: [],
    environments: [],
  };
  try {
    if (want('soak')) {
      for (const run of o.soakRuns) {
        log(`soak: ${run.relro} RELRO, ${run.pattern}, ${o.soakSeconds} s`);
        const r: SoakResult = await soak(runner, rel(run.relro), {
          seconds: o.soakSeconds,
          checkEvery: 5,
          pattern: run.pattern,
          log,
        });
        log(`  ${r.switches} switches, ${r.problems.length} problems`);
        report.soak.push(r);
      }
    }
    if (want('faults')) {
      const plan = faultPlan(o, rnd);
      log(`faults: ${plan.length} attempts`);
      const attempts: FaultAttempt[] = [];
      for (const [i, p] of plan.entries()) {
        const a = await faultAttempt(runner, rel(p.relro), p.signal, p.kind, p.point);
        attempts.push(a);
        if (a.problems.length || (i + 1) % 10 === 0)
          log(
            `  ${i + 1}/${plan.length} ${p.relro} ${a.signal} ${a.kind} ${a.point}: ${a.phase}, ${a.end}${a.problems.length ? ` PROBLEMS: ${a.problems.join('; ').slice(0, 300)}` : ''}`,
          );
      }
      report.faults = { attempts, summary: summariseFaults(attempts) };
    }
    if (want('mixed')) {
      const mixed: MixedCheck[] = [];
      for (const relro of ['partial', 'full'] as const)
        for (const d of ['apply', 'revert'] as const)
          mixed.push(await interruptedSwitch(runner, rel(relro), d));
      report.mixed = mixed;
      log(`mixed: ${mixed.filter((m) => m.problems.length).length} of ${mixed.length} with problems`);
    }
    if (want('corpus')) {
      const dir = mkdtempSync(join(tmpdir(), 'ulp-corpus-'));
      try {
        const entries = buildCorpus(rel('partial'), dir, {
          flips: o.flips,
          elfFuzz: o.elfFuzz,
          seed: o.seed,
          heavy: o.heavy,
        });
        log(`corpus: ${entries.length} entries`);
        report.corpus = await runCorpus(runner, rel('partial'), entries, (c) => {
          if (!c.ok) log(`  FAIL ${c.tool} [${c.group}] ${c.name}: ${c.problems.join('; ').slice(0, 300)}`);
        });
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    }
    if (want('deaths')) {
      const points: Array<{ point: Point; kind: 'apply-fresh' | 'revert' }> = MILESTONES.map((milestone) => ({
        point: { milestone },
        kind: 'apply-fresh' as const,
      }));
      for (let i = 0; i < o.deaths; i++)
        points.push({ point: { afterAttach: rnd() * 40 }, kind: rnd() < 0.75 ? 'apply-fresh' : 'revert' });
      log(`deaths: ${points.length} attempts`);
      const deaths: DeathResult[] = [];
      for (const p of points) {
        const d = await targetDies(runner, rel('partial'), p.point, p.kind);
        deaths.push(d);
        if (d.problems.length) log(`  ${d.name}: ${d.problems.join('; ').slice(0, 300)}`);
      }
      report.deaths = deaths;
    }
    if (want('env')) {
      const env: EnvResult[] = [];
      env.push(await alreadyTraced(runner, rel('partial')));
      for (const ms of [0, 30, 100]) env.push(await concurrentTriggers(runner, rel('partial'), ms));
      for (const relro of ['partial', 'full'] as const)
        env.push(await interleavedTriggers(runner, rel(relro)));
      env.push(...(await otherUsers(runner, rel('partial'))));
      for (const e of env) if (e.problems.length) log(`  ${e.name}: ${e.problems.join('; ')}`);
      report.environments = env;
    }
  } finally {
    for (const r of rels.values()) r.dispose();
    snapshot?.dispose();
  }
  report.seconds = (performance.now() - t0) / 1000;
  report.machine.loadAverage.end = loadavg();
  const out = resolve(o.out ?? join(ROOT, '.bench', `soak-${report.date.replace(/[:.]/g, '-')}.json`));
  mkdirSync(dirname(out), { recursive: true });
  const json =
    JSON.stringify(report, (_k, v) => (typeof v === 'bigint' ? `0x${v.toString(16)}` : v), 2) + '\n';
  writeFileSync(out, json);
  if (o.json) process.stdout.write(json);
  else process.stdout.write(renderMarkdown(report));
  log(`soak: JSON report in ${out}`);
  return checks(report).every((c) => c.ok) ? 0 : 1;
}

process.exitCode = await main();
