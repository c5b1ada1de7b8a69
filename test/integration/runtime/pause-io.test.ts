/**
 * The pause's memory access (runtime/loader/pause-io.ts) on a real
 * process: the watched pages read back in one call, words compared with
 * the kept copy, a block written as one write with the bytes between its
 * patches as read, and a read-only page written both through the
 * descriptor opened before the pause and, without it, through Session.poke
 * on a stopped thread (where the kernel refuses /proc/PID/mem writes, that
 * is PTRACE_POKEDATA).
 */
import assert from 'node:assert/strict';
import { Session } from '../../../runtime/index.js';
import { PauseIO } from '../../../runtime/loader/pause-io.js';
import type { PatchBlock } from '../../../runtime/loader/switch-plan.js';
import { compile } from '../../../lab/compile.js';
import { startTarget, type Target } from '../../../lab/target.js';

const PROGRAM = `
#include <stdio.h>
#include <unistd.h>
long data_words[1024] = { 1, 2, 3, 4 };
const long ro_words[1024] = { 7, 8, 9, 10, [600] = 77 };
int main(void) {
  printf("ready data=%p ro=%p\\n", (void *)data_words, (void *)ro_words);
  fflush(stdout);
  for (;;) pause();
}
`;

const word = (v: bigint) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(v);
  return b;
};

describe('pause memory access (PauseIO)', function () {
  this.timeout(60_000);
  let t: Target;
  let data: bigint;
  let ro: bigint;
  before(async () => {
    const exe = compile({
      sources: [{ name: 'pauseio_main.c', code: PROGRAM }],
      out: 'pauseio_main',
      flags: ['-O0'],
    });
    t = startTarget([exe]);
    const out = await t.waitFor((o) => /ready data=0x[0-9a-f]+ ro=0x[0-9a-f]+/.test(o));
    const m = /data=(0x[0-9a-f]+) ro=(0x[0-9a-f]+)/.exec(out)!;
    data = BigInt(m[1]!);
    ro = BigInt(m[2]!);
  });
  after(() => t?.dispose());

  it('reads, compares, writes blocks and read-only pages, with and without /proc/PID/mem', () => {
    const s = Session.open(t.pid);
    try {
      const watched = [
        { addr: ro, len: 8 },
        { addr: ro + 8n, len: 8 },
        { addr: ro + 600n * 8n, len: 8 },
        { addr: data + 24n, len: 8 },
        { addr: ro + 16n, len: 16 },
      ];
      const io = new PauseIO(s, watched);
      io.read();
      io.keep();
      assert.deepEqual(
        [0, 1, 2, 3].map((i) => io.u64(i)),
        [7n, 8n, 77n, 4n],
      );
      assert.ok(io.sameWords(0, 4));
      assert.ok(io.holds(4, Buffer.concat([word(9n), word(10n)])));
      assert.ok(!io.holds(4, Buffer.concat([word(9n), word(11n)])));
      assert.ok(io.pages >= 2, `${io.pages} pages`);

      s.stopAll();
      // One write for two patches 16 bytes apart: the word between them (ro_words[1]) is written back as read.
      const before = io.writes;
      io.writeBlock({
        addr: ro,
        len: 24,
        patches: [
          { addr: ro, bytes: word(0x11n), undo: word(7n) },
          { addr: ro + 16n, bytes: word(0x33n), undo: word(9n) },
        ],
      });
      assert.equal(io.writes - before, 1);
      assert.deepEqual(
        [0n, 8n, 16n].map((o) => s.memory.readU64(ro + o)),
        [0x11n, 8n, 0x33n],
      );
      io.read();
      assert.ok(!io.sameWords(0, 1), 'the changed word is seen');
      assert.ok(io.sameWords(1, 3), 'the others are not');
      // Without the descriptor: Session.poke through the stopped thread, into the read-only page.
      io.close();
      io.write(ro + 600n * 8n, word(0x77n));
      assert.equal(s.memory.readU64(ro + 600n * 8n), 0x77n);
      // Put back what the program had.
      io.write(ro, word(7n));
      io.write(ro + 16n, word(9n));
      io.write(ro + 600n * 8n, word(77n));
      assert.deepEqual(
        [0n, 8n, 16n].map((o) => s.memory.readU64(ro + o)),
        [7n, 8n, 9n],
      );
      s.resume();
    } finally {
      s.detach();
    }
    assert.ok(t.alive());
  });

  it("writes a block's image made before the pause only while its span holds what the plan read", () => {
    const s = Session.open(t.pid);
    try {
      const watched = [
        { addr: ro + 32n, len: 8 },
        { addr: ro + 48n, len: 8 },
      ];
      const io = new PauseIO(s, watched);
      io.read();
      io.keep();
      const block = (): PatchBlock => ({
        addr: ro + 32n,
        len: 24,
        patches: [
          { addr: ro + 32n, bytes: word(0x55n), undo: word(0n) },
          { addr: ro + 48n, bytes: word(0x66n), undo: word(0n) },
        ],
      });
      const same = block();
      io.prepare([same]);
      assert.ok(same.image, 'a block of two patches in one read span gets its image');
      assert.deepEqual(same.image, Buffer.concat([word(0x55n), word(0n), word(0x66n)]));

      s.stopAll();
      io.read();
      io.writeBlock(same);
      assert.deepEqual(
        [32n, 40n, 48n].map((o) => s.memory.readU64(ro + o)),
        [0x55n, 0n, 0x66n],
      );
      // The word between the patches changes after the plan read it: the image is stale, the read of the pause wins.
      io.write(ro + 32n, word(0n));
      io.write(ro + 40n, word(0x99n));
      io.write(ro + 48n, word(0n));
      const changed = block();
      io.prepare([changed]);
      io.read();
      const writes = io.writes;
      io.writeBlock(changed);
      assert.equal(io.writes - writes, 1, 'still one write');
      assert.deepEqual(
        [32n, 40n, 48n].map((o) => s.memory.readU64(ro + o)),
        [0x55n, 0x99n, 0x66n],
        'the byte the program changed is kept',
      );
      io.write(ro + 32n, word(0n));
      io.write(ro + 40n, word(0n));
      io.write(ro + 48n, word(0n));
      io.close();
      s.resume();
    } finally {
      s.detach();
    }
    assert.ok(t.alive());
  });
});
