/**
 * Every way of failing that the runtime promises a clean PROC_ error for,
 * produced for real through the public API.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { NR, PROC_CODES, readLinkMap, Session, withSession } from '../../../runtime/index.js';
import { compile } from '../../../lab/compile.js';
import { startTarget } from '../../../lab/target.js';
import { readableDriverScript } from '../../../lab/runtime/driver-process.js';
import { fixture, printed, sleep, until, withFixture } from '../../../lab/runtime/helpers.js';

function rejects(fn: () => unknown, code: keyof typeof PROC_CODES, message?: RegExp): void {
  assert.throws(fn, (e: any) => {
    assert.equal(e.code, code, `expected ${code}, got ${e.code}: ${e.message}`);
    if (message) assert.match(e.message, message);
    assert.ok(e.hint, 'every error has a hint');
    return true;
  });
}

describe('runtime: errors', () => {
  it('no such process', () => {
    const pidMax = Number(readFileSync('/proc/sys/kernel/pid_max', 'utf8'));
    rejects(() => Session.open(pidMax + 1), 'PROC_NOT_FOUND', /no process/);
    rejects(() => Session.open(-4), 'PROC_NOT_FOUND');
  });

  it('a thread id instead of a process id', async () => {
    await withFixture('signals', [], async (t) => {
      const other = Number(printed(t.output(), 'other tid'));
      rejects(() => Session.open(other), 'PROC_NOT_FOUND', new RegExp(`thread of process ${t.pid}`));
    });
  });

  it('permission denied: a kernel thread', () => {
    rejects(() => Session.open(2), 'PROC_PERMISSION_DENIED', /kernel thread/);
  });

  it('permission denied: another user tracing a root process, with the reason', async () => {
    await withFixture('sleepy', [], async (t) => {
      // the driver runs as nobody through setpriv
      const out = execFileSync(
        'setpriv',
        [
          '--reuid=65534',
          '--regid=65534',
          '--clear-groups',
          process.execPath,
          readableDriverScript(),
          String(t.pid),
          'probe',
        ],
        { encoding: 'utf8' },
      );
      const err = JSON.parse(out.trim().split('\n').pop()!);
      assert.equal(err.code, 'PROC_PERMISSION_DENIED');
      assert.match(err.message, /runs as uid 0\/0\/0\/0 and this user is uid 65534/);
    });
  });

  it('already traced, naming the tracer', async () => {
    await withFixture('sleepy', [], async (t) => {
      const strace = startTarget(['strace', '-qq', '-o', '/dev/null', '-p', String(t.pid)]);
      try {
        let tracer = 0;
        await until(
          () =>
            (tracer = Number(
              /TracerPid:\s+(\d+)/.exec(readFileSync(`/proc/${t.pid}/status`, 'utf8'))![1],
            )) !== 0,
          'strace to attach',
        );
        rejects(() => Session.open(t.pid), 'PROC_ALREADY_TRACED', new RegExp(`pid ${tracer} \\(strace\\)`));
      } finally {
        strace.dispose();
      }
      await until(
        () => /TracerPid:\s+0\b/.test(readFileSync(`/proc/${t.pid}/status`, 'utf8')),
        'strace to go',
      );
      // a second session from this very process
      withSession(t.pid, () =>
        rejects(() => Session.open(t.pid), 'PROC_ALREADY_TRACED', /this very process/),
      );
    });
  });

  it('a zombie', async () => {
    await withFixture('zombie', [], async (t) => {
      rejects(() => Session.open(Number(printed(t.output(), 'zombie'))), 'PROC_ZOMBIE');
    });
  });

  it('a 32-bit process', async () => {
    const exe = compile({
      sources: ['runtime/i386.S'],
      out: 'i386',
      flags: ['-m32', '-nostdlib', '-static'],
    });
    const t = startTarget([exe]);
    try {
      await t.waitFor((o) => /ready/.test(o));
      rejects(() => Session.open(t.pid), 'PROC_UNSUPPORTED_ARCH', /32-bit i386/);
    } finally {
      t.dispose();
    }
  });

  it('a static binary: remote syscalls work, there is no link map', async () => {
    const t = startTarget([fixture('sleepy', ['-static'])]);
    try {
      await t.waitFor((o) => /ready/.test(o));
      withSession(t.pid, (s) => {
        s.borrow();
        assert.equal(s.syscall(NR.getpid), BigInt(t.pid), 'the stub needs no libc');
      });
      rejects(() => readLinkMap(t.pid), 'PROC_STATIC');
    } finally {
      t.dispose();
    }
  });

  it('the whole process exits mid-call', async () => {
    await withFixture('alias', [], async (t) => {
      const exit = printed(t.output(), 'exit');
      withSession(t.pid, (s) => {
        s.borrow();
        rejects(() => s.call(exit, [0]), 'PROC_EXITED');
      });
    });
  });

  it('the process is killed between operations', async () => {
    await withFixture('alias', [], async (t) => {
      withSession(t.pid, (s) => {
        s.borrow();
        s.syscall(NR.getpid);
        process.kill(t.pid, 'SIGKILL');
        rejects(() => s.syscall(NR.getpid), 'PROC_EXITED');
      });
    });
  });

  it('the thread in use exits mid-syscall', async () => {
    await withFixture('signals', [], async (t) => {
      const other = Number(printed(t.output(), 'other tid'));
      withSession(t.pid, (s) => {
        s.borrow(other);
        rejects(
          () => s.syscall(60 /* exit: this thread only */, [0], { tid: other }),
          'PROC_THREAD_EXITED',
          new RegExp(`thread ${other}`),
        );
        assert.deepEqual(s.tids(), [t.pid]);
      });
      process.kill(t.pid, 'SIGUSR1');
      await t.waitFor((o) => /got SIGUSR1 n=1/.test(o)); // the rest of the process is fine
    });
  });

  it('a remote call that never returns times out and the thread is restored', async () => {
    await withFixture('alias', [], async (t) => {
      const block = printed(t.output(), 'block');
      const add = printed(t.output(), 'add');
      const req = printed(t.output(), 'req');
      withSession(t.pid, (s) => {
        s.borrow();
        rejects(
          () => s.call(block, [], { timeoutMs: 200 }),
          'PROC_CALL_TIMEOUT',
          /did not return within 200 ms/,
        );
        assert.equal(s.call(add, [40, 2]), 42n, 'the same thread works for the next call');
        const self = Buffer.alloc(16);
        self.writeBigUInt64LE(req + 24n, 0);
        self.writeBigUInt64LE(req + 24n, 8);
        s.memory.write(req + 8n, self);
        s.memory.write(req, Buffer.from([1, 0, 0, 0, 0, 0, 0, 0]));
      });
      await t.waitFor((o) => /seq=1 /.test(o)); // its own loop goes on
    });
  });

  it('a remote call that crashes is reported and the thread is restored', async () => {
    await withFixture('alias', [], async (t) => {
      const add = printed(t.output(), 'add');
      withSession(t.pid, (s) => {
        s.borrow();
        rejects(() => s.call(0x10n, [1]), 'PROC_CALL_FAULT', /signal 11/);
        assert.equal(s.call(add, [1, 2]), 3n);
      });
      await sleep(20);
      assert.ok(t.alive());
    });
  });

  it('reads and writes outside the mappings', async () => {
    await withFixture('sleepy', [], async (t) => {
      const s = Session.open(t.pid);
      try {
        rejects(() => s.memory.read(0x1000n, 8), 'PROC_MEMORY', /0x1000/);
        rejects(() => s.memory.write(0x1000n, Buffer.alloc(8)), 'PROC_MEMORY');
        s.borrow();
        rejects(() => s.poke(0x1000n, Buffer.alloc(8)), 'PROC_MEMORY');
      } finally {
        s.detach();
      }
    });
  });

  it('remote syscall failures carry the errno', async () => {
    await withFixture('sleepy', [], async (t) => {
      withSession(t.pid, (s) => {
        s.borrow();
        assert.equal(s.syscall(NR.close, [9999]), -9n); // raw: -EBADF
        rejects(() => s.sys.close(9999), 'PROC_SYSCALL_FAILED', /close .* EBADF/);
      });
    });
  });
});
