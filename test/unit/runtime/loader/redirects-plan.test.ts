/**
 * The redirect planner (runtime/loader/redirects.ts) on hand-made builds:
 * which entries get a jump to which live function, across stacked builds and
 * reverts, which jumps of earlier switches are kept, retargeted or taken
 * back, and what is reported as reachable, with the reason.
 */
import assert from 'node:assert/strict';
import type { ElfObject } from '../../../../elf/index.js';
import type { ProcessObject } from '../../../../runtime/loader/model.js';
import { encodeJump } from '../../../../runtime/loader/redirect-code.js';
import { decodeJournal, encodeJournal, type Journal } from '../../../../runtime/loader/redirect-journal.js';
import {
  planRedirects,
  type RedirectInput,
  type StepFunctions,
} from '../../../../runtime/loader/redirects.js';
import { entrySites, threadsInside } from '../../../../runtime/loader/redirect-switch.js';
import { seededRandom } from '../../../../lab/random.js';

/** A straight-line body long enough for any jump. */
const BODY = Buffer.from('488b0500000000488d14bf488b00488d445001c3', 'hex');

function build(id: string, bias: bigint): ProcessObject {
  return {
    name: id,
    bias,
    elf: {} as ElfObject,
    buildId: id,
    soname: 'libx.so.1',
    source: 'ulp',
    code: [{ start: bias, end: bias + 0x100000n }],
    span: { start: bias, end: bias + 0x100000n },
  };
}

const v1 = build('aa01', 0x7f0000000000n);
const v2 = build('aa02', 0x7f0000200000n);
const v3 = build('aa03', 0x7f0000400000n);

/** Functions by build: name -> [start, end). */
const SYMBOLS: Record<string, Record<string, [number, number]>> = {
  aa01: { f: [0x1000, 0x1020], g: [0x1040, 0x1060], tiny: [0x1080, 0x1084] },
  aa02: { f: [0x2000, 0x2020], g: [0x2040, 0x2060], tiny: [0x2080, 0x2084] },
  aa03: { f: [0x3000, 0x3020], g: [0x3040, 0x3060] },
};

const range = (id: string, name: string) => {
  const [s, e] = SYMBOLS[id]![name]!;
  return { start: `0x${s.toString(16)}`, end: `0x${e.toString(16)}` };
};

function step(
  from: ProcessObject,
  to: ProcessObject,
  names: string[],
  unpaired: string[] = [],
): StepFunctions {
  return {
    fromBuildId: from.buildId!,
    toBuildId: to.buildId!,
    pairs: names.map((name) => ({ name, from: range(from.buildId!, name), to: range(to.buildId!, name) })),
    unpaired: unpaired.map((name) => ({ name, ...range(from.buildId!, name) })),
  };
}

function input(
  builds: ProcessObject[],
  target: ProcessObject,
  s: StepFunctions | undefined,
  previous?: Journal,
  opts: { names?: boolean } = {},
): RedirectInput {
  const active = previous?.redirects ?? [];
  return {
    builds,
    target,
    previous,
    active,
    step: s,
    code: (_b, start, end) => {
      const len = Number(end - start);
      return len <= BODY.length
        ? Buffer.from(BODY.subarray(0, len))
        : Buffer.concat([BODY, Buffer.alloc(len - BODY.length, 0xcc)]);
    },
    lookup: (b, name) => {
      if (opts.names === false && b === v1) return undefined;
      const r = SYMBOLS[b.buildId!]?.[name];
      return r ? { start: BigInt(r[0]), end: BigInt(r[1]) } : undefined;
    },
  };
}

/** What the switch leaves in the journal when every planned write succeeds. */
function journalOf(plan: ReturnType<typeof planRedirects>, live: ProcessObject, generation: number): Journal {
  return {
    format: 1,
    soname: 'libx.so.1',
    generation,
    live: live.buildId!,
    pairs: plan.pairs,
    unpaired: plan.unpaired,
    redirects: plan.redirects.map((r) => ({
      at: `0x${r.at.toString(16)}`,
      original: r.original.toString('hex'),
      written: r.written.toString('hex'),
      from: r.from,
      to: r.to,
    })),
    uncovered: plan.uncovered,
  };
}

const jumps = (plan: ReturnType<typeof planRedirects>) =>
  plan.redirects
    .map((r) => `${r.from.build}:${r.from.name ?? r.from.start} -> ${r.to.build}:${r.to.start}`)
    .sort();

