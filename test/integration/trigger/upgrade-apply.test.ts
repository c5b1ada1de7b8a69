/**
 * `--outdated --apply` without a package manager: the process keeps its
 * state, the old build's code is moved onto a memfd copy and runs from it
 * after a revert, --outdated and `ulp-pack --pid` still read the old build
 * whole from its deleted file, and a second run reuses the kept bundle.
 *
 * Both ways ld lays out a library (lab/versioned.ts SEGMENT_LAYOUTS): with
 * -z separate-code the header page is read-only data and stays on the file;
 * with -z noseparate-code it is code, so it moves to the copy too, and in a
 * library this small what stays on the file is its writable page, mapped from
 * the file's offset 0 as well.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { parseElf } from '../../../elf/index.js';
import { runCli } from '../../../lab/cli.js';
import { buildDemo, rounds, type Demo } from '../../../lab/demo.js';
import { loadSegments, SEGMENT_LAYOUTS, type SegmentLayout } from '../../../lab/versioned.js';

const buildIdOf = (path: string) => parseElf(readFileSync(path)).buildId!;

for (const layout of Object.keys(SEGMENT_LAYOUTS) as SegmentLayout[])
  describe(`--outdated --apply by hand, and the old build on its memfd copy, -z ${layout}`, function () {
    this.timeout(300_000);
    let demo: Demo;
    let dir: string;
    before(() => {
      demo = buildDemo({ tag: 'upgrade-apply', libFlags: [...SEGMENT_LAYOUTS[layout].flags] });
      assert.deepEqual(loadSegments(demo.lib(1)), SEGMENT_LAYOUTS[layout].loads);
      dir = mkdtempSync(join(tmpdir(), 'ulp-upgrade-apply-'));
    });
    after(() => {
      demo?.dispose();
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    it('patches, moves the old code to a memfd, reverts onto the copy, and reuses the bundle', async () => {
      const t = demo.start(1, ['100']);
      await t.waitFor((o) => rounds(o).length >= 2);
      const [v1, v2] = [buildIdOf(demo.lib(1)), buildIdOf(demo.lib(2))];
      const line = readFileSync(`/proc/${t.pid}/maps`, 'utf8')
        .split('\n')
        .find((l) => l.includes('/libdemo.so.1'))!;
      const path = line.slice(line.indexOf('/'));
      copyFileSync(demo.lib(2), join(dirname(path), '.new'));
      renameSync(join(dirname(path), '.new'), path);

      const bundles = join(dir, 'bundles');
      const counterBefore = Number(rounds(t.output()).at(-1)!.counter);
      const r = runCli('ulp-trigger', [
        '--outdated',
        '--apply',
        '--bundles-dir',
        bundles,
        '--json',
        String(t.pid),
      ]);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.deepEqual(
        r.json.bundles.map((b: any) => [b.from, b.to, b.state]),
        [[v1, v2, 'packed']],
      );
      assert.deepEqual(
        r.json.processes.map((p: any) => [p.pid, p.result, p.retained]),
        [[t.pid, 'applied', true]],
      );
      await t.waitFor((o) => rounds(o).at(-1)?.version === '2');
      const v2round = rounds(t.output()).at(-1)!;
      assert.ok(
        Number(v2round.counter) > counterBefore,
        `the library's counter went on: ${counterBefore} -> ${v2round.counter}`,
      );

      const maps = readFileSync(`/proc/${t.pid}/maps`, 'utf8').split('\n');
      assert.deepEqual(
        maps.filter((l) => l.includes(`${path} (deleted)`) && / r-xp /.test(l)),
        [],
        'no executable mapping of the deleted file',
      );
      assert.ok(
        maps.some((l) => / r-xp 00000000 .*\/memfd:ulp-retained:.*:libdemo\.so\.1 \(deleted\)$/.test(l)),
        maps.join('\n'),
      );
      const o = runCli('ulp-trigger', ['--outdated', '--json', String(t.pid)]);
      assert.equal(o.code, 0, o.stdout);
      assert.deepEqual(
        o.json.libraries[0].processes.map((p: any) => [p.state, p.running.buildId]),
        [['patched', v2]],
      );

      // Back to v1: its code now runs from the copy, header included.
      const bundle = join(bundles, readdirSync(bundles)[0]!);
      const rev = runCli('ulp-trigger', [String(t.pid), bundle, '--revert']);
      assert.equal(rev.code, 0, rev.stdout + rev.stderr);
      const mark = t.output().length;
      await t.waitFor((out) => rounds(out.slice(mark)).some((x) => x.version === '1'));
      const again = runCli('ulp-trigger', ['--outdated', '--json', String(t.pid)]);
      assert.equal(again.code, 7);
      const p = again.json.libraries[0].processes[0];
      assert.deepEqual([p.state, p.running.buildId], ['patchable', v1]);
      assert.equal(buildIdOf(p.mapFiles), v1, 'map_files of the file itself gives the whole old build');
      const packed = runCli('ulp-pack', ['--pid', String(t.pid), path, '--check', '--json']);
      assert.equal(packed.code, 0, packed.stdout + packed.stderr);
      assert.equal(packed.json.old.buildId, v1);

      // A second run finds the bundle it kept.
      const second = runCli('ulp-trigger', [
        '--outdated',
        '--apply',
        '--bundles-dir',
        bundles,
        '--json',
        String(t.pid),
      ]);
      assert.equal(second.code, 0, second.stdout + second.stderr);
      assert.deepEqual(
        second.json.bundles.map((b: any) => b.state),
        ['reused'],
      );
      assert.deepEqual(
        second.json.processes.map((x: any) => x.result),
        ['applied'],
      );
      const mark2 = t.output().length;
      await t.waitFor((out) => rounds(out.slice(mark2)).some((x) => x.version === '2'));
    });
  });
