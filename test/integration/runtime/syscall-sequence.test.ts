/**
 * Session.syscalls: remote system calls that share one save and restore of
 * their thread (remote-syscall.ts, SyscallSequence), on the victim fixture,
 * whose threads check their own registers, pipe reads and sleeps all the
 * time and print BAD on any difference. The thread must come back exactly
 * as it was after the sequence, after an error inside it, and when a remote
 * call interrupts it; and the sequence must really save and restore once
 * (counted with runtime/sys/tally.ts).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { Target } from '../../../lab/target.js';
import { printed, sleep, startFixture, until, withFixture } from '../../../lab/runtime/helpers.js';
import { MAP, NR, PROT, Session, withSession } from '../../../runtime/index.js';
import { tgkill } from '../../../runtime/sys/libc.js';
import { closeTally, openTally, type Tally } from '../../../runtime/sys/tally.js';

async function healthy(t: Target, from: number): Promise<void> {
  await t.waitFor((o) => {
    const tail = o.slice(from);
    return /compute ok/.test(tail) && /reader ok/.test(tail) && /sleeper ok/.test(tail);
  }, 20_000);
  assert.doesNotMatch(t.output(), /BAD/);
}

function counted<T>(fn: () => T): { value: T; tally: Tally } {
  openTally();
  try {
    const value = fn();
    return { value, tally: closeTally() };
  } catch (e) {
    closeTally();
    throw e;
  }
}

const n = (t: Tally, key: string) => t.get(key) ?? 0;

describe('runtime: a sequence of remote system calls on one thread', function () {
  this.timeout(120_000);
  let t: Target;
  let tids: Record<'reader' | 'sleeper', number>;
  let work: bigint;

  before(async () => {
    t = await startFixture('victim');
    const out = t.output();
    tids = { reader: Number(printed(out, 'reader tid')), sleeper: Number(printed(out, 'sleeper tid')) };
    work = printed(out, 'work');
    withSession(t.pid, (s) => {
      s.borrow();
      s.stub();
    });
  });
  after(() => t?.dispose());

  for (const thread of ['reader', 'sleeper'] as const) {
    it(`saves and restores the ${thread} thread once for four calls, and it goes on unharmed`, async () => {
      const from = t.output().length;
      withSession(t.pid, (s: Session) => {
        const tid = tids[thread];
        s.borrow(tid);
        s.stub();
        const before = s.regs(tid);
        const { value, tally } = counted(() =>
          s.syscalls(() => {
            const m = s.sys.mmap(0n, 8192, PROT.READ | PROT.WRITE, MAP.PRIVATE | MAP.ANONYMOUS);
            s.memory.write(m, Buffer.from('sequence'));
            const pid = s.syscall(NR.getpid);
            const got = s.memory.read(m, 8).toString();
            s.sys.munmap(m, 8192);
            return { pid, got, gettid: s.syscall(NR.gettid) };
          }),
        );
        assert.deepEqual(value, { pid: BigInt(t.pid), got: 'sequence', gettid: BigInt(tid) });
        assert.equal(n(tally, 'syscall:getpid') + n(tally, 'syscall:gettid'), 2);
        assert.equal(n(tally, 'ptrace:PTRACE_GETSIGMASK'), 1, 'the mask is saved once');
        assert.equal(
          n(tally, 'ptrace:PTRACE_SETSIGMASK'),
          2,
          'set to the injection mask once, restored once',
        );
        assert.equal(n(tally, 'ptrace:PTRACE_SETREGS'), 4 + 1, 'one per call, one to restore');
        assert.deepEqual(s.regs(tid), before, 'the thread has its own registers back');
        s.resume();
      });
      await healthy(t, from);
    });
  }

  it('restores the thread when the work inside the sequence throws', async () => {
    const from = t.output().length;
    withSession(t.pid, (s: Session) => {
      s.borrow(tids.sleeper);
      s.stub();
      const before = s.regs(tids.sleeper);
      assert.throws(
        () =>
          s.syscalls(() => {
            s.syscall(NR.getpid);
            s.memory.read(0n, 8); // unmapped: PROC_MEMORY, thrown between two calls
            s.syscall(NR.getpid);
          }),
        { code: 'PROC_MEMORY' },
      );
      assert.deepEqual(s.regs(tids.sleeper), before);
      s.resume();
    });
    await healthy(t, from);
  });

  it('ends the sequence before a remote call on the thread, and starts a new one after it', async () => {
    const from = t.output().length;
    withSession(t.pid, (s: Session) => {
      s.borrow(tids.reader);
      s.stub();
      const before = s.regs(tids.reader);
      const { value, tally } = counted(() =>
        s.syscalls(() => [
          s.syscall(NR.getpid),
          s.call(work, [5, 1], { tid: tids.reader }),
          s.syscall(NR.getpid),
        ]),
      );
      assert.deepEqual(value, [BigInt(t.pid), 16n, BigInt(t.pid)]);
      assert.equal(n(tally, 'ptrace:PTRACE_GETSIGMASK'), 3, 'a sequence, the call, another sequence');
      assert.deepEqual(s.regs(tids.reader), before);
      s.resume();
    });
    await healthy(t, from);
  });

  it('leaves a pause() that a signal interrupted while the thread was lent to return EINTR, as without the tracer', async () => {
    await withFixture('pauser', [], async (p) => {
      const main = Number(printed(p.output(), 'main tid'));
      // It prints ready just before it enters pause().
      await until(() => /^34 /.test(readFileSync(`/proc/${p.pid}/syscall`, 'utf8')), 'pause() to be entered');
      withSession(p.pid, (s: Session) => {
        s.borrow(main);
        assert.equal(s.regs(main).orig_rax, 34n, 'the thread should be inside pause() (system call 34)');
        s.stub();
        tgkill(p.pid, main, 10); // SIGUSR1, held while the thread is lent
        s.syscalls(() => {
          s.syscall(NR.getpid);
          s.syscall(NR.getpid);
        });
        s.resume();
      });
      await p.waitFor((o) => /pause returned/.test(o), 20_000);
      assert.match(p.output(), /pause returned r=-1 errno=4 handled=1/);
      // And with nothing pending, pause() goes on waiting after the same calls.
      const from = p.output().length;
      withSession(p.pid, (s: Session) => {
        s.borrow(main);
        s.syscalls(() => s.syscall(NR.getpid));
        s.resume();
      });
      await sleep(200);
      assert.doesNotMatch(p.output().slice(from), /pause returned/);
    });
  });

  it('leaves a process stopped by SIGSTOP stopped after a sequence on its thread, and its pause() intact after SIGCONT', async () => {
    await withFixture('pauser', [], async (p) => {
      const main = Number(printed(p.output(), 'main tid'));
      const state = () => /^State:\s+(\S)/m.exec(readFileSync(`/proc/${p.pid}/status`, 'utf8'))![1];
      await until(() => /^34 /.test(readFileSync(`/proc/${p.pid}/syscall`, 'utf8')), 'pause() to be entered');
      p.kill('SIGSTOP');
      await until(() => state() === 'T', 'the process to stop');
      withSession(p.pid, (s: Session) => {
        s.borrow(main);
        s.syscalls(() => {
          assert.equal(s.syscall(NR.getpid), BigInt(p.pid));
          assert.equal(s.syscall(NR.gettid), BigInt(main));
        });
        s.resume();
      });
      await sleep(200);
      assert.equal(state(), 'T', 'still stopped by its SIGSTOP');
      p.kill('SIGCONT');
      await until(() => state() === 'S', 'the process to wait again');
      await sleep(100);
      assert.doesNotMatch(p.output(), /pause returned/, 'pause() went on waiting');
      p.kill('SIGUSR1');
      await p.waitFor((o) => /pause returned r=-1 errno=4 handled=1/.test(o), 20_000);
    });
  });
});
