/**
 * The switch as data (runtime/loader/switch-plan.ts), without a process:
 * which words are written, how they are grouped into writes, what the pause
 * decides again when a word changed after the plan, and the redirects'
 * settlement, on the gcc builds of test/fixtures/trigger/libdemo.c and the
 * program linked against them, laid out at made-up addresses.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parseElf, RelocType, type ElfObject } from '../../../elf/index.js';
import type { Family, ProcessObject } from '../../../runtime/loader/model.js';
import { ownRegion } from '../../../runtime/loader/region.js';
import { decodeJournal } from '../../../runtime/loader/redirect-journal.js';
import type { CodeWrite, Redirect, RedirectPlan } from '../../../runtime/loader/redirects.js';
import { collectSlots, type ClassifyContext } from '../../../runtime/loader/relink.js';
import { globalScope } from '../../../runtime/loader/scope.js';
import {
  patchBlocks,
  planWords,
  quietRanges,
  recheckWords,
  settleRedirects,
  switchCounts,
  wordRuns,
  type WordWrite,
} from '../../../runtime/loader/switch-plan.js';
import { targetObject } from '../../../runtime/loader/switch-library.js';
import { compile } from '../../../lab/compile.js';

const EXE_BIAS = 0x555500000000n;
const V1_BIAS = 0x7f0000000000n;
const V2_BIAS = 0x7f1000000000n;

function demoLib(v: number, relro: string): ElfObject {
  const path = compile({
    sources: ['trigger/libdemo.c'],
    out: `libdemo-plan-v${v}.so`,
    flags: [
      '-shared',
      '-fPIC',
      '-O2',
      `-DDEMO_VERSION=${v}`,
      '-DDEMO_TAG="switch-plan"',
      '-Wl,-soname,libdemo.so.1',
      relro,
    ],
  });
  return parseElf(readFileSync(path));
}

const word = (addr: bigint, after = 2n, before = 1n, kind: WordWrite['kind'] = 'stale'): WordWrite => ({
  addr,
  before,
  after,
  kind,
});

describe('switch plan: words and blocks (pure)', () => {
  it('groups adjacent words into runs, each encoded once with the bytes that undo it', () => {
    const runs = wordRuns([
      word(0x1010n, 0xbbn, 0xaan),
      word(0x1000n, 0x22n, 0x11n),
      word(0x1008n, 0x33n),
      word(0x2000n),
    ]);
    assert.deepEqual(
      runs.map((r) => [r.addr, r.words.length, r.bytes.length]),
      [
        [0x1000n, 3, 24],
        [0x2000n, 1, 8],
      ],
    );
    assert.equal(runs[0]!.bytes.readBigUInt64LE(0), 0x22n);
    assert.equal(runs[0]!.undo.readBigUInt64LE(0), 0x11n);
    assert.equal(runs[0]!.bytes.readBigUInt64LE(16), 0xbbn);
    assert.equal(runs[0]!.undo.readBigUInt64LE(16), 0xaan);
  });

  it('merges patches into one write only inside one quiet range and less than a page apart', () => {
    const quiet = [[0x1000n, 0x3000n] as const, [0x3000n, 0x4000n] as const];
    const runs = wordRuns([
      word(0x1000n),
      word(0x1100n),
      word(0x1ff8n),
      word(0x2ff8n),
      word(0x3008n),
      word(0x9000n),
      word(0x9100n),
    ]);
    const blocks = patchBlocks(runs, quiet);
    assert.deepEqual(
      blocks.map((b) => [b.addr, b.len, b.patches.length]),
      [
        // 0x1000..0x1ff8 and 0x2ff8: one range, gaps under a page.
        [0x1000n, 0x2000, 4],
        // Close to the last, but in another range.
        [0x3008n, 8, 1],
        // In no quiet range: one write each.
        [0x9000n, 8, 1],
        [0x9100n, 8, 1],
      ],
    );
    const far = patchBlocks(wordRuns([word(0x1000n), word(0x2008n)]), quiet);
    assert.equal(far.length, 2, 'a gap of a page or more is not merged');
  });

  it('quiet ranges are RELRO and the lazy slots of .got.plt, never writable data', () => {
    for (const relro of ['-Wl,-z,relro,-z,now', '-Wl,-z,relro,-z,lazy']) {
      const elf = demoLib(1, relro);
      const obj = targetObject(elf, V1_BIAS, 'libdemo');
      const quiet = quietRanges([obj]);
      assert.ok(elf.relro, relro);
      assert.ok(
        quiet.some(
          ([a, b]) => a === V1_BIAS + elf.relro!.vaddr && b === V1_BIAS + elf.relro!.vaddr + elf.relro!.memsz,
        ),
      );
      const inQuiet = (vaddr: bigint) =>
        quiet.some(([a, b]) => V1_BIAS + vaddr >= a && V1_BIAS + vaddr + 8n <= b);
      for (const r of elf.relocations)
        if (r.type === RelocType.JUMP_SLOT || r.type === RelocType.GLOB_DAT)
          assert.ok(inQuiet(r.offset), `${relro}: slot of ${r.symbol?.name} at 0x${r.offset.toString(16)}`);
      const counter = elf.dynamicSymbols.find((s) => s.name === 'demo_counter' && s.defined)!;
      assert.ok(!inQuiet(counter.value), `${relro}: demo_counter (.data or .bss) is not quiet`);
    }
  });
});

describe('switch plan: deciding the slots, and again in the pause (pure)', () => {
  let exe: ProcessObject;
  let v1: ProcessObject;
  let v2: ProcessObject;
  let ctx: ClassifyContext;
  let objects: ProcessObject[];
  before(() => {
    const lib1 = demoLib(1, '-Wl,-z,relro,-z,now');
    const lib2 = demoLib(2, '-Wl,-z,relro,-z,now');
    const exePath = compile({
      sources: ['trigger/demo_main.c'],
      out: 'demo_main_plan',
      flags: ['-O2', '-Wl,-z,relro,-z,now'],
      libs: [
        compile({
          sources: ['trigger/libdemo.c'],
          out: 'libdemo-plan-v1.so',
          flags: [
            '-shared',
            '-fPIC',
            '-O2',
            '-DDEMO_VERSION=1',
            '-DDEMO_TAG="switch-plan"',
            '-Wl,-soname,libdemo.so.1',
            '-Wl,-z,relro,-z,now',
          ],
        }),
      ],
    });
    exe = {
      ...targetObject(parseElf(readFileSync(exePath), { expect: 'any' }), EXE_BIAS, 'exe'),
      name: '',
      soname: undefined,
      source: 'linkmap',
    };
    v1 = { ...targetObject(lib1, V1_BIAS, 'libdemo'), name: '/lib/libdemo.so.1', source: 'linkmap' };
    delete v1.ulp;
    v2 = targetObject(lib2, V2_BIAS, 'ulp:build:libdemo.so.1:v2');
    const family: Family = { soname: 'libdemo.so.1', canonical: v1, builds: [v1, v2] };
    objects = [exe, v1, v2];
    ctx = { family, target: v2, region: ownRegion(lib1)!, scope: globalScope(objects) };
  });

  /** What ld.so stored in each slot when it loaded v1: the address of v1's definition. */
  function loaded(slots: ReturnType<typeof collectSlots>): bigint[] {
    return slots.map((s) => {
      const sym = v1.elf.lookup(s.ref.name, s.ref.version);
      return sym ? V1_BIAS + sym.value + (s.reloc.type === RelocType.R64 ? s.reloc.addend : 0n) : 0n;
    });
  }

  it('rewrites every slot bound to v1 to v2, and the dry run and the real run report the same counts', () => {
    const slots = collectSlots(objects, ctx.family, ctx.region);
    const exeSlots = slots.filter((s) => s.owner === exe);
    assert.ok(
      exeSlots.some((s) => s.ref.name === 'demo_compute'),
      'the program imports demo_compute',
    );
    const values = loaded(slots);
    const plan = planWords(slots, values, [], [], ctx, quietRanges(objects));
    const compute = exeSlots.find((s) => s.ref.name === 'demo_compute')!;
    const w = plan.words.find((x) => x.addr === compute.addr)!;
    assert.equal(w.kind, 'stale');
    assert.equal(w.before, V1_BIAS + v1.elf.lookup('demo_compute')!.value);
    assert.equal(w.after, V2_BIAS + v2.elf.lookup('demo_compute')!.value);
    assert.equal(plan.counts.stale, plan.words.length);
    // Every rewritten word is in exactly one block, in a run of its own or with its neighbours.
    assert.equal(plan.blocks.flatMap((b) => b.patches.flatMap((p) => p.words)).length, plan.words.length);
    const r = switchCounts(plan, settleRedirects(emptyRedirects(), head(), []).outcome);
    assert.equal(r.rewritten, plan.words.length);
    assert.equal(r.lazyBound, 0);
    assert.deepEqual(r.redirects, { active: 0, written: 0, restored: 0, uncovered: [] });
  });

  it('in the pause: the same plan object when no word changed; a changed word decided again, the others kept', () => {
    const slots = collectSlots(objects, ctx.family, ctx.region);
    const values = loaded(slots);
    const plan = planWords(slots, values, [], [], ctx, quietRanges(objects));
    assert.equal(recheckWords(plan, [...values], [], ctx), plan);
    const i = slots.findIndex((s) => s.owner === exe && s.ref.name === 'demo_compute');
    const now = [...values];
    // The program's thread was let run once more and something (another trigger, a test) made this slot live on v2.
    now[i] = V2_BIAS + v2.elf.lookup('demo_compute')!.value;
    const again = recheckWords(plan, now, [], ctx);
    assert.notEqual(again, plan);
    assert.equal(again.words.length, plan.words.length - 1);
    assert.ok(!again.words.some((w) => w.addr === slots[i]!.addr));
    assert.equal(again.counts.target, plan.counts.target + 1);
    assert.equal(
      again.slotStates.filter((s, k) => k !== i && s !== plan.slotStates[k]).length,
      0,
      'the other slots are not classified again',
    );
  });

  it('refuses values that do not match the slots', () => {
    assert.throws(
      () => planWords(collectSlots(objects, ctx.family, ctx.region), [], [], [], ctx),
      /one value per slot/,
    );
  });
});

