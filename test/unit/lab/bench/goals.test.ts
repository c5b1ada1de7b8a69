/**
 * lab/bench/goals.ts: the goals table of issue 13 read off the sections of
 * one `npm run bench` run. Every goal gets a row; a reading is judged
 * against its bound and set beside its floor; a goal without a figure in the
 * run says why and shows no number.
 */
import assert from 'node:assert/strict';
import {
  GOAL_CASES,
  goalFleet,
  goalRows,
  renderGoals,
  type FleetRowLike,
  type GoalInputs,
  type PackPairLike,
  type PauseCaseLike,
} from '../../../../lab/bench/goals.js';

const LOAD = '1.00 1.00 1.00';

function pauseCase(key: string, over: Partial<PauseCaseLike> = {}): PauseCaseLike {
  return {
    key,
    name: `case ${key}`,
    threads: 27,
    pause: { median: 1.5, p99: 7 },
    floor: { median: 1, p99: 2 },
    ratio: 1.5,
    first: { commandMs: 800 },
    nodeStartMs: 40,
    loadBefore: '2.00 2.00 2.00',
    loadAfter: '3.00 3.00 3.00',
    ...over,
  };
}

function fleet(processes: number, over: Partial<FleetRowLike> = {}): FleetRowLike {
  return {
    processes,
    mode: 'wait',
    jobs: 1,
    apply: { totalMs: 4000 },
    revert: { totalMs: 500 },
    reapply: { totalMs: 2000 },
    floorPerSec: 2000,
    loadBefore: LOAD,
    loadAfter: LOAD,
    ...over,
  };
}

function packPair(over: Partial<PackPairLike> = {}): PackPairLike {
  return {
    old: '/real/ssl-3.0.19/libcrypto.so.3',
    label: 'libcrypto.so.3 3.0.19 -> 3.0.20 (Debian)',
    real: true,
    rows: [
      { command: 'readelf -a (both files)', wall: 0.2, cpu: 0.1 },
      { command: 'ulp-pack --check', wall: 0.8, cpu: 1.0 },
      { command: 'ulp-pack -o (writes the bundle)', wall: 1.0, cpu: 1.5 },
      { command: 'node startup (empty script)', wall: 0.05, cpu: 0.04 },
    ],
    loadAfter: LOAD,
    ...over,
  };
}

const missingAll: GoalInputs = {
  pause: { missing: 'the pause section was not run (--only call)' },
  all: { missing: 'the all section failed (exited 1)' },
  pack: { missing: 'the pack section was not run (--only call)' },
};

const near = (a: number | undefined, b: number) =>
  assert.ok(a !== undefined && Math.abs(a - b) < 1e-9, `${a} ≈ ${b}`);

const find = (rows: ReturnType<typeof goalRows>, goal: RegExp, figure: RegExp) => {
  const r = rows.find((x) => goal.test(x.goal) && figure.test(x.figure));
  assert.ok(r, `no row for ${goal} / ${figure}`);
  return r;
};