describe('redirect planner', () => {
  it('apply: each changed function of the old build jumps to its counterpart', () => {
    const plan = planRedirects(input([v1, v2], v2, step(v1, v2, ['f', 'g'])));
    assert.deepEqual(jumps(plan), ['aa01:f -> aa02:0x2000', 'aa01:g -> aa02:0x2040']);
    assert.deepEqual(plan.redirects[0]!.written, encodeJump(v1.bias + 0x1000n, v2.bias + 0x2000n));
    assert.deepEqual(plan.redirects[0]!.original, BODY.subarray(0, 5));
    assert.equal(plan.writes.length, 2);
    assert.deepEqual(plan.restores, []);
    assert.deepEqual(plan.uncovered, []);
  });

  it('reports functions too short for a jump and functions without a counterpart', () => {
    const plan = planRedirects(input([v1, v2], v2, step(v1, v2, ['f', 'tiny'], ['g'])));
    assert.deepEqual(
      jumps(plan),
      ['aa01:f -> aa02:0x2000', 'aa01:g -> aa02:0x2040'],
      'g is found by name in the live build',
    );
    assert.deepEqual(
      plan.uncovered.map((u) => [u.fn.name, u.reason]),
      [['tiny', 'too short for a jump (4 bytes, 5 needed)']],
    );
    const gone = planRedirects(
      input([v1, v3], v3, { ...step(v1, v3, ['f']), unpaired: [{ name: 'tiny', ...range('aa01', 'tiny') }] }),
    );
    assert.deepEqual(
      gone.uncovered.map((u) => u.fn.name),
      ['tiny'],
    );
    assert.match(gone.uncovered[0]!.reason, /no counterpart in the live build aa03/);
  });

  it('revert: the old build gets its bytes back, the new build jumps back to it', () => {
    const applied = planRedirects(input([v1, v2], v2, step(v1, v2, ['f', 'g'])));
    const j1 = journalOf(applied, v2, 1);
    const back = planRedirects(input([v1, v2], v1, step(v2, v1, ['f', 'g']), j1));
    assert.deepEqual(jumps(back), ['aa02:f -> aa01:0x1000', 'aa02:g -> aa01:0x1040']);
    assert.deepEqual(
      back.restores.map((r) => [r.at, r.bytes.toString('hex'), r.expect.toString('hex')]),
      applied.redirects.map((r) => [r.at, r.original.toString('hex'), r.written.toString('hex')]),
    );
    // The journal carries the pairs once.
    assert.equal(back.pairs.length, 2);
  });

  it('stacking: every older build jumps straight to the live one, and reverting in any order keeps it so', () => {
    const j1 = journalOf(planRedirects(input([v1, v2], v2, step(v1, v2, ['f', 'g']))), v2, 1);
    const up = planRedirects(input([v1, v2, v3], v3, step(v2, v3, ['f']), j1));
    assert.deepEqual(jumps(up), [
      'aa01:f -> aa03:0x3000',
      'aa01:g -> aa03:0x3040',
      'aa02:f -> aa03:0x3000',
      'aa02:g -> aa03:0x3040',
    ]);
    // v1's jumps were written by the first switch: retargeted (rewritten over their old bytes), not restored.
    assert.equal(up.restores.length, 0);
    assert.deepEqual(
      up.writes.filter((w) => w.redirect.from.build === 'aa01').map((w) => w.expect),
      j1.redirects.map((r) => Buffer.from(r.written, 'hex')),
    );
    const j2 = journalOf(up, v3, 2);
    // The patch below reverted first (bundle v1 <-> v2 while v3 is live): v2 and v3 jump to v1, v1 is clean.
    const down = planRedirects(input([v1, v2, v3], v1, step(v2, v1, ['f', 'g']), j2));
    assert.deepEqual(jumps(down), [
      'aa02:f -> aa01:0x1000',
      'aa02:g -> aa01:0x1040',
      'aa03:f -> aa01:0x1000',
      'aa03:g -> aa01:0x1040',
    ]);
    assert.deepEqual(down.restores.map((r) => r.at).sort(), [v1.bias + 0x1000n, v1.bias + 0x1040n]);
    assert.deepEqual(down.uncovered, []);
    // The top reverted first instead: v3 -> v2; v1 and v3 jump to v2.
    const top = planRedirects(input([v1, v2, v3], v2, step(v3, v2, ['f']), j2));
    assert.deepEqual(jumps(top), [
      'aa01:f -> aa02:0x2000',
      'aa01:g -> aa02:0x2040',
      'aa03:f -> aa02:0x2000',
      'aa03:g -> aa02:0x2040',
    ]);
    assert.deepEqual(top.restores.map((r) => r.at).sort(), [v2.bias + 0x2000n, v2.bias + 0x2040n]);
  });

  it('an older build whose copy of a later-changed function has no symbol is reported, not guessed', () => {
    // v1 -> v2 changed f only; v2 -> v3 changes g: v1's g is the old g too, found only by name.
    const j1 = journalOf(planRedirects(input([v1, v2], v2, step(v1, v2, ['f']))), v2, 1);
    const withNames = planRedirects(input([v1, v2, v3], v3, step(v2, v3, ['g']), j1));
    assert.deepEqual(jumps(withNames), [
      'aa01:f -> aa03:0x3000',
      'aa01:g -> aa03:0x3040',
      'aa02:f -> aa03:0x3000',
      'aa02:g -> aa03:0x3040',
    ]);
    const without = planRedirects(input([v1, v2, v3], v3, step(v2, v3, ['g']), j1, { names: false }));
    assert.deepEqual(jumps(without), [
      'aa01:f -> aa03:0x3000',
      'aa02:f -> aa03:0x3000',
      'aa02:g -> aa03:0x3040',
    ]);
    assert.deepEqual(
      without.uncovered.map((u) => [u.fn.build, u.fn.name]),
      [['aa01', 'g']],
    );
    assert.match(without.uncovered[0]!.reason, /no symbol that names its copy of g/);
  });

  it('a far counterpart gets the absolute jump; retargeting a long jump to a near one restores the rest', () => {
    const far = build('aa03', 0x5555_0000_0000n);
    const p = planRedirects(input([v1, far], far, step(v1, far, ['f'])));
    assert.equal(p.redirects[0]!.written.length, 14);
    const j = journalOf(p, far, 1);
    const near = planRedirects(input([v1, far, v2], v2, step(far, v2, ['f']), j));
    const w = near.writes.find((x) => x.redirect.from.build === 'aa01')!;
    assert.equal(w.bytes.length, 14);
    assert.deepEqual(w.bytes.subarray(0, 5), encodeJump(v1.bias + 0x1000n, v2.bias + 0x2000n));
    assert.deepEqual(
      w.bytes.subarray(5),
      BODY.subarray(5, 14),
      'the far jump tail gets its original bytes back',
    );
    assert.deepEqual(w.expect, p.redirects[0]!.written);
  });

  it('a bundle without pairs names its changed functions as reachable', () => {
    const p = planRedirects(
      input([v1, v2], v2, {
        fromBuildId: 'aa01',
        toBuildId: 'aa02',
        pairs: [],
        unpaired: [],
        changed: ['f'],
      }),
    );
    assert.deepEqual(p.redirects, []);
    assert.deepEqual(
      p.uncovered.map((u) => [u.fn.name, u.reason]),
      [['f', 'the bundle lists no function pairs (made by an older ulp-pack)']],
    );
  });

  it('threads inside the replaced bytes are found; one at the first byte is not in the way', () => {
    const writes = [{ at: 0x1000n, bytes: Buffer.alloc(5), expect: Buffer.alloc(5) }];
    const at = (rip: bigint, inSyscall = false) => ({ rip, inSyscall });
    assert.deepEqual(
      [...threadsInside([at(0x1000n), at(0x1005n), at(0x0fffn), at(0x1007n, true)], writes)],
      [],
    );
    assert.deepEqual([...threadsInside([at(0x1003n)], writes)], [0x1000n]);
    // Stopped in a system call whose `syscall` ends the replaced bytes: a restart would execute them.
    assert.deepEqual([...threadsInside([at(0x1005n, true)], writes)], [0x1000n]);
    // A longer write (a far jump replacing a near one) counts its whole length.
    assert.deepEqual(
      [...threadsInside([at(0x1008n)], [{ at: 0x1000n, bytes: Buffer.alloc(14), expect: Buffer.alloc(5) }])],
      [0x1000n],
    );
  });

  it('sites laid out before the pause find the same threads as every site tried against every thread', () => {
    const rnd = seededRandom(13);
    const int = (n: number) => Math.floor(rnd() * n);
    for (let round = 0; round < 200; round++) {
      // Sites of 5 to 16 bytes, some overlapping, in any order; threads near and inside them.
      const writes = Array.from({ length: 1 + int(12) }, () => ({
        at: 0x1000n + BigInt(int(200)),
        bytes: Buffer.alloc(5 + int(12)),
        expect: Buffer.alloc(5 + int(3)),
      }));
      const threads = Array.from({ length: 1 + int(9) }, () => ({
        rip: 0x1000n + BigInt(int(230)) - 8n,
        inSyscall: rnd() < 0.5,
      }));
      const every = new Set<bigint>();
      for (const w of writes) {
        const end = w.at + BigInt(Math.max(w.bytes.length, w.expect.length));
        for (const t of threads)
          if ((t.rip > w.at && t.rip < end) || (t.inSyscall && t.rip - 2n >= w.at && t.rip - 2n < end))
            every.add(w.at);
      }
      const sorted = (x: Set<bigint>) => [...x].sort((a, b) => (a < b ? -1 : 1));
      assert.deepEqual(sorted(threadsInside(threads, entrySites(writes))), sorted(every), `round ${round}`);
      assert.deepEqual(sorted(threadsInside(threads, writes)), sorted(every), `round ${round}`);
    }
  });

  it('the journal survives its encoding and is refused when damaged', () => {
    const j = journalOf(planRedirects(input([v1, v2], v2, step(v1, v2, ['f']))), v2, 7);
    const bytes = encodeJournal(j);
    const read = (buf: Buffer) => (addr: bigint, n: number) => buf.subarray(Number(addr), Number(addr) + n);
    assert.deepEqual(decodeJournal(read(bytes), 0n, 4096), j);
    assert.equal(decodeJournal(read(bytes), 0n, bytes.length - 1), undefined, 'longer than its mapping');
    const bad = Buffer.from(bytes);
    bad[20] = 0x7b;
    assert.equal(decodeJournal(read(bad), 0n, 4096), undefined);
  });
});
