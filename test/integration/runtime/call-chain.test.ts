/**
 * Walking a stopped thread's call chain with the unwind tables
 * (runtime/loader/call-chain.ts, elf/cfi.ts), on a real process whose
 * threads are stopped in known chains (test/fixtures/runtime/frames.c):
 * one blocked in read() four calls deep, one blocked in a signal handler,
 * where the walk must cross the kernel's signal frame.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { symbolContaining } from '../../../elf/index.js';
import { RemoteMemory, Session } from '../../../runtime/index.js';
import { callChain } from '../../../runtime/loader/call-chain.js';
import { takeSnapshot } from '../../../runtime/loader/snapshot.js';
import { startFixture, until } from '../../../lab/runtime/helpers.js';

const state = (pid: number, tid: number) =>
  readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8').split(') ')[1]![0];

describe('runtime: call chains from the unwind tables', function () {
  this.timeout(180_000);
  it('walks a blocked thread and a thread inside a signal handler to their outermost frames', async () => {
    const t = await startFixture('frames');
    try {
      const tids = readdirSync(`/proc/${t.pid}/task`).map(Number);
      const sig = tids.find((x) => x !== t.pid)!;
      await until(() => tids.every((x) => state(t.pid, x) === 'S'), 'both threads blocked');
      const mem = new RemoteMemory(t.pid);
      const snap = takeSnapshot(t.pid, mem);
      const name = (pc: bigint, exact: boolean) => {
        const at = exact ? pc : pc - 1n;
        const o = snap.objects.find((x) => at >= x.span.start && at < x.span.end);
        return o ? (symbolContaining(o.elf, at - o.bias)?.name ?? '?') : '?';
      };
      const s = Session.open(t.pid);
      const chains = new Map<number, string[]>();
      try {
        for (const tid of [t.pid, sig]) {
          s.borrow(tid);
          const chain = callChain(snap.objects, s.regs(tid), (a) => mem.tryRead(a, 8)?.readBigUInt64LE(0));
          assert.equal(
            chain.complete,
            true,
            `thread ${tid}: ${chain.pcs.map((p, i) => name(p, i === 0)).join(' < ')}`,
          );
          // After the signal frame the return address is the interrupted pc itself; the name lookup tolerates both.
          chains.set(
            tid,
            chain.pcs.map((p, i) => name(p, i === 0)),
          );
          s.resume();
        }
      } finally {
        s.detach();
      }
      const main = chains.get(t.pid)!;
      const from = main.indexOf('inner');
      assert.ok(from > 0, main.join(' < '));
      assert.deepEqual(main.slice(from, from + 4), ['inner', 'middle', 'outer', 'main'], main.join(' < '));
      assert.equal(main.at(-1), '_start');
      const handler = chains.get(sig)!;
      const h = handler.indexOf('on_usr1');
      assert.ok(h > 0, handler.join(' < '));
      // libc's own start_thread and clone3 carry no symbol here (Debian strips .symtab); the walk's completeness is asserted above.
      assert.deepEqual(
        handler.slice(h, h + 4).filter((n) => n !== '?'),
        ['on_usr1', 'spin', 'sig_thread'],
        `the walk crossed the signal frame: ${handler.join(' < ')}`,
      );
    } finally {
      t.dispose();
    }
  });
});
