/**
 * A trigger killed while staging leaves a build mapped but not finished
 * (relocations missing, RELRO writable). Staging unmaps its marker, an
 * inaccessible mapping of the build's first page, last
 * (runtime/loader/stage.ts), so the next run must not take the leftover for
 * a build: it stages afresh and the process runs correct code.
 * The interrupted staging is made on purpose here, in the test's process,
 * through the same runtime calls the trigger makes, stopping where a
 * SIGKILL could have stopped it. A finished staging that was never switched
 * to is used by the next run, unless it lost its shared data mapping: then
 * the run refuses before it attaches (LOADER_ALIAS_UNAVAILABLE, exit 2,
 * not 6: nothing was done, so nothing was rolled back).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parseElf } from '../../../elf/index.js';
import { decodeBundle } from '../../../patches/index.js';
import { RemoteMemory, Session } from '../../../runtime/index.js';
import { ensureForkProtection, publishForkAlias } from '../../../runtime/loader/fork/index.js';
import { readLibraryState, regionOf } from '../../../runtime/loader/library.js';
import { buildMemfdName } from '../../../runtime/memfd-names.js';
import { planStage } from '../../../runtime/loader/relocate.js';
import { globalScope } from '../../../runtime/loader/scope.js';
import { takeSnapshot } from '../../../runtime/loader/snapshot.js';
import { applyWrites, finishStaging, mapBuild, type StagedImage } from '../../../runtime/loader/stage.js';
import type { Region } from '../../../runtime/loader/model.js';
import { MAP, PROT } from '../../../runtime/sys/constants.js';
import type { Target } from '../../../lab/target.js';
import { runCli, type Run } from '../../../lab/cli.js';
import { buildDemo, rounds, type Demo } from '../../../lab/demo.js';
import { loadSegments, SEGMENT_LAYOUTS, type SegmentLayout } from '../../../lab/versioned.js';

function ok(r: Run): Run {
  assert.equal(r.code, 0, `exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r;
}

describe('ulp-trigger after a staging that never finished', function () {
  this.timeout(120_000);
  let demo: Demo;
  before(() => (demo = buildDemo({ tag: 'interrupted-stage' })));
  after(() => demo?.dispose());

  // Without -z separate-code the header page holds code, and the writable page maps the file's offset 0 again.
  for (const layout of Object.keys(SEGMENT_LAYOUTS) as SegmentLayout[])
    it(`does not take the half-staged build for a build: stages again, switches, reports the leftover, -z ${layout}`, async () => {
      const demo = buildDemo({ tag: 'interrupted-stage', libFlags: [...SEGMENT_LAYOUTS[layout].flags] });
      try {
        assert.deepEqual(loadSegments(demo.lib(2)), SEGMENT_LAYOUTS[layout].loads);
        await halfStagedThenApplied(demo);
      } finally {
        demo.dispose();
      }
    });

  async function halfStagedThenApplied(demo: Demo): Promise<void> {
    const fix = demo.pack(1, 2);
    const t = demo.start(1);
    await t.waitFor((o) => rounds(o).length >= 2);

    const manifest = decodeBundle(readFileSync(fix)).manifest;
    const bytes = readFileSync(demo.lib(2));
    const elf = parseElf(bytes);
    const s = Session.open(t.pid);
    try {
      s.borrow();
      s.stub();
      // Mapped under the very name the trigger uses, then abandoned before any relocation is written.
      mapBuild(s, {
        bytes,
        elf,
        memfdName: buildMemfdName(manifest.patchId, 'new', manifest.soname),
        soname: manifest.soname,
        region: regionOf(elf, 'v2'),
        aliasedCanonicalRegion: undefined,
      });
    } finally {
      s.detach();
    }

    const before = ok(runCli('ulp-trigger', ['--status', String(t.pid), '--json'])).json;
    assert.equal(before.abandoned.length, 1, JSON.stringify(before.abandoned));
    assert.match(before.abandoned[0].name, /:new:libdemo\.so\.1$/);
    assert.equal(
      before.libraries.find((l: { soname: string }) => l.soname === 'libdemo.so.1')?.builds.length ?? 1,
      1,
      'the leftover is not listed as a build',
    );

    const applied = ok(runCli('ulp-trigger', [String(t.pid), fix, '--json'])).json;
    assert.equal(applied.outcome, 'applied');
    assert.equal(applied.switch.staged, true, 'the build was staged again, not reused half-made');
    const mark = t.output().length;
    const after = rounds((await t.waitFor((o) => rounds(o.slice(mark)).length >= 2)).slice(mark));
    assert.equal(after.at(-1)!.version, '2');
    assert.equal(after.at(-1)!.compute, String(3 * 12));
    assert.ok(t.alive());

    const status = ok(runCli('ulp-trigger', ['--status', String(t.pid)])).stdout;
    assert.match(status, /abandoned staging of ulp:[0-9a-f@]+:new:libdemo\.so\.1/);
    assert.match(status, /libdemo\.so\.1: live build/);
  }

  /**
   * What a run stopped just before its switch leaves, made here through the runtime calls the trigger
   * makes: fork protection, v3 mapped, relocated, finished, its data on a fresh shared memfd. `after`
   * runs in the same session, for a test to change what the process holds before the next run.
   */
  async function stagedNotSwitched(
    after: (s: Session, image: StagedImage, region: Region) => void = () => {},
  ): Promise<{ fix: string; t: Target }> {
    const fix = demo.pack(1, 3);
    const t = demo.start(1);
    await t.waitFor((o) => rounds(o).length >= 2);
    const manifest = decodeBundle(readFileSync(fix)).manifest;
    const bytes = readFileSync(demo.lib(3));
    const elf = parseElf(bytes);
    const region = regionOf(elf, 'v3')!;
    const mem = new RemoteMemory(t.pid);
    const snap = takeSnapshot(t.pid, mem);
    const state = readLibraryState(snap, manifest.soname, mem)!;
    const s = Session.open(t.pid);
    try {
      // What a run stopped just before its switch leaves: fork protection, the build mapped, relocated, finished.
      s.borrow();
      s.stub();
      const fork = ensureForkProtection(s, snap.objects, state.family.canonical, region);
      const name = buildMemfdName(manifest.patchId, 'new', manifest.soname, manifest.builds.old.buildId);
      const image = mapBuild(s, {
        bytes,
        elf,
        memfdName: name,
        soname: manifest.soname,
        region,
        aliasedCanonicalRegion: undefined,
      });
      publishForkAlias(s, fork, image.regionAddr!);
      const plan = planStage({
        target: elf,
        targetBias: image.bias,
        family: state.family,
        from: state.live,
        scope: globalScope(snap.objects),
        region,
        read: (a, n) => mem.read(a, n),
      });
      assert.equal(plan.ifuncs.length, 0);
      applyWrites(s, elf, image, plan.writes);
      finishStaging(s, image);
      after(s, image, region);
    } finally {
      s.detach();
    }
    return { fix, t };
  }

  it('switches to a build an earlier run staged completely but never switched to, sharing its data first', async () => {
    const { fix, t } = await stagedNotSwitched();
    const before = rounds(t.output()).at(-1)!;

    const applied = ok(runCli('ulp-trigger', [String(t.pid), fix, '--json'])).json;
    assert.equal(applied.switch.staged, false, 'the build staged before is used');
    assert.equal(applied.switch.aliasedNow, true, 'and the data is shared now, at the switch');
    const mark = t.output().length;
    const after = rounds((await t.waitFor((o) => rounds(o.slice(mark)).length >= 2)).slice(mark));
    assert.equal(after.at(-1)!.version, '3');
    // The counter lives in the library's data: it goes on from where it was, in the new build's code too.
    assert.ok(
      Number(after[0]!.counter) > Number(before.counter),
      `counter ${before.counter} -> ${after[0]!.counter}`,
    );
    assert.equal(BigInt(after.at(-1)!.tick!) / 1000n, BigInt(after.at(-1)!.counter!));
    assert.ok(t.alive());
  });

  it('refuses a staged build that lost its shared data mapping before touching the process: LOADER_ALIAS_UNAVAILABLE, exit 2', async () => {
    // Private memory where the staged build's data memfd was: nothing in the process shares the library's data now.
    const { fix, t } = await stagedNotSwitched((s, image, region) => {
      s.sys.mmap(
        image.regionAddr!,
        region.end - region.start,
        PROT.READ | PROT.WRITE,
        MAP.PRIVATE | MAP.FIXED | MAP.ANONYMOUS,
      );
    });
    const maps = readFileSync(`/proc/${t.pid}/maps`, 'utf8');
    assert.ok(!maps.includes('/memfd:ulp:data:'), maps);

    const r = runCli('ulp-trigger', [String(t.pid), fix, '--json']);
    assert.equal(r.code, 2, `exit ${r.code}\n${r.stdout}\n${r.stderr}`);
    assert.equal(r.json.error.code, 'LOADER_ALIAS_UNAVAILABLE');
    assert.equal(readFileSync(`/proc/${t.pid}/maps`, 'utf8'), maps, 'not a mapping changed');
    const mark = t.output().length;
    const after = rounds((await t.waitFor((o) => rounds(o.slice(mark)).length >= 2)).slice(mark));
    assert.equal(after.at(-1)!.version, '1');
    assert.ok(t.alive());
  });
});
