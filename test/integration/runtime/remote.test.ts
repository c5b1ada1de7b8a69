/**
 * Remote calls, remote syscalls and memory access on live processes,
 * checked from the target's own point of view.
 */
import assert from 'node:assert/strict';
import { closeSync, ftruncateSync, writeSync } from 'node:fs';
import {
  F,
  F_SEAL,
  MAP,
  MFD,
  NR,
  PROT,
  findStub,
  openTargetFd,
  readMaps,
  STUB_MAPS_NAME,
  withSession,
} from '../../../runtime/index.js';
import { printed, sleep, until, withFixture } from '../../../lab/runtime/helpers.js';
import { u64Bytes } from '../../../common/u64.js';

describe('runtime: remote calls and memory', () => {
  it("leaves a leaf function's red zone, registers and xmm state intact across remote calls on its thread", async () => {
    await withFixture('redzone', [], async (t) => {
      const leaf = Number(printed(t.output(), 'leaf tid'));
      const touch = printed(t.output(), 'touch');
      const iterations = printed(t.output(), 'iterations');
      const corrupt = printed(t.output(), 'corrupt');
      await withSession(t.pid, async (s) => {
        for (let i = 0; i < 20; i++) {
          s.borrow(leaf);
          assert.equal(s.call(touch, [4096], { tid: leaf }), 4096n - 86n); // 0xaa as a signed char
          s.resume();
          await sleep(2);
        }
        const before = s.memory.readU64(iterations);
        await until(() => s.memory.readU64(iterations) > before, 'the leaf to keep spinning');
        assert.equal(s.memory.readU64(corrupt), 0n);
      });
      assert.doesNotMatch(t.output(), /CORRUPTED/);
    });
  });

  it('maps a memfd twice with MAP_SHARED and the target sees the alias both ways', async () => {
    await withFixture('alias', [], async (t) => {
      const req = printed(t.output(), 'req');
      await withSession(t.pid, async (s) => {
        s.borrow();
        const sys = s.sys;
        const fd = sys.memfdCreate('ulp:test-alias', MFD.CLOEXEC | MFD.ALLOW_SEALING);
        // fill it from the tracer side, no remote write needed
        const f = openTargetFd(t.pid, fd);
        try {
          ftruncateSync(f, 8192);
          writeSync(f, u64Bytes(0xabcdef01n), 0, 8, 4096);
        } finally {
          closeSync(f);
        }
        sys.pwrite64(fd, u64Bytes(0x1234n), 16);
        sys.addSeals(fd, F_SEAL.SHRINK | F_SEAL.GROW | F_SEAL.SEAL); // not WRITE: the alias is writable
        assert.equal(sys.fcntl(fd, F.GET_SEALS), 7n);
        const a = sys.mmap(0n, 8192, PROT.READ | PROT.WRITE, MAP.SHARED, fd, 0);
        const b = sys.mmap(0n, 8192, PROT.READ | PROT.WRITE, MAP.SHARED, fd, 0);
        sys.close(fd);
        assert.notEqual(a, b);
        assert.equal(s.memory.readU64(b + 4096n), 0xabcdef01n, 'written through /proc/PID/fd');
        assert.equal(s.memory.readU64(a + 16n), 0x1234n, 'written by a remote pwrite64');
        const names = readMaps(t.pid).filter((m) => m.path === '/memfd:ulp:test-alias (deleted)');
        assert.equal(names.length, 2);
        s.memory.write(a, u64Bytes(0x5150n)); // the tracer writes through a...
        s.memory.write(req + 8n, Buffer.concat([u64Bytes(a), u64Bytes(b)]));
        s.memory.write(req, u64Bytes(1n));
        s.resume();
        const out = await t.waitFor((o) => /wrote a=/.test(o));
        assert.match(out, /seq=1 b=0x5150 /, '...and the target reads it through b');
        assert.equal(s.memory.readU64(b), 0x5151n, 'the target wrote through a, the tracer reads through b');
        s.borrow();
        s.sys.munmap(a, 8192);
        s.sys.munmap(b, 8192);
        assert.equal(readMaps(t.pid).filter((m) => m.path.includes('ulp:test-alias')).length, 0);
      });
    });
  });

  it('writes into a read-only page with poke (PTRACE_POKEDATA), not with write', async () => {
    await withFixture('alias', [], async (t) => {
      const req = printed(t.output(), 'req');
      const ro = printed(t.output(), 'ro');
      withSession(t.pid, (s) => {
        s.borrow();
        assert.throws(
          () => s.memory.write(ro, u64Bytes(0x2222n)),
          (e: any) => e.code === 'PROC_MEMORY',
        );
        s.poke(ro, u64Bytes(0x2222n));
        s.poke(ro + 9n, Buffer.from([0x77])); // unaligned single byte: neighbours preserved
        assert.equal(s.memory.readU64(ro), 0x2222n);
        assert.equal(s.memory.read(ro + 8n, 2).toString('hex'), '0077');
        s.memory.write(req + 8n, Buffer.concat([u64Bytes(req + 24n), u64Bytes(req + 24n)]));
        s.memory.write(req, u64Bytes(1n));
      });
      assert.match(await t.waitFor((o) => /^seq=1 /m.test(o)), /^seq=1 b=0x\w+ ro=0x2222$/m);
    });
  });

  it('creates the stub page once and finds it again in later sessions', async () => {
    await withFixture('sleepy', [], async (t) => {
      assert.equal(
        findStub(t.pid, new (await import('../../../runtime/index.js')).RemoteMemory(t.pid)),
        undefined,
      );
      const first = withSession(t.pid, (s) => {
        s.borrow();
        return s.stub();
      });
      assert.equal(first.created, true);
      const maps = readMaps(t.pid);
      const header = maps.filter((m) => m.path === STUB_MAPS_NAME);
      assert.equal(header.length, 1);
      assert.equal(header[0]!.start, first.base);
      assert.ok(!header[0]!.write, 'the header page is sealed read-only');
      assert.ok(
        maps.some((m) => m.start === first.base + 0x1000n && m.exec && !m.write),
        'the code is r-x',
      );
      const second = withSession(t.pid, (s) => {
        s.borrow();
        s.syscall(NR.getpid);
        return s.stub();
      });
      assert.deepEqual(second, { base: first.base, created: false });
      assert.equal(readMaps(t.pid).filter((m) => m.path === STUB_MAPS_NAME).length, 1);
    });
  });
});
