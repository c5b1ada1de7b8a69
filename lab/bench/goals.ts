/**
 * The goals of issue 13 ("a switch real servers do not feel, an apply in a
 * second, a fleet in seconds") read off one `npm run bench` run: for each
 * goal, the figure measured, the reading, the goal, the ratio of one to the
 * other, the floor measured beside it on the same process or fleet and the
 * ratio to that, whether the goal is met, and the load of the section it
 * comes from. Pure: the sections' JSON in, rows and a markdown table out.
 *
 * A goal whose figure is not in the run (a section not run or failed, a case
 * that could not run here, a fleet smaller than the goal's) gets its row
 * with the reason instead of a number: the table always lists every goal.
 */
import { fmtMs, markdownTable } from './format.js';

/** A section's JSON with its load average, or why the run has none. */
export type SectionOf<T> = { data: T; load: string } | { missing: string };

/** What the goals read of a real case of scripts/bench-pause.ts (CaseRow). */
export interface PauseCaseLike {
  key: string;
  name: string;
  threads: number;
  pause: { median: number; p99: number };
  floor: { median: number; p99: number };
  ratio: number;
  first: { commandMs: number };
  nodeStartMs?: number;
  loadBefore: string;
  loadAfter: string;
}

export interface PauseData {
  cases?: PauseCaseLike[];
  casesSkipped?: Array<{ key: string; reason: string }>;
}

/** What the goals read of a row of scripts/bench-all.ts (AllRow). */
export interface FleetRowLike {
  processes: number;
  mode: string;
  jobs: number;
  apply: { totalMs: number };
  revert: { totalMs: number };
  reapply: { totalMs: number };
  floorPerSec: number;
  loadBefore: string;
  loadAfter: string;
}

export interface FleetData {
  rows: FleetRowLike[];
  /** `ulp-trigger --all`'s own --jobs for the fleet's size on the machine that ran it (trigger/all.ts autoJobs), by fleet size. */
  defaultJobs?: Record<string, number>;
}

/** What the goals read of a pair of scripts/bench-pack.ts (PackPair). */
export interface PackPairLike {
  old: string;
  label?: string;
  real?: boolean;
  rows: Array<{ command: string; wall?: number; cpu?: number; refused?: string[] }>;
  loadAfter: string;
}

export interface PackData {
  pairs: PackPairLike[];
  realSkipped?: string;
}

export interface GoalInputs {
  pause: SectionOf<PauseData>;
  all: SectionOf<FleetData>;
  pack: SectionOf<PackData>;
}

export type Unit = 'ms' | 's' | '/s' | '×';

export interface GoalRow {
  /** The goal as the issue states it. */
  goal: string;
  /** What was measured for it. */
  figure: string;
  unit: Unit;
  /** The goal's bound, in `unit`; `limitOf` names where a bound measured in the run comes from. */
  limit: number;
  limitOf?: string;
  better: 'lower' | 'higher';
  reading?: number;
  /** The floor measured beside the reading (same unit), and what it is. */
  floor?: { value: number; what: string };
  /** reading / limit. */
  toGoal?: number;
  /** How many times the floor the reading costs: reading / floor, or floor / reading for a rate. */
  toFloor?: number;
  met?: boolean;
  /** Why a reading is printed but not judged against the goal. */
  notJudged?: string;
  /** Why there is no reading. */
  missing?: string;
  /** Load average (1/5/15 min) before → after the measurement. */
  load?: string;
}

/** The real cases the pause goals are read on, with the label a missing one gets. */
export const GOAL_CASES = [
  { key: 'crypto', label: 'libcrypto 3.0.19 -> 3.0.20, python3, 8 busy threads', allBlocked: false },
  { key: 'ssl', label: 'libssl 3.0.19 -> 3.0.20, python3 doing TLS', allBlocked: false },
  { key: 'blocked', label: 'libdemo, 27 threads all blocked', allBlocked: true },
  {
    key: 'crypto-blocked',
    label: 'libcrypto 3.0.19 -> 3.0.20, python3, 27 threads all blocked',
    allBlocked: true,
  },
  {
    key: 'ssl-blocked',
    label: 'libssl 3.0.19 -> 3.0.20, python3, 27 threads all blocked',
    allBlocked: true,
  },
] as const;