describe('bench goals: the goals table of issue 13', () => {
  it('lists every goal even when no section ran, each with the reason and no number', () => {
    const rows = goalRows(missingAll);
    const blocked = GOAL_CASES.filter((c) => c.allBlocked).length;
    // Per case p50, p99 and the ratio to its floor; the wall time on the blocked ones; five fleet goals; pack wall and CPU.
    assert.equal(rows.length, GOAL_CASES.length * 3 + blocked + 5 + 2);
    for (const r of rows) {
      assert.ok(r.missing, `${r.goal} has a reason`);
      assert.equal(r.reading, undefined);
      assert.equal(r.met, undefined);
    }
    assert.match(find(rows, /pause p50/, /27 threads all blocked/).missing!, /pause section was not run/);
    assert.match(find(rows, /first apply ≥ 500/, /./).missing!, /all section failed \(exited 1\)/);
    assert.match(find(rows, /readelf -a .*wall/, /./).missing!, /pack section was not run/);
    const cells = renderGoals(rows, '2 × CPU')
      .split('\n')
      .slice(2, -1)
      .map((line) => line.split('|').map((c) => c.trim()));
    assert.equal(cells.length, rows.length);
    for (const [, goal, , reading, , toGoal, floor, toFloor, met] of cells) {
      assert.match(reading!, /^left out: /, goal);
      assert.deepEqual([toGoal, floor, toFloor, met], ['-', '-', '-', '-'], goal);
    }
  });

  it('judges the pause of a case: p50 met, p99 not, within 2x of its floor, with the case load', () => {
    const rows = goalRows({
      ...missingAll,
      pause: { data: { cases: [pauseCase('crypto')] }, load: LOAD },
    });
    const p50 = find(rows, /p50/, /case crypto/);
    assert.equal(p50.reading, 1.5);
    assert.equal(p50.met, true);
    assert.equal(p50.toGoal, 0.75);
    assert.equal(p50.toFloor, 1.5);
    assert.equal(p50.load, '2.00 2.00 2.00 → 3.00 3.00 3.00');
    const p99 = find(rows, /p99/, /case crypto/);
    assert.equal(p99.met, false);
    assert.equal(p99.toFloor, 3.5);
    assert.equal(find(rows, /within 2×/, /case crypto/).met, true);
    // The other cases did not run and say so.
    assert.match(find(rows, /p50/, /libssl/).missing!, /case ssl not run/);
    const table = renderGoals(rows, '2 × CPU');
    assert.match(
      table,
      /\| pause p50 ≤ 2 ms +\| case crypto +\| 1\.50 ms +\| ≤ 2\.00 ms +\| 0\.75 +\| 1\.00 ms \(stop/,
    );
    assert.match(
      table,
      /\| pause p99 ≤ 5 ms +\| case crypto +\| 7\.00 ms .*\| \*\*no\*\* +\| 2 × CPU; 2\.00/,
    );
  });

  it('a case that could not run is left out with its own reason', () => {
    const rows = goalRows({
      ...missingAll,
      pause: {
        data: { cases: [], casesSkipped: [{ key: 'ssl', reason: 'no real builds (/x.tar.xz)' }] },
        load: LOAD,
      },
    });
    const ssl = rows.filter((x) => /libssl .*TLS/.test(x.figure));
    assert.equal(ssl.length, 3);
    for (const r of ssl) assert.equal(r.missing, 'no real builds (/x.tar.xz)');
  });

  it('reads the apply wall time of the blocked cases against 1 s, beside node start', () => {
    const rows = goalRows({
      ...missingAll,
      pause: {
        data: {
          cases: [
            pauseCase('blocked', { first: { commandMs: 800 } }),
            pauseCase('crypto-blocked', { first: { commandMs: 2500 } }),
          ],
        },
        load: LOAD,
      },
    });
    const demo = find(rows, /apply wall time/, /case blocked:/);
    assert.equal(demo.met, true);
    assert.equal(demo.toFloor, 20);
    const crypto = find(rows, /apply wall time/, /case crypto-blocked:/);
    assert.equal(crypto.met, false);
    assert.equal(crypto.toGoal, 2.5);
    const wall = rows.filter((r) => /apply wall time/.test(r.goal));
    assert.equal(wall.length, 3, 'one row per blocked case, only those');
    assert.match(wall.find((r) => /libssl/.test(r.figure))!.missing!, /case ssl-blocked not run/);
  });

  it('reads --all on the largest fleet in pause(): rates against the goals and the ptrace floor', () => {
    const rows = goalRows({
      ...missingAll,
      all: {
        data: { rows: [fleet(100), fleet(1000), fleet(1000, { mode: 'sleep' }), fleet(1000, { jobs: 2 })] },
        load: LOAD,
      },
    });
    const first = find(rows, /first apply ≥ 500/, /1000 processes/);
    assert.match(first.figure, /--jobs 1/);
    assert.equal(first.reading, 250);
    assert.equal(first.met, false);
    assert.equal(first.toGoal, 0.5);
    assert.equal(first.toFloor, 8, 'floor 2000/s over 250/s');
    assert.equal(find(rows, /revert ≥ 1000/, /./).met, true);
    assert.equal(find(rows, /re-apply ≥ 1000/, /./).reading, 500);
    assert.equal(find(rows, /first apply ≤ 10×/, /./).met, true);
    const again = find(rows, /re-apply ≤ 3×/, /./);
    assert.equal(again.reading, 4);
    assert.equal(again.met, false);
    const table = renderGoals(rows, 'm');
    assert.match(
      table,
      /\| 250\/s +\| ≥ 500\/s +\| 0\.50 +\| 2000\/s \(ptrace floor[^|]*\| 8\.0× +\| \*\*no\*\*/,
    );
  });

  it('does not judge a fleet smaller than the goal, but prints its reading', () => {
    const rows = goalRows({ ...missingAll, all: { data: { rows: [fleet(100)] }, load: LOAD } });
    const first = find(rows, /first apply ≥ 500/, /100 processes/);
    assert.equal(first.reading, 25);
    assert.equal(first.met, undefined);
    assert.match(renderGoals(rows, 'm'), /not judged: a fleet of 100, the goal is on 1000/);
    assert.equal(goalFleet([fleet(1000, { mode: 'sleep' })]), undefined, 'no fleet in pause()');
  });

  it("reads the fleet run with the command's own --jobs when the run has it, else the fewest jobs", () => {
    const one = fleet(1000, { jobs: 1 });
    const two = fleet(1000, { jobs: 2, apply: { totalMs: 2000 } });
    assert.equal(goalFleet([two, one]), one);
    assert.equal(goalFleet([one, two], { 1000: 2 }), two);
    assert.equal(goalFleet([one, two], { 100: 2 }), one, 'the default of another fleet size');
    const rows = goalRows({
      ...missingAll,
      all: { data: { rows: [one, two], defaultJobs: { 1000: 2 } }, load: LOAD },
    });
    assert.equal(find(rows, /first apply ≥ 500/, /--jobs 2/).reading, 500);
  });

  it('reads pack on the real pair against readelf -a on both files, wall and CPU', () => {
    const rows = goalRows({ ...missingAll, pack: { data: { pairs: [packPair()] }, load: LOAD } });
    const wall = find(rows, /wall/, /Debian/);
    assert.equal(wall.reading, 1.0);
    assert.equal(wall.limit, 0.2);
    near(wall.toGoal, 5);
    near(wall.toFloor, 20);
    assert.equal(wall.met, false);
    const cpu = find(rows, /CPU/, /Debian/);
    near(cpu.toGoal, 15);
    assert.match(
      renderGoals(rows, 'm'),
      /\| 1\.000 s +\| ≤ 0\.200 s \(readelf -a, both files, same run\) +\| 5\.00 /,
    );
  });

  it('without the real builds: the real pair left out with the reason, the system libcrypto beside it', () => {
    const system = packPair({ old: '/usr/lib/x86_64-linux-gnu/libcrypto.so.3', real: false });
    delete system.label;
    const rows = goalRows({
      ...missingAll,
      pack: { data: { pairs: [system], realSkipped: 'no real builds (/x)' }, load: LOAD },
    });
    assert.equal(find(rows, /wall/, /Debian/).missing, 'no real builds (/x)');
    assert.equal(find(rows, /wall/, /system's libcrypto/).met, false);
  });

  it('a pair ulp-pack refused has no pack time to judge', () => {
    const refused = packPair({
      rows: [
        { command: 'readelf -a (both files)', wall: 0.2, cpu: 0.1 },
        { command: 'ulp-pack --check', wall: 0.8, cpu: 1.0, refused: ['data: layout changed'] },
        { command: 'ulp-pack -o (writes the bundle)', refused: ['data: layout changed'] },
      ],
    });
    const rows = goalRows({ ...missingAll, pack: { data: { pairs: [refused] }, load: LOAD } });
    assert.equal(find(rows, /wall/, /Debian/).missing, 'ulp-pack refused the pair: data: layout changed');
  });
});
