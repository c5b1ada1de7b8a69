/**
 * The trigger interrupted (SIGINT, SIGTERM: held until it lets go of the
 * target) and killed (SIGKILL: cannot be held) at the staging milestones of
 * lab/soak/points.ts and at a random point, then --status and the same
 * command again; and an interrupted switch made on purpose. The soak runs
 * every milestone with every signal and many random points.
 */
import assert from 'node:assert/strict';
import { knownFault, knownHeld } from '../../../lab/soak/known-bugs.js';
import { type Milestone } from '../../../lab/soak/points.js';
import { seededRandom } from '../../../lab/random.js';
import { faultAttempt, interruptedSwitch, type FaultAttempt } from '../../../lab/soak/scenarios.js';
import type { Relro } from '../../../lab/soak/lib.js';
import { reliable, runner, verdict } from './shared.js';

/**
 * One attempt at a milestone. The milestone is seen by polling the target's
 * maps; on a loaded machine the poller can be descheduled past a short step
 * (the writes after "aliased" take a millisecond, less since the tracer runs
 * its pause as a real-time task) and the signal then lands after the
 * command let go. That says nothing about the trigger, so such an attempt is
 * made again, up to six times (a CI run on a machine with two other
 * CPU-bound programs missed three in a row); the test still requires a hit.
 */
async function atMilestone(
  relro: Relro,
  signal: NodeJS.Signals,
  kind: Parameters<typeof faultAttempt>[3],
  milestone: Milestone,
): Promise<FaultAttempt> {
  let a: FaultAttempt | undefined;
  for (let i = 0; i < 6 && a?.phase !== 'in-session'; i++)
    a = await faultAttempt(runner, reliable(relro), signal, kind, { milestone });
  return a!;
}

describe('reliability: the trigger interrupted or killed (short)', function () {
  for (const milestone of ['staged', 'aliased'] as Milestone[]) {
    it(`SIGKILL at milestone "${milestone}" of a first apply: the target lives, the re-run completes the switch`, async function () {
      const a = await atMilestone('partial', 'SIGKILL', 'apply-fresh', milestone);
      assert.equal(a.phase, 'in-session', `the signal landed while the trigger held the target (${a.end})`);
      verdict(this, `SIGKILL ${a.point}`, a.problems, knownFault(a));
      assert.ok(a.survived);
      assert.equal(a.final.live, 'v2');
    });
  }

  it('SIGKILL at milestone "mapped" (relocation not done): --status reports an abandoned staging, the re-run stages afresh and completes', async function () {
    const a = await atMilestone('partial', 'SIGKILL', 'apply-fresh', 'mapped');
    assert.equal(a.phase, 'in-session', `the signal landed while the trigger held the target (${a.end})`);
    verdict(this, `SIGKILL ${a.point}`, a.problems, knownFault(a));
    assert.equal(a.after.live, 'v1', 'a staging is invisible: the program still runs v1');
    assert.equal(a.after.abandoned.length, 1, `--status abandoned: ${JSON.stringify(a.after.abandoned)}`);
    assert.match(a.after.abandoned[0]!, /^ulp:[0-9a-f]+(@[0-9a-f]+)?:new:libdemo\.so\.1$/);
    assert.equal(
      a.rerunSwitch?.staged,
      true,
      'the re-run staged the build again instead of taking the abandoned one',
    );
    assert.deepEqual(
      a.final.abandoned,
      a.after.abandoned,
      'the abandoned staging stays what it was: address space, never a build',
    );
    assert.equal(a.final.live, 'v2');
    assert.ok(a.survived);
  });

  it('SIGKILL while the target dlopens libgcc_s for the unwind tables (milestone "unwind"): the target lives, the re-run completes', async function () {
    const a = await atMilestone('partial', 'SIGKILL', 'apply-fresh', 'unwind');
    assert.equal(a.phase, 'in-session', `the signal landed while the trigger held the target (${a.end})`);
    verdict(this, `SIGKILL ${a.point}`, a.problems, knownFault(a));
    assert.ok(a.survived);
    assert.equal(a.final.live, 'v2');
  });

  let held: FaultAttempt | undefined;
  it('SIGINT at milestone "staged": held, the command finishes, --status says patched or unpatched, never mixed', async function () {
    const a = (held = await atMilestone('partial', 'SIGINT', 'apply-fresh', 'staged'));
    assert.equal(a.phase, 'in-session');
    verdict(this, `SIGINT ${a.point}`, a.problems);
    assert.ok(a.after.live === 'v1' || a.after.live === 'v2');
    assert.equal(a.after.mixed, false);
    assert.deepEqual(a.after.abandoned, []);
    assert.deepEqual(a.residue, []);
  });

  it('the held SIGINT acts once the trigger let go of the target: the command ends by it (docs/RUNTIME.md)', function () {
    assert.ok(held, 'the SIGINT attempt above ran');
    assert.equal(held.heldSignal !== undefined, true, 'the signal was held (it landed in-session)');
    verdict(
      this,
      'held SIGINT',
      held.heldSignal === 'lost' ? [`the command ran on and ended ${held.end}`] : [],
      knownHeld(held),
    );
    assert.equal(held.end, 'killed by SIGINT');
  });

  it('SIGTERM at milestone "mapped" of a revert that stages the old build: never half, the re-run completes', async function () {
    const a = await atMilestone('partial', 'SIGTERM', 'revert-fresh', 'mapped');
    assert.equal(a.phase, 'in-session');
    verdict(this, `SIGTERM ${a.point}`, a.problems);
    assert.equal(a.final.live, 'v1');
  });

  it('SIGKILL at a random point of a first apply, full RELRO: the target lives, the re-run completes', async function () {
    const rnd = seededRandom(Number(process.env.ULP_SEED ?? 7));
    const a = await faultAttempt(runner, reliable('full'), 'SIGKILL', 'apply-fresh', {
      afterAttach: rnd() * 30,
    });
    verdict(this, `SIGKILL ${a.point} (${a.phase})`, a.problems, knownFault(a));
    assert.equal(a.final.live, 'v2');
  });

  it('slots half rewritten (an interrupted apply): --status says mixed, the apply completes it', async function () {
    const m = await interruptedSwitch(runner, reliable('partial'), 'apply');
    verdict(this, 'interrupted switch', m.problems);
    assert.ok(m.statusMixed.mixed);
    assert.equal(m.final.live, 'v2');
  });

  it('slots half rewritten, full RELRO: the revert completes it the other way', async function () {
    const m = await interruptedSwitch(runner, reliable('full'), 'revert');
    verdict(this, 'interrupted switch', m.problems);
    assert.ok(m.statusMixed.mixed);
    assert.equal(m.final.live, 'v1');
  });
});