const journal = (bytes: Buffer) =>
  decodeJournal((a, n) => bytes.subarray(Number(a), Number(a) + n), 0n, bytes.length);

function head() {
  return { soname: 'libx.so.1', generation: 3, live: 'bb02' };
}

function emptyRedirects(): RedirectPlan {
  return { redirects: [], writes: [], restores: [], uncovered: [], pairs: [], unpaired: [] };
}

describe('switch plan: the entry redirects as the pause writes them (pure)', () => {
  const fn = (build: string, start: number) => ({
    build,
    start: `0x${start.toString(16)}`,
    end: `0x${(start + 0x20).toString(16)}`,
    name: `f${start.toString(16)}`,
  });
  const jump = (at: bigint): Redirect => ({
    at,
    original: Buffer.alloc(5, 0x90),
    written: Buffer.from('e900000000', 'hex'),
    from: fn('bb01', Number(at & 0xffffn)),
    to: fn('bb02', 0x2000),
  });
  const write = (r: Redirect): CodeWrite & { redirect: Redirect } => ({
    at: r.at,
    bytes: r.written,
    expect: r.original,
    redirect: r,
  });
  const code = [[0x7f0000001000n, 0x7f0000003000n] as const];
  const plan = (): RedirectPlan => {
    const rs = [jump(0x7f0000001000n), jump(0x7f0000001040n), jump(0x7f0000002800n)];
    const restore: CodeWrite = {
      at: 0x7f0000001020n,
      bytes: Buffer.alloc(5, 0x90),
      expect: Buffer.from('e9ffffffff', 'hex'),
    };
    return {
      redirects: rs,
      writes: rs.map(write),
      restores: [restore],
      uncovered: [],
      pairs: [],
      unpaired: [],
    };
  };

  it('with nothing in the way: every jump and restore, one block per code range, the journal naming each jump', () => {
    const s = settleRedirects(plan(), head(), code);
    assert.deepEqual(s.outcome.redirects.length, 3);
    assert.equal(s.outcome.written, 3);
    assert.equal(s.outcome.restored, 1);
    assert.deepEqual(
      s.blocks.map((b) => [b.addr, b.patches.length]),
      [
        [0x7f0000001000n, 3],
        [0x7f0000002800n, 1],
      ],
      'the jump at +0x2800 is more than a page from the others',
    );
    // Each patch undoes to what the plan expects the code to hold.
    assert.ok(
      s.blocks[0]!.patches.find((p) => p.addr === 0x7f0000001020n)!.undo.equals(
        Buffer.from('e9ffffffff', 'hex'),
      ),
    );
    const j = journal(s.journal);
    assert.equal(j?.generation, 3);
    assert.deepEqual(
      j?.redirects.map((r) => r.at),
      ['0x7f0000001000', '0x7f0000001040', '0x7f0000002800'],
    );
  });

  it('a jump a thread executes, or whose bytes changed, is left out and reported; a restore already undone is not written', () => {
    const p = plan();
    const s = settleRedirects(
      p,
      head(),
      code,
      [
        { at: 0x7f0000001000n, reason: 'thread-inside' },
        { at: 0x7f0000002800n, reason: 'changed' },
      ],
      new Set([0x7f0000001020n]),
    );
    assert.equal(s.outcome.written, 1);
    assert.equal(s.outcome.restored, 0);
    assert.deepEqual(
      s.outcome.uncovered.map((u) => u.reason),
      [
        'a thread was executing its entry bytes at every attempt',
        'its entry bytes at 0x7f0000002800 changed since they were read (another tool patched them?)',
      ],
    );
    assert.deepEqual(
      s.blocks.flatMap((b) => b.patches.map((x) => x.addr)),
      [0x7f0000001040n],
    );
    assert.deepEqual(
      journal(s.journal)?.redirects.map((r) => r.at),
      ['0x7f0000001040'],
    );
  });
});