/** The fleet the `--all` goals are stated on. */
export const GOAL_FLEET = 1000;

const GOAL = {
  pauseP50Ms: 2,
  pauseP99Ms: 5,
  pauseToFloor: 2,
  applyWallMs: 1000,
  firstPerSec: 500,
  againPerSec: 1000,
  firstToFloor: 10,
  againToFloor: 3,
} as const;

type Measured = Pick<GoalRow, 'reading' | 'floor' | 'load' | 'notJudged'> & { figure?: string };

function judge(base: Omit<GoalRow, 'figure'> & { figure: string }, m: Measured | string): GoalRow {
  if (typeof m === 'string') return { ...base, missing: m };
  const row: GoalRow = { ...base, ...m };
  if (m.reading === undefined || !Number.isFinite(m.reading)) return { ...base, missing: 'no reading' };
  const reading = m.reading;
  if (base.limit > 0) row.toGoal = reading / base.limit;
  if (m.floor && m.floor.value > 0)
    row.toFloor = base.unit === '/s' ? m.floor.value / reading : reading / m.floor.value;
  if (!m.notJudged) row.met = base.better === 'lower' ? reading <= base.limit : reading >= base.limit;
  return row;
}

const loadOf = (before: string, after: string) => `${before} → ${after}`;

function pauseRows(section: SectionOf<PauseData>): GoalRow[] {
  const rows: GoalRow[] = [];
  for (const spec of GOAL_CASES) {
    let c: PauseCaseLike | string;
    if ('missing' in section) c = section.missing;
    else {
      const found = section.data.cases?.find((x) => x.key === spec.key);
      const skipped = section.data.casesSkipped?.find((x) => x.key === spec.key);
      c = found ?? (skipped ? skipped.reason : `case ${spec.key} not run (bench-pause --cases)`);
    }
    const figure = typeof c === 'string' ? spec.label : c.name;
    const at = (m: Omit<Measured, 'load'>): Measured | string =>
      typeof c === 'string' ? c : { ...m, load: loadOf(c.loadBefore, c.loadAfter) };
    const floorWhat = 'stop, read back, writes, resume on the same process';
    const cc = typeof c === 'string' ? undefined : c;
    rows.push(
      judge(
        { goal: 'pause p50 ≤ 2 ms', figure, unit: 'ms', limit: GOAL.pauseP50Ms, better: 'lower' },
        at({ reading: cc?.pause.median, floor: cc && { value: cc.floor.median, what: floorWhat } }),
      ),
      judge(
        { goal: 'pause p99 ≤ 5 ms', figure, unit: 'ms', limit: GOAL.pauseP99Ms, better: 'lower' },
        at({ reading: cc?.pause.p99, floor: cc && { value: cc.floor.p99, what: floorWhat } }),
      ),
      judge(
        {
          goal: 'pause within 2× the bare stop/resume plus writes',
          figure: `${figure} (medians)`,
          unit: '×',
          limit: GOAL.pauseToFloor,
          better: 'lower',
        },
        at({ reading: cc?.ratio }),
      ),
    );
    if (spec.allBlocked)
      rows.push(
        judge(
          {
            goal: 'apply wall time ≤ 1 s, threads all blocked',
            figure: `${figure}: first apply, the compiled command, node's start included`,
            unit: 'ms',
            limit: GOAL.applyWallMs,
            better: 'lower',
          },
          at({
            reading: cc?.first.commandMs,
            ...(cc?.nodeStartMs !== undefined
              ? { floor: { value: cc.nodeStartMs, what: 'node starting an empty script' } }
              : {}),
          }),
        ),
      );
  }
  return rows;
}

