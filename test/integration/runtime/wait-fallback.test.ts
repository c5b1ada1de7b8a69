/**
 * Waiting for a tracee without the wait alarm (runtime/sys/wait-alarm.ts):
 * where its real-time signal is taken by someone else, the tracer naps
 * between polls instead of blocking in waitpid, and stops, remote syscalls
 * and resumes still work, with nothing lost by the target.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { ROOT } from '../../../lab/cli.js';
import { withFixture } from '../../../lab/runtime/helpers.js';

describe('runtime waits without the wait alarm', function () {
  this.timeout(120_000);
  it('stops every thread, makes remote syscalls and resumes, napping between polls', async () => {
    await withFixture('threads', ['4', 'idle'], async (t) => {
      const r = spawnSync(
        process.execPath,
        ['--import', 'tsx', join(ROOT, 'test/integration/runtime/wait-fallback-driver.ts'), String(t.pid)],
        { cwd: ROOT, encoding: 'utf8' },
      );
      assert.equal(r.status, 0, r.stdout + r.stderr);
      const seen = JSON.parse(r.stdout) as {
        alarm: boolean;
        rounds: Array<{ stopped: number; getpid: number }>;
      };
      assert.equal(seen.alarm, false, "the alarm gave way to the signal's owner");
      assert.deepEqual(
        seen.rounds,
        [1, 2, 3].map(() => ({ stopped: 5, getpid: t.pid })),
      );
      t.kill('SIGUSR1');
      const out = await t.waitFor((o) => /^final /m.test(o));
      const m = /final produced=(\d+) consumed=(\d+) gaps=(\d+)/.exec(out)!;
      assert.equal(m[1], m[2], 'messages were lost');
      assert.equal(m[3], '0', 'sequence gaps');
    });
  });
});
