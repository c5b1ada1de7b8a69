/**
 * Eight threads hammer the library while it is switched back and forth: no
 * call may ever return a result that no version computes, and every thread
 * must keep making progress through every switch.
 */
import assert from 'node:assert/strict';
import { runCli } from '../../../lab/cli.js';
import { buildDemo, rounds, type Demo } from '../../../lab/demo.js';

describe('ulp-trigger with 8 threads calling the library', function () {
  this.timeout(300_000);
  let demo: Demo;
  before(() => {
    demo = buildDemo({ relro: 'partial', main: 'hammer_main.c' });
  });
  after(() => demo?.dispose());

  it('applies and reverts 5 times (ULP_HAMMER_CYCLES) with every result checked', async () => {
    const fix = demo.pack(1, 2);
    const t = demo.start(1);
    await t.waitFor((o) => rounds(o).length >= 2);
    const cycles = Number(process.env.ULP_HAMMER_CYCLES ?? 5);
    let maxPause = 0;
    for (let i = 0; i < cycles; i++) {
      for (const extra of [[], ['--revert']]) {
        const r = runCli('ulp-trigger', [String(t.pid), fix, '--json', ...extra]);
        assert.equal(r.code, 0, r.stdout + r.stderr);
        maxPause = Math.max(maxPause, r.json.pauseMs ?? 0);
        // The next printed round comes from code that saw the switch.
        const mark = t.output().length;
        const next = rounds((await t.waitFor((o) => rounds(o.slice(mark)).length >= 2)).slice(mark)).at(-1)!;
        assert.equal(next.compute, extra.length ? '11' : '12');
      }
    }
    const all = rounds(t.output());
    const last = all.at(-1)!;
    assert.equal(last.bad, '0', 'a call returned a result no version computes');
    assert.ok(Number(last.k11) > 0 && Number(last.k12) > 0, 'both versions ran');
    // Every thread progressed across the whole run (none was left stopped or stuck in a stub).
    const first = all[0]!;
    for (let i = 0; i < 8; i++)
      assert.ok(Number(last[`t${i}`]) > Number(first[`t${i}`]), `thread ${i} made no progress`);
    assert.ok(t.alive());
    console.log(
      `      ${cycles * 2} switches, worst pause ${maxPause.toFixed(2)} ms, ${all.length} rounds, bad=${last.bad}`,
    );
  });
});