/**
 * The fleet the goals are read on: the largest one waiting in pause(), run
 * with the --jobs the command takes by itself for it when the run has that
 * row (what an operator gets), else with the fewest jobs.
 */
export function goalFleet(
  rows: readonly FleetRowLike[],
  defaultJobs: FleetData['defaultJobs'] = {},
): FleetRowLike | undefined {
  const own = (r: FleetRowLike) => (defaultJobs[r.processes] === r.jobs ? 0 : 1);
  return [...rows]
    .filter((r) => r.mode === 'wait')
    .sort((a, b) => b.processes - a.processes || own(a) - own(b) || a.jobs - b.jobs)[0];
}

function fleetRows(section: SectionOf<FleetData>): GoalRow[] {
  const row =
    'missing' in section
      ? section.missing
      : (goalFleet(section.data.rows, section.data.defaultJobs) ?? 'no fleet in pause()');
  const r = typeof row === 'string' ? undefined : row;
  const figure = r
    ? `${r.processes} processes waiting in pause(), --jobs ${r.jobs}, libdemo`
    : `${GOAL_FLEET} processes waiting in pause(), libdemo`;
  const rate = (totalMs: number | undefined) =>
    r && totalMs !== undefined ? (r.processes / totalMs) * 1000 : undefined;
  const first = rate(r?.apply.totalMs);
  const revert = rate(r?.revert.totalMs);
  const again = rate(r?.reapply.totalMs);
  const notJudged =
    r && r.processes < GOAL_FLEET ? `a fleet of ${r.processes}, the goal is on ${GOAL_FLEET}` : undefined;
  const at = (m: Omit<Measured, 'load' | 'notJudged'>): Measured | string =>
    typeof row === 'string'
      ? row
      : { ...m, load: loadOf(row.loadBefore, row.loadAfter), ...(notJudged ? { notJudged } : {}) };
  const floor = r && { value: r.floorPerSec, what: 'ptrace floor: seize, one remote getpid, detach' };
  return [
    judge(
      {
        goal: '--all first apply ≥ 500 processes/s',
        figure,
        unit: '/s',
        limit: GOAL.firstPerSec,
        better: 'higher',
      },
      at({ reading: first, floor }),
    ),
    judge(
      {
        goal: '--all revert ≥ 1000 processes/s',
        figure,
        unit: '/s',
        limit: GOAL.againPerSec,
        better: 'higher',
      },
      at({ reading: revert, floor }),
    ),
    judge(
      {
        goal: '--all re-apply ≥ 1000 processes/s',
        figure,
        unit: '/s',
        limit: GOAL.againPerSec,
        better: 'higher',
      },
      at({ reading: again, floor }),
    ),
    judge(
      {
        goal: '--all first apply ≤ 10× the ptrace floor (aim)',
        figure,
        unit: '×',
        limit: GOAL.firstToFloor,
        better: 'lower',
      },
      at({ reading: r && first ? r.floorPerSec / first : undefined }),
    ),
    judge(
      {
        goal: '--all re-apply ≤ 3× the ptrace floor (aim)',
        figure,
        unit: '×',
        limit: GOAL.againToFloor,
        better: 'lower',
      },
      at({ reading: r && again ? r.floorPerSec / again : undefined }),
    ),
  ];
}

