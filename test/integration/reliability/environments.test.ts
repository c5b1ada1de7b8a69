/**
 * Hostile environments, short (lab/soak/environments.ts): the target
 * dies at a staging milestone, another tracer holds it, two triggers race
 * (by chance, and interleaved on purpose), and an unprivileged user points
 * the trigger at other users' processes.
 */
import assert from 'node:assert/strict';
import {
  alreadyTraced,
  concurrentTriggers,
  interleavedTriggers,
  otherUsers,
  targetDies,
  NOBODY,
  type EnvResult,
} from '../../../lab/soak/environments.js';
import { knownDeath, knownEnv } from '../../../lab/soak/known-bugs.js';
import type { Milestone } from '../../../lab/soak/points.js';
import { reliable, runner, verdict } from './shared.js';

describe('reliability: hostile environments (short)', function () {
  for (const milestone of ['fork', 'aliased'] as Milestone[]) {
    it(`the target is killed at milestone "${milestone}": exit 4 saying it exited`, async function () {
      const d = await targetDies(runner, reliable('partial'), { milestone }, 'apply-fresh');
      verdict(this, d.name, d.problems, knownDeath(d));
      assert.ok(d.end.startsWith('exit 0') || d.end.startsWith('exit 4'), d.end);
    });
  }

  it('the target is already traced: PROC_ALREADY_TRACED naming the tracer, nothing changed; applies once released', async function () {
    const r = await alreadyTraced(runner, reliable('partial'));
    verdict(this, r.name, r.problems);
    assert.match(r.end, /^exit 4 PROC_ALREADY_TRACED; then exit 0 applied$/);
  });

  it('two triggers at once: one applies, the other is refused as already traced or finds it done', async function () {
    const r = await concurrentTriggers(runner, reliable('partial'), 0);
    verdict(this, r.name, r.problems, knownEnv(r));
  });

  it('two triggers interleaved (B plans, A applies, B switches on its plan): one set of globals, the state kept through the next switches', async function () {
    const r = await interleavedTriggers(runner, reliable('partial'));
    verdict(this, r.name, r.problems, knownEnv(r));
    assert.match(r.end, /^A applied; B .*; then exit 0 reverted, exit 0 applied$/);
  });

  describe(`run as an unprivileged user (uid ${NOBODY})`, function () {
    let results: EnvResult[] = [];
    before(async function () {
      if (process.getuid?.() !== 0) this.skip(); // switching users needs root
      results = await otherUsers(runner, reliable('partial'));
    });
    const names = [
      'apply to a root process',
      'apply to a process of uid 65533',
      '--status of a root process',
      '--all',
    ];
    for (const n of names) {
      it(`${n}: ${n === '--all' ? "switches only the user's own process, counts the others as inaccessible" : 'PROC_PERMISSION_DENIED saying why, the process untouched'}`, function () {
        const r = results.find((x) => x.name.endsWith(n));
        assert.ok(r, `no result for "${n}"`);
        verdict(this, r.name, r.problems, knownEnv(r));
      });
    }
  });
});
