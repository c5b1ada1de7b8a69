/**
 * The tracer process killed with SIGKILL while it works on a thread: the
 * kernel detaches, the thread runs on with whatever registers it has, and
 * the stub page must bring it back exactly. The victim fixture checks its
 * own registers, vector state, pipe reads and sleeps all the time and
 * prints BAD on any difference.
 *
 * 1. At each injection step, deterministically (the driver stops dead at the
 *    step, then is killed), on threads in different states.
 * 2. At random moments of a loop of remote calls and syscalls, many times
 *    (ULP_KILL_ROUNDS, default 30).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { Target } from '../../../lab/target.js';
import { runDriver } from '../../../lab/runtime/driver-process.js';
import { printed, sleep, startFixture, withFixture } from '../../../lab/runtime/helpers.js';

interface Victim {
  t: Target;
  work: string;
  tids: Record<'compute' | 'reader' | 'sleeper', number>;
}

async function startVictim(): Promise<Victim> {
  const t = await startFixture('victim');
  const out = t.output();
  const v: Victim = {
    t,
    work: '0x' + printed(out, 'work').toString(16),
    tids: {
      compute: Number(printed(out, 'compute tid')),
      reader: Number(printed(out, 'reader tid')),
      sleeper: Number(printed(out, 'sleeper tid')),
    },
  };
  const setup = runDriver([String(t.pid), 'setup']); // the stub's one unprotected mmap is not what is tested here
  await setup.waitFor(/done/);
  assert.equal(await setup.exited, 0);
  return v;
}

/** Every checking thread has reported progress after `from` and nothing bad was printed. */
async function assertHealthy(v: Victim, from: number): Promise<void> {
  await v.t.waitFor((o) => {
    const tail = o.slice(from);
    return /compute ok/.test(tail) && /reader ok/.test(tail) && /sleeper ok/.test(tail);
  }, 20_000);
  assert.doesNotMatch(v.t.output(), /BAD/);
}

describe('runtime: the tracer killed mid-injection', function () {
  this.timeout(300_000);

  describe('at each step', () => {
    let v: Victim;
    before(async () => (v = await startVictim()));
    after(() => v?.t.dispose());

    const cases: Array<[op: 'syscall' | 'call' | 'sequence', step: string, thread: keyof Victim['tids']]> = [
      ['syscall', 'redirected', 'sleeper'],
      ['syscall', 'running', 'reader'],
      ['syscall', 'entered', 'sleeper'],
      ['syscall', 'returned', 'reader'],
      ['syscall', 'returned', 'sleeper'],
      ['syscall', 'restored', 'reader'],
      ['syscall', 'restored', 'sleeper'],
      ['call', 'redirected', 'compute'],
      ['call', 'running', 'compute'],
      ['call', 'running', 'sleeper'],
      ['call', 'returned', 'compute'],
      ['call', 'returned', 'reader'],
      ['call', 'restored', 'sleeper'],
      // Two syscalls sharing one save and restore (Session.syscalls): killed between them and in the second.
      ['sequence', 'returned#1', 'sleeper'],
      ['sequence', 'redirected#2', 'reader'],
      ['sequence', 'entered#2', 'sleeper'],
      ['sequence', 'returned#2', 'reader'],
      ['sequence', 'restored#1', 'sleeper'],
    ];
    for (const [op, step, thread] of cases) {
      it(`remote ${op} killed at "${step}" on the ${thread} thread`, async () => {
        const from = v.t.output().length;
        const d = runDriver([String(v.t.pid), 'hang', v.work, String(v.tids[thread]), op, step]);
        await d.waitFor(/HANG/);
        d.proc.kill('SIGKILL');
        assert.equal(await d.exited, 'SIGKILL');
        assert.ok(v.t.alive());
        await assertHealthy(v, from);
      });
    }
  });

  it('SIGTERM to the tracer is held until it has detached, then ends it', async () => {
    await withFixture('threads', ['2'], async (t) => {
      const d = runDriver([String(t.pid), 'hold', '400']);
      await d.waitFor(/holding/);
      d.proc.kill('SIGTERM');
      assert.equal(await d.exited, 'SIGTERM');
      assert.match(d.output(), /detached/);
      assert.doesNotMatch(d.output(), /still alive/);
      const status = readFileSync(`/proc/${t.pid}/status`, 'utf8');
      assert.match(status, /TracerPid:\s+0\b/);
      t.kill('SIGUSR1');
      assert.match(await t.waitFor((o) => /^final /m.test(o)), /gaps=0/);
    });
  });

  it('at random moments of remote calls and syscalls, every time', async () => {
    const rounds = Number(process.env.ULP_KILL_ROUNDS ?? 30);
    const v = await startVictim();
    try {
      const tids = Object.values(v.tids).join(',');
      let survived = 0;
      for (let i = 0; i < rounds; i++) {
        const d = runDriver([String(v.t.pid), 'loop', v.work, tids]);
        await d.waitFor(/looping/);
        await sleep(Math.random() * 25);
        d.proc.kill('SIGKILL');
        const how = await d.exited;
        assert.equal(how, 'SIGKILL', `the driver stopped by itself:\n${d.output()}`);
        if (v.t.alive() && !/BAD/.test(v.t.output())) survived++;
        else break;
      }
      console.log(`      target survived ${survived}/${rounds} SIGKILLs of its tracer`);
      assert.equal(survived, rounds);
      await assertHealthy(v, v.t.output().length);
    } finally {
      v.t.dispose();
    }
  });
});