function packRows(section: SectionOf<PackData>): GoalRow[] {
  const pairs =
    'missing' in section
      ? [{ label: 'libcrypto.so.3 3.0.19 -> 3.0.20 (Debian)', pair: section.missing }]
      : [
          {
            label: 'libcrypto.so.3 3.0.19 -> 3.0.20 (Debian)',
            pair:
              section.data.pairs.find((p) => p.real && /libcrypto/.test(p.old)) ??
              section.data.realSkipped ??
              'the real pair was not packed',
          },
          // The system's libcrypto against a one-byte change: the figure of runs without the real builds.
          ...section.data.pairs
            .filter((p) => !p.real && /(^|\/)libcrypto\.so\.3$/.test(p.old))
            .map((p) => ({ label: "the system's libcrypto.so.3 against a one-byte change", pair: p })),
        ];
  const load = 'missing' in section ? '' : section.load;
  const out: GoalRow[] = [];
  for (const { label, pair } of pairs) {
    const get = (prefix: string) =>
      typeof pair === 'string' ? undefined : pair.rows.find((x) => x.command.startsWith(prefix));
    const readelf = get('readelf');
    const packed = get('ulp-pack -o');
    const node = get('node');
    const refused = typeof pair === 'string' ? undefined : pair.rows.find((x) => x.refused)?.refused;
    const why =
      typeof pair === 'string'
        ? pair
        : refused
          ? `ulp-pack refused the pair: ${refused[0] ?? 'no reason printed'}`
          : undefined;
    for (const kind of ['wall', 'cpu'] as const) {
      const limit = readelf?.[kind];
      const reading = packed?.[kind];
      const m: Measured | string =
        why ??
        (limit === undefined || reading === undefined
          ? kind === 'cpu'
            ? 'no CPU time (/usr/bin/time missing)'
            : 'no reading'
          : {
              reading,
              ...(node?.[kind] !== undefined
                ? { floor: { value: node[kind]!, what: 'node starting an empty script' } }
                : {}),
              load,
            });
      out.push(
        judge(
          {
            goal: `ulp-pack no slower than readelf -a on both files (${kind === 'wall' ? 'wall' : 'CPU'})`,
            figure: `${label}: ulp-pack -o`,
            unit: 's',
            limit: limit ?? NaN,
            limitOf: 'readelf -a, both files, same run',
            better: 'lower',
          },
          m,
        ),
      );
    }
  }
  return out;
}

/** Every goal of issue 13, in the issue's order, from the sections of one run. */
export function goalRows(inputs: GoalInputs): GoalRow[] {
  return [...pauseRows(inputs.pause), ...fleetRows(inputs.all), ...packRows(inputs.pack)];
}

function value(unit: Unit, x: number | undefined): string {
  if (x === undefined || !Number.isFinite(x)) return '-';
  switch (unit) {
    case 'ms':
      return fmtMs(x);
    case 's':
      return `${x.toFixed(3)} s`;
    case '/s':
      return `${x.toFixed(0)}/s`;
    case '×':
      return `${x.toFixed(2)}×`;
  }
}

function status(r: GoalRow): string {
  if (r.missing) return '-';
  if (r.notJudged) return `not judged: ${r.notJudged}`;
  return r.met ? 'yes' : '**no**';
}

/** The goals table; `machine` names the machine every row ran on. */
export function renderGoals(rows: readonly GoalRow[], machine: string): string {
  return markdownTable(
    [
      'goal (issue 13)',
      'figure',
      'reading',
      'goal',
      'reading / goal',
      'floor',
      'reading / floor',
      'met',
      'machine; load 1/5/15 min',
    ],
    rows.map((r) => [
      r.goal,
      r.figure,
      r.missing ? `left out: ${r.missing}` : value(r.unit, r.reading),
      `${r.better === 'lower' ? '≤' : '≥'} ${Number.isFinite(r.limit) ? value(r.unit, r.limit) : '?'}${r.limitOf ? ` (${r.limitOf})` : ''}`,
      r.toGoal === undefined ? '-' : `${r.toGoal.toFixed(2)}`,
      r.floor && !r.missing ? `${value(r.unit, r.floor.value)} (${r.floor.what})` : '-',
      r.toFloor === undefined ? '-' : `${r.toFloor.toFixed(1)}×`,
      status(r),
      r.missing ? machine : `${machine}; ${r.load ?? '?'}`,
    ]),
  );
}
