/**
 * One rule for reverting an update that added exports (test/fixtures/hard/libself.c:
 * version 2 adds self_helper and self_extra, version 3 adds self_more). The
 * reverse report flags the removals; ulp-trigger checks each process and
 * refuses (TRIGGER_EXPORT_BOUND, exit 2, process untouched) only where a
 * loaded object is bound to an export the revert takes away, directly or
 * through a stack, and ulp-pack says exactly that.
 */
import assert from 'node:assert/strict';
// Outcomes may be `applied-partly`/`reverted-partly`: the fixtures' 4-byte functions are too short for an entry
// redirect (test/integration/trigger/redirects.test.ts covers redirects); here what matters is the build that is live.
import { readFileSync } from 'node:fs';
import { runCli } from '../../../lab/cli.js';
import { HardLab, libStatus, linesAfter, trigger, type Line } from '../../../lab/hard-lab.js';
import type { Target } from '../../../lab/target.js';

async function settled(t: Target, mark = t.output().length): Promise<Line[]> {
  return (await linesAfter(t, mark, (ls) => ls.length >= 3)).slice(1);
}
const versions = (ls: Line[]) => [...new Set(ls.map((l) => l.version))];
const ulpMaps = (pid: number) =>
  readFileSync(`/proc/${pid}/maps`, 'utf8')
    .split('\n')
    .filter((l) => l.includes('/memfd:ulp:'))
    .join('\n');

describe('reverting an update that added exports', function () {
  this.timeout(120_000);
  let lab: HardLab;
  let plain: string;
  let caller: string;
  let a: string;
  let b: string;
  before(() => {
    lab = new HardLab({ self: { soname: 'libself.so.1', sources: ['hard/libself.c'] } }, 'revert-bindings');
    plain = lab.exe('self_main', { sources: ['hard/self_main.c'], needs: ['self'], flags: ['-rdynamic'] });
    // Linked against version 2 and calling self_helper: bound to an export version 1 lacks.
    caller = lab.exe('self_caller', {
      sources: ['hard/self_main.c'],
      needs: ['self'],
      linkVersion: 2,
      flags: ['-rdynamic', '-DCALL_HELPER'],
    });
    a = lab.pack('self', 1, 2);
    b = lab.pack('self', 2, 3);
  });
  after(() => lab?.dispose());

  it('ulp-pack states the rule the trigger applies', () => {
    const r = runCli('ulp-pack', [lab.lib('self', 1), lab.lib('self', 2), '--check']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(
      r.stdout,
      /revert \(new -> old\): INCOMPATIBLE only where a loaded object is bound to an export it removes/,
    );
    assert.match(r.stdout, /self_helper/);
    assert.match(
      r.stdout,
      /refuses \(TRIGGER_EXPORT_BOUND, exit 2, process untouched\) one in which a loaded\s+object is bound to one of these 2 exports/,
    );
    assert.match(r.stdout, /dlsym cannot be seen/);
    assert.doesNotMatch(r.stdout, /checks these against each process before it reverts/);
    const inspect = runCli('ulp-pack', ['--inspect', a]);
    assert.match(inspect.stdout, /TRIGGER_EXPORT_BOUND/);
  });

  it('a process bound to an added export is refused, untouched; one without is reverted', async () => {
    const bound = lab.start(caller, { self: 2 });
    assert.deepEqual(versions(await settled(bound, 0)), ['2']);
    for (const extra of [['--dry-run'], []]) {
      const r = runCli('ulp-trigger', [String(bound.pid), a, '--revert', '--json', ...extra]);
      assert.equal(r.code, 2, r.stdout + r.stderr);
      assert.equal(r.json.error.code, 'TRIGGER_EXPORT_BOUND');
      assert.match(r.json.error.message, /\(executable\) -> self_helper/);
      assert.deepEqual(
        r.json.error.details.bindings.map((x: { symbol: string }) => x.symbol),
        ['self_helper'],
      );
    }
    assert.equal(ulpMaps(bound.pid), '', 'nothing was mapped into the refused process');
    const still = await settled(bound);
    assert.deepEqual(versions(still), ['2']);
    assert.ok(still.every((l) => l.helper === '42'));

    const free = lab.start(plain, { self: 2 });
    assert.deepEqual(versions(await settled(free, 0)), ['2']);
    assert.match(trigger(String(free.pid), a, '--revert', '--json').json.outcome, /^reverted(-partly)?$/);
    const back = await settled(free);
    assert.deepEqual(versions(back), ['1']);
    assert.ok(back.every((l) => l.compute === '-1'));

    // Started on the old build: the new build's own calls to its exports leave with it.
    const patched = lab.start(plain, { self: 1 });
    await settled(patched, 0);
    assert.match(trigger(String(patched.pid), a, '--json').json.outcome, /^applied(-partly)?$/);
    assert.deepEqual(versions(await settled(patched)), ['2']);
    assert.match(trigger(String(patched.pid), a, '--revert', '--json').json.outcome, /^reverted(-partly)?$/);
    assert.deepEqual(versions(await settled(patched)), ['1']);
  });

  it('through a stack: reverting the lower bundle is refused where something is bound, the upper one is not', async () => {
    const bound = lab.start(caller, { self: 2 });
    await settled(bound, 0);
    assert.match(trigger(String(bound.pid), b, '--json').json.outcome, /^applied(-partly)?$/);
    assert.deepEqual(versions(await settled(bound)), ['3']);
    const live = libStatus(bound.pid, 'libself.so.1').live;
    const before = ulpMaps(bound.pid);
    // Reverting 1 -> 2 undoes the stack down to version 1, which lacks self_helper.
    const r = runCli('ulp-trigger', [String(bound.pid), a, '--revert', '--json']);
    assert.equal(r.code, 2, r.stdout + r.stderr);
    assert.equal(r.json.error.code, 'TRIGGER_EXPORT_BOUND');
    assert.equal(ulpMaps(bound.pid), before, 'the refused revert mapped nothing');
    assert.equal(libStatus(bound.pid, 'libself.so.1').live, live);
    assert.deepEqual(versions(await settled(bound)), ['3']);
    // Reverting 2 -> 3 takes self_more away, which nothing outside the library is bound to.
    const rb = trigger(String(bound.pid), b, '--revert', '--json').json;
    assert.match(rb.outcome, /^reverted(-partly)?$/);
    assert.equal(rb.switch.counts.missing, 0, "version 3's own call to self_more leaves with it: no residue");
    const st = libStatus(bound.pid, 'libself.so.1');
    assert.equal(st.mixed, false);
    assert.equal(st.oldReferences.slots, 0);
    const two = await settled(bound);
    assert.deepEqual(versions(two), ['2']);
    assert.ok(two.every((l) => l.helper === '42'));

    // Nothing bound: reverted in either order.
    const free = lab.start(plain, { self: 2 });
    await settled(free, 0);
    trigger(String(free.pid), b);
    assert.deepEqual(versions(await settled(free)), ['3']);
    assert.match(trigger(String(free.pid), a, '--revert', '--json').json.outcome, /^reverted(-partly)?$/);
    assert.deepEqual(versions(await settled(free)), ['1']);
    assert.equal(trigger(String(free.pid), b, '--revert', '--json').json.outcome, 'not-applied');
    assert.deepEqual(versions(await settled(free)), ['1']);
  });
});
