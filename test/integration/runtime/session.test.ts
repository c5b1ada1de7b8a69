/**
 * Stopping and resuming real processes: every thread stops, every thread
 * goes on, nothing the program does is lost, and nobody outside notices
 * (the parent's waitpid, the program's own signal handlers).
 */
import assert from 'node:assert/strict';
import { Session, withSession, NR } from '../../../runtime/index.js';
import { tgkill } from '../../../runtime/sys/libc.js';
import { startTarget } from '../../../lab/target.js';
import { fixture, printed, sleep, startFixture, until, withFixture } from '../../../lab/runtime/helpers.js';

describe('runtime session: stop and resume', function () {
  for (const n of [1, 8, 64]) {
    it(`stops all ${n} worker threads, resumes them, and nothing is lost`, async () => {
      await withFixture('threads', [String(n)], async (t) => {
        const counters = printed(t.output(), 'counters');
        const snapshot = (s: Session) => {
          const b = s.memory.read(counters, n * 8);
          return Array.from({ length: n }, (_, i) => b.readBigUInt64LE(i * 8));
        };
        const s = Session.open(t.pid);
        try {
          assert.equal(s.tids().length, n + 1);
          for (let round = 0; round < 3; round++) {
            assert.equal(s.stopAll(), n + 1);
            const a = snapshot(s);
            await sleep(20);
            assert.deepEqual(snapshot(s), a, 'a counter moved while every thread was stopped');
            assert.equal(s.syscall(NR.getpid), BigInt(t.pid));
            const pause = s.resume()!;
            assert.equal(pause.kind, 'all');
            assert.equal(pause.threads, n + 1);
            await until(() => snapshot(s).every((v, i) => v > a[i]!), 'every worker to resume');
          }
        } finally {
          s.detach();
        }
        assert.ok(s.pauses.length >= 3);
        await sleep(20);
        t.kill('SIGUSR1');
        const out = await t.waitFor((o) => /^final /m.test(o));
        const m = /final produced=(\d+) consumed=(\d+) gaps=(\d+)/.exec(out)!;
        assert.equal(m[1], m[2], 'messages were lost');
        assert.equal(m[3], '0', 'sequence gaps');
        assert.ok(Number(m[1]) > 0);
        assert.doesNotMatch(out, /BAD/);
      });
    });
  }

  it('borrows one thread while the others keep running', async () => {
    await withFixture('threads', ['4'], async (t) => {
      const counters = printed(t.output(), 'counters');
      await withSession(t.pid, async (s) => {
        const tid = s.borrow();
        assert.equal(tid, t.pid);
        const a = s.memory.read(counters, 32);
        await until(() => {
          const b = s.memory.read(counters, 32);
          return [0, 1, 2, 3].every((i) => b.readBigUInt64LE(i * 8) > a.readBigUInt64LE(i * 8));
        }, 'the other threads to keep working');
        assert.equal(s.syscall(NR.gettid), BigInt(tid));
        assert.equal(s.resume()!.kind, 'borrow');
      });
    });
  });

  it("never shows the target's parent a stop (waitpid WUNTRACED)", async () => {
    await withFixture('parent', [], async (t) => {
      const child = Number(printed(t.output(), 'child'));
      withSession(child, (s) => {
        s.stopAll();
        s.syscall(NR.getpid);
        s.resume();
        s.borrow();
        s.syscall(NR.gettid);
        s.sys.munmap(s.sys.mmap(0n, 4096, 3, 0x22), 4096);
      });
      await sleep(100);
      assert.doesNotMatch(t.output(), /parent saw/);
      // control: the parent does report a real stop
      process.kill(child, 'SIGSTOP');
      await t.waitFor((o) => /parent saw stop sig=19/.test(o));
      process.kill(child, 'SIGCONT');
      await t.waitFor((o) => /parent saw continue/.test(o));
      process.kill(child, 'SIGKILL');
      const out = await t.waitFor((o) => /parent saw exit/.test(o));
      assert.equal(out.match(/parent saw stop/g)!.length, 1);
    });
  });

  it('delivers a signal that arrives while all threads are stopped, with its siginfo', async () => {
    await withFixture('signals', [], async (t) => {
      withSession(t.pid, (s) => {
        s.stopAll();
        process.kill(t.pid, 'SIGUSR1');
        s.syscall(NR.getpid);
        assert.doesNotMatch(t.output(), /got SIGUSR1/);
      });
      const out = await t.waitFor((o) => /got SIGUSR1 n=1/.test(o));
      assert.match(out, new RegExp(`from=${process.pid} code=0`));
    });
  });

  it('delivers signals that arrive at a borrowed thread and at running ones', async () => {
    await withFixture('signals', [], async (t) => {
      const main = Number(printed(t.output(), 'main tid'));
      const other = Number(printed(t.output(), 'other tid'));
      await withSession(t.pid, async (s) => {
        s.borrow(main);
        tgkill(t.pid, main, 10); // at the borrowed thread: held while it is borrowed
        s.syscall(NR.getpid);
        tgkill(t.pid, other, 10); // at a running traced thread: its stop is served while we wait
        await sleep(50);
        s.service();
        s.syscall(NR.gettid);
        s.resume();
        await t.waitFor((o) => /got SIGUSR1 n=2/.test(o));
      });
      await sleep(50);
      assert.match(t.output(), /got SIGUSR1 n=2 from=\d+ code=-6/); // SI_TKILL, the siginfo tgkill made
      assert.doesNotMatch(t.output(), /n=3/);
    });
  });

  it('works on a process whose main thread has exited (zombie leader, live threads)', async () => {
    // startTarget's alive() takes a zombie leader for a dead process, so poll the output directly
    const t = startTarget([fixture('mainexit')]);
    try {
      await until(() => /ready/.test(t.output()), 'the worker to start');
      const worker = Number(printed(t.output(), 'worker tid'));
      withSession(t.pid, (s) => {
        assert.deepEqual(s.tids(), [worker]);
        assert.equal(s.stopAll(), 1);
        assert.equal(s.syscall(NR.gettid), BigInt(worker));
        s.resume();
        assert.equal(s.borrow(), worker);
      });
      const n = t.output().length;
      await until(() => /tick/.test(t.output().slice(n)), 'the worker to go on');
    } finally {
      t.dispose();
    }
  });

  it('detaches from every thread when the callback throws', async () => {
    const t = await startFixture('threads', ['3']);
    try {
      assert.throws(
        () =>
          withSession(t.pid, (s) => {
            s.stopAll();
            throw new Error('boom');
          }),
        /boom/,
      );
      // a new session can attach: nothing is left traced
      withSession(t.pid, (s) => assert.equal(s.tids().length, 4));
      t.kill('SIGUSR1');
      assert.match(await t.waitFor((o) => /^final /m.test(o)), /gaps=0/);
    } finally {
      t.dispose();
    }
  });
});
