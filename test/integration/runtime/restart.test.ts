/**
 * Threads blocked in the kernel when the tracer stops them must resume their
 * system call exactly as the kernel would have: a read() on a pipe still
 * gets the data written after the tracer left, a nanosleep still lasts its
 * full time (restart_syscall with the kernel's remaining time).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MAP, NR, PROT, withSession, type Session } from '../../../runtime/index.js';
import { printed, sleep, withFixture } from '../../../lab/runtime/helpers.js';

function fifo(): { path: string; dispose(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'ulp-fifo-'));
  const path = join(dir, 'fifo');
  execFileSync('mkfifo', [path]);
  return { path, dispose: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Syscalls through the stub on `tid`, the way staging uses a thread. */
function exercise(s: Session, tid: number, pid: number): void {
  assert.equal(s.syscall(NR.getpid, [], { tid }), BigInt(pid));
  assert.equal(s.syscall(NR.gettid, [], { tid }), BigInt(tid));
  const m = s.syscall(NR.mmap, [0n, 4096, PROT.READ | PROT.WRITE, MAP.PRIVATE | MAP.ANONYMOUS, -1, 0], {
    tid,
  });
  assert.equal(s.syscall(NR.munmap, [m, 4096], { tid }), 0n);
}

describe('runtime: interrupted system calls restart as the kernel would', () => {
  it('a thread blocked in read() on a pipe still receives the data after detach', async () => {
    const f = fifo();
    try {
      await withFixture('blocking', [f.path, '100', '1'], async (t) => {
        const reader = Number(printed(t.output(), 'reader tid'));
        const getpid = printed(t.output(), 'getpid');
        withSession(t.pid, (s) => {
          s.stopAll();
          const r = s.regs(reader);
          assert.equal(r.orig_rax, BigInt(NR.read), 'the reader should be inside read()');
          exercise(s, reader, t.pid);
          assert.equal(s.call(getpid, [], { tid: reader }), BigInt(t.pid));
          s.resume();
          s.borrow(reader);
          exercise(s, reader, t.pid);
          assert.equal(s.call(getpid, [], { tid: reader }), BigInt(t.pid));
        });
        await sleep(50);
        writeFileSync(f.path, 'hello');
        const out = await t.waitFor((o) => /read n=/.test(o));
        assert.match(out, /read n=5 data=hello/);
        assert.doesNotMatch(out, /read error/);
      });
    } finally {
      f.dispose();
    }
  });

  it('a thread in nanosleep sleeps its full time, through remote syscalls and a remote call', async () => {
    const f = fifo();
    try {
      await withFixture('blocking', [f.path, '1000', '2'], async (t) => {
        const sleeper = Number(printed(t.output(), 'sleeper tid'));
        const getpid = printed(t.output(), 'getpid');
        withSession(t.pid, (s) => {
          for (let i = 0; i < 3; i++) {
            s.stopAll();
            // clock_nanosleep the first time, then restart_syscall: the kernel resumed it with its remaining time.
            // Stopped again before it ran, it is about to make that restart_syscall (Tracee.settleRestart).
            const r = s.regs(sleeper);
            assert.ok(
              [230n, 219n].includes(r.orig_rax) || (r.rax === 219n && r.orig_rax === 2n ** 64n - 1n),
              'the sleeper should be inside its sleep',
            );
            exercise(s, sleeper, t.pid);
            s.resume();
          }
          s.borrow(sleeper);
          exercise(s, sleeper, t.pid);
          // A call could overwrite the kernel's restart state: it waits for the sleep to end first.
          assert.equal(s.call(getpid, [], { tid: sleeper }), BigInt(t.pid));
        });
        const out = await t.waitFor((o) => /sleeper done/.test(o));
        const slept = [...out.matchAll(/slept ms=(\d+) rc=(-?\d+)/g)];
        assert.equal(slept.length, 2);
        for (const [, ms, rc] of slept) {
          assert.equal(rc, '0');
          assert.ok(Number(ms) >= 1000, `slept only ${ms} ms`);
        }
      });
    } finally {
      f.dispose();
    }
  });
});
