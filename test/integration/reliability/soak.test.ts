/**
 * The soak, short: eight threads of a real program call libdemo and check
 * every result while ulp-trigger switches it back and forth
 * (lab/soak/scenarios.ts soak; `npm run soak` runs it for minutes).
 */
import assert from 'node:assert/strict';
import { soak } from '../../../lab/soak/scenarios.js';
import { reliable, runner, verdict } from './shared.js';

describe('reliability: soak (short)', function () {
  it('partial RELRO: 2 apply/revert cycles, every call right, the version checked after each switch, no growth', async function () {
    const r = await soak(runner, reliable('partial'), { cycles: 2, checkEvery: 1, pattern: 'pair' });
    verdict(this, 'soak', r.problems);
    assert.equal(r.switches, 4);
    assert.equal(r.versionChecks.done, 4);
    assert.ok(r.calls.k11 > 0 && r.calls.k12 > 0, 'the workers saw results of both versions');
    assert.equal(r.health.last?.bad, 0);
  });

  it('full RELRO: stacking v1 -> v2 -> v3 and back down (v3 brings a new import), every call right', async function () {
    const r = await soak(runner, reliable('full'), { cycles: 1, checkEvery: 1, pattern: 'stack' });
    verdict(this, 'soak', r.problems);
    assert.equal(r.switches, 4);
    assert.ok(r.calls.k13 > 0, 'the workers ran v3');
  });
});
