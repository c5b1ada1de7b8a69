/**
 * ulp-trigger against real running programs: the demo program calls libdemo
 * in a loop and prints what it sees; the tests apply and revert bundles made
 * by the real ulp-pack and check the program's own output.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseElf } from '../../../elf/index.js';
import { decodeBundle, encodeBundle, patchIdOf } from '../../../patches/index.js';
import { runCli, type Run } from '../../../lab/cli.js';
import { buildDemo, rounds, type Demo, type Relro } from '../../../lab/demo.js';
import type { Target } from '../../../lab/target.js';
import { loadSegments, SEGMENT_LAYOUTS, type SegmentLayout } from '../../../lab/versioned.js';

/** Output rounds printed after `mark` (an output length taken when a command returned). */
async function roundsAfter(t: Target, mark: number, n = 2): Promise<Array<Record<string, string>>> {
  const out = await t.waitFor((o) => rounds(o.slice(mark)).length >= n);
  return rounds(out.slice(mark));
}

function trigger(args: string[]): Run {
  return runCli('ulp-trigger', args);
}

function ok(r: Run): Run {
  assert.equal(r.code, 0, `exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r;
}

// Both ways ld lays out segments: with -z noseparate-code the ELF header shares its page with code and .eh_frame.
const VARIANTS: Array<{ relro: Relro; layout: SegmentLayout }> = [
  { relro: 'full', layout: 'separate-code' },
  { relro: 'partial', layout: 'separate-code' },
  { relro: 'full', layout: 'noseparate-code' },
  { relro: 'partial', layout: 'noseparate-code' },
];

for (const { relro, layout } of VARIANTS) {
  describe(`ulp-trigger on a ${relro} RELRO library, -z ${layout}`, function () {
    this.timeout(120_000);
    let demo: Demo;
    let fix: string;
    before(() => {
      demo = buildDemo({ relro, libFlags: [...SEGMENT_LAYOUTS[layout].flags] });
      assert.deepEqual(loadSegments(demo.lib(1)), SEGMENT_LAYOUTS[layout].loads);
      fix = demo.pack(1, 2);
    });
    after(() => demo?.dispose());

    it('switches to v2, keeps global state, and reverts to v1', async () => {
      const t = demo.start(1);
      const before = await roundsAfter(t, 0, 3);
      assert.equal(before.at(-1)!.version, '1');

      const applied = ok(trigger([String(t.pid), fix, '--json'])).json;
      assert.equal(applied.outcome, 'applied');
      assert.equal(applied.switch.staged, true);
      assert.equal(applied.switch.aliasedNow, true);
      assert.ok(applied.switch.rewritten >= 4, `rewritten ${applied.switch.rewritten}`);
      let mark = t.output().length;
      const after = await roundsAfter(t, mark);
      const v2 = after.at(-1)!;
      assert.equal(v2.version, '2');
      assert.equal(v2.greet, 'HELLO');
      assert.equal(v2.compute, String(3 * 12), 'demo_compute runs v2 code');
      // demo_tick calls the exported demo_version through the library's own PLT slot: relinked too.
      assert.equal(BigInt(v2.tick!) % 1000n, 2n);
      // The counter lives in the executable's copy (COPY relocation); the new code increments that one.
      assert.equal(BigInt(v2.tick!) / 1000n, BigInt(v2.counter!));
      // The function pointer the program saved before the patch still holds v1's address; v1's entry jumps to v2.
      assert.equal(v2.saved, '2');
      assert.deepEqual(applied.switch.redirects.uncovered, []);
      // Global state kept: the counter never restarted.
      const all = rounds(t.output());
      for (let i = 1; i < all.length; i++)
        assert.equal(
          BigInt(all[i]!.counter!),
          BigInt(all[i - 1]!.counter!) + 1n,
          `counter jumped at round ${all[i]!.round}`,
        );

      const reverted = ok(trigger([String(t.pid), fix, '--revert', '--json'])).json;
      assert.equal(reverted.outcome, 'reverted');
      assert.equal(reverted.switch.staged, false, 'the old build is still mapped: nothing to stage');
      mark = t.output().length;
      const back = (await roundsAfter(t, mark)).at(-1)!;
      assert.equal(back.version, '1');
      assert.equal(back.greet, 'hello');
      assert.equal(BigInt(back.tick!) % 1000n, 1n);
      const all2 = rounds(t.output());
      for (let i = 1; i < all2.length; i++)
        assert.equal(BigInt(all2[i]!.counter!), BigInt(all2[i - 1]!.counter!) + 1n);
      assert.ok(t.alive());
    });

    it('re-applies after a revert without mapping the build again, and says when there is nothing to do', async () => {
      const t = demo.start(1);
      await roundsAfter(t, 0, 1);
      ok(trigger([String(t.pid), fix]));
      const again = ok(trigger([String(t.pid), fix, '--json'])).json;
      assert.equal(again.outcome, 'already-applied');
      assert.match(ok(trigger([String(t.pid), fix])).stdout, /already applied/);
      ok(trigger([String(t.pid), fix, '--revert']));
      const notApplied = ok(trigger([String(t.pid), fix, '--revert', '--json'])).json;
      assert.equal(notApplied.outcome, 'not-applied');
      const reapplied = ok(trigger([String(t.pid), fix, '--json'])).json;
      assert.equal(reapplied.outcome, 'applied');
      assert.equal(reapplied.switch.staged, false);
      const maps = (await import('node:fs')).readFileSync(`/proc/${t.pid}/maps`, 'utf8');
      const builds = new Set(
        maps
          .split('\n')
          .filter((l) => l.includes(':new:libdemo.so.1'))
          .map((l) => l.split(/\s+/)[4]),
      );
      assert.equal(builds.size, 1, 'one copy of the new build');
      const mark = t.output().length;
      assert.equal((await roundsAfter(t, mark)).at(-1)!.version, '2');
    });

    it('reports the live build, the patch and old references with --status', async () => {
      const t = demo.start(1);
      await roundsAfter(t, 0, 1);
      ok(trigger([String(t.pid), fix]));
      const st = ok(trigger(['--status', String(t.pid), '--json'])).json;
      const lib = st.libraries.find((l: { soname: string }) => l.soname === 'libdemo.so.1');
      assert.ok(lib, JSON.stringify(st));
      const v1 = runCli('ulp-pack', ['--inspect', fix, '--json']).json.manifest.builds;
      assert.equal(lib.live, v1.new.buildId);
      assert.equal(lib.aliased, true);
      assert.equal(lib.mixed, false);
      assert.deepEqual(
        lib.builds.map((b: { buildId: string; source: string; live: boolean }) => [
          b.buildId,
          b.source,
          b.live,
        ]),
        [
          [v1.old.buildId, 'loader', false],
          [v1.new.buildId, 'ulp', true],
        ],
      );
      assert.equal(lib.patches[0].state, 'applied');
      assert.equal(lib.oldReferences.slots, 0);
      assert.deepEqual(lib.oldCode.reachable, []);
      // demo_main saved &demo_version before the patch: a data pointer into v1's code (whose entry jumps to v2).
      assert.ok(lib.oldReferences.dataPointers >= 1);
      assert.ok(
        lib.oldReferences.samples.some(
          (s: { holder: string; buildId: string }) =>
            s.holder === '(executable)' && s.buildId === v1.old.buildId,
        ),
      );
      const text = ok(trigger(['--status', String(t.pid)])).stdout;
      assert.match(text, /libdemo\.so\.1: live build/);
      assert.match(text, /patch [0-9a-f]{12}: applied/);
    });

    it('changes nothing with --dry-run', async () => {
      const t = demo.start(1);
      await roundsAfter(t, 0, 1);
      const mapsBefore = (await import('node:fs')).readFileSync(`/proc/${t.pid}/maps`, 'utf8');
      const dry = ok(trigger(['--dry-run', String(t.pid), fix, '--json'])).json;
      assert.equal(dry.outcome, 'dry-run');
      assert.ok(dry.switch.rewritten >= 4);
      assert.equal((await import('node:fs')).readFileSync(`/proc/${t.pid}/maps`, 'utf8'), mapsBefore);
      const mark = t.output().length;
      assert.equal((await roundsAfter(t, mark)).at(-1)!.version, '1');
    });
  });
}

describe('ulp-trigger stacking', function () {
  this.timeout(120_000);
  let demo: Demo;
  before(() => {
    demo = buildDemo({ relro: 'full' });
  });
  after(() => demo?.dispose());

  const versionNow = async (t: Target) => (await roundsAfter(t, t.output().length, 1)).at(-1)!.version;

  for (const order of [
    ['b', 'a'],
    ['a', 'b'],
  ]) {
    it(`applies v1->v2 then v2->v3 and reverts in the order ${order.join(', ')}`, async () => {
      const a = demo.pack(1, 2);
      const b = demo.pack(2, 3);
      const t = demo.start(1);
      await roundsAfter(t, 0, 1);
      // v2->v3 does not apply to a process at v1.
      const wrong = trigger([String(t.pid), b, '--json']);
      assert.equal(wrong.code, 2);
      assert.equal(wrong.json.error.code, 'TRIGGER_WRONG_BUILD');
      ok(trigger([String(t.pid), a]));
      assert.equal(await versionNow(t), '2');
      ok(trigger([String(t.pid), b]));
      assert.equal(await versionNow(t), '3');
      const bundles = { a, b };
      if (order[0] === 'b') {
        ok(trigger([String(t.pid), b, '--revert']));
        assert.equal(await versionNow(t), '2');
        ok(trigger([String(t.pid), a, '--revert']));
        assert.equal(await versionNow(t), '1');
      } else {
        const r = ok(trigger([String(t.pid), bundles.a, '--revert', '--json'])).json;
        assert.match(r.note, /stacked on top/);
        assert.equal(await versionNow(t), '1');
        assert.equal(ok(trigger([String(t.pid), b, '--revert', '--json'])).json.outcome, 'not-applied');
        assert.equal(await versionNow(t), '1');
      }
      const all = rounds(t.output());
      for (let i = 1; i < all.length; i++)
        assert.equal(BigInt(all[i]!.counter!), BigInt(all[i - 1]!.counter!) + 1n);
    });
  }

  it('reverts a process that started on the new build by loading the old build from the bundle', async () => {
    const fix = demo.pack(1, 2);
    const t = demo.start(2);
    await roundsAfter(t, 0, 1);
    const r = ok(trigger([String(t.pid), fix, '--revert', '--json'])).json;
    assert.equal(r.outcome, 'reverted');
    assert.equal(r.switch.staged, true);
    assert.equal(await versionNow(t), '1');
    ok(trigger([String(t.pid), fix]));
    assert.equal(await versionNow(t), '2');
  });
});

describe('ulp-trigger on a -z norelro library', function () {
  this.timeout(120_000);
  let demo: Demo;
  before(() => {
    demo = buildDemo({ libFlags: ['-Wl,-z,norelro'], tag: 'norelro' });
  });
  after(() => demo?.dispose());

  it('refuses it before attaching (LOADER_LAYOUT), even in a bundle an older packer wrote', async () => {
    // ulp-pack refuses the pair (DATA_DYNAMIC_WRITABLE): the bundle is a RELRO pair's with the norelro builds put in.
    const relro = buildDemo({ tag: 'norelro' });
    try {
      const b = decodeBundle(readFileSync(relro.pack(1, 2)));
      const [oldBuild, newBuild] = [readFileSync(demo.lib(1)), readFileSync(demo.lib(2))];
      const entry = <E extends string>(bytes: Buffer, was: { entry: E }) => ({
        entry: was.entry,
        buildId: parseElf(bytes).buildId!,
        sha256: createHash('sha256').update(bytes).digest('hex'),
        size: bytes.length,
      });
      const builds = {
        old: entry(oldBuild, b.manifest.builds.old),
        new: entry(newBuild, b.manifest.builds.new),
      };
      const manifest = {
        ...b.manifest,
        builds,
        patchId: patchIdOf(b.manifest.soname, builds.old, builds.new),
      };
      const fix = join(tmpdir(), `ulp-norelro-${process.pid}.ulp`);
      writeFileSync(fix, encodeBundle({ manifest, oldBuild, newBuild }));
      try {
        const t = demo.start(1);
        await roundsAfter(t, 0, 2);
        const maps = readFileSync(`/proc/${t.pid}/maps`, 'utf8');
        const r = trigger([String(t.pid), fix, '--json']);
        assert.equal(r.code, 2, `exit ${r.code}\n${r.stdout}\n${r.stderr}`);
        assert.equal(r.json.error.code, 'LOADER_LAYOUT');
        assert.match(r.json.error.message, /-z norelro/);
        assert.equal(readFileSync(`/proc/${t.pid}/maps`, 'utf8'), maps, 'not a mapping changed');
        assert.equal((await roundsAfter(t, t.output().length)).at(-1)!.version, '1');
      } finally {
        rmSync(fix, { force: true });
      }
    } finally {
      relro.dispose();
    }
  });
});
