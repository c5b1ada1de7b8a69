/**
 * `ulp-pack --pid PID NEW.so`: OLD is the build the running process has
 * loaded, read through /proc/PID/map_files, also after an upgrade deleted
 * its file; and after ulp-trigger staged another build, the live one. Each
 * bad input has its own code and exit code.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, readFileSync, renameSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parseElf } from '../../../elf/index.js';
import { headerMappings } from '../../../runtime/running-build.js';
import { parseMaps } from '../../../runtime/maps.js';
import { runCli } from '../../../lab/cli.js';
import { buildDemo, rounds, type Demo } from '../../../lab/demo.js';
import { startTarget } from '../../../lab/target.js';
import { tempDir, ulpPack } from '../../../lab/packer/run.js';

const buildIdOf = (path: string) => parseElf(readFileSync(path)).buildId!;

describe('ulp-pack --pid: candidates (pure)', () => {
  it('only readable file mappings at offset 0 may hold a build', () => {
    const maps = parseMaps(
      [
        '7f0000000000-7f0000001000 r--p 00000000 fe:01 11 /usr/lib/libx.so.1 (deleted)',
        '7f0000001000-7f0000002000 r-xp 00001000 fe:01 11 /usr/lib/libx.so.1 (deleted)',
        '7f0000003000-7f0000004000 r--s 00000000 00:01 12 /memfd:ulp:build (deleted)',
        '7f0000005000-7f0000006000 rw-s 00000000 00:05 13 /dev/zero',
        '7f0000007000-7f0000008000 rw-p 00000000 00:00 0 ',
      ].join('\n'),
    );
    assert.deepEqual(
      headerMappings(maps).map((m) => m.path),
      ['/usr/lib/libx.so.1 (deleted)', '/memfd:ulp:build (deleted)'],
    );
  });
});

describe('ulp-pack --pid', function () {
  this.timeout(180_000);
  let demo: Demo;
  const dir = tempDir();
  before(() => {
    demo = buildDemo({ tag: 'pack-pid' });
  });
  after(() => {
    demo?.dispose();
    dir.dispose();
  });

  it("packs the process's own build against NEW, also once its file is deleted, and the live build after a patch", async () => {
    const t = demo.start(1, ['100']);
    await t.waitFor((o) => rounds(o).length >= 1);
    const out = join(dir.path, 'a.ulp');
    const r = ulpPack(['--pid', String(t.pid), demo.lib(2), '-o', out, '--json']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.equal(r.json.old.buildId, buildIdOf(demo.lib(1)));
    assert.match(r.json.old.path, new RegExp(`^/proc/${t.pid}/map_files/[0-9a-f]+-[0-9a-f]+$`));

    // What dpkg does: the new file renamed over the path; the process keeps the deleted one.
    const path = readFileSync(`/proc/${t.pid}/maps`, 'utf8')
      .split('\n')
      .find((l) => l.includes('/libdemo.so.1'))!
      .replace(/^.* (\/.*libdemo\.so\.1).*$/, '$1');
    copyFileSync(demo.lib(2), join(dirname(path), '.new'));
    renameSync(join(dirname(path), '.new'), path);
    assert.match(readFileSync(`/proc/${t.pid}/maps`, 'utf8'), /libdemo\.so\.1 \(deleted\)/);
    const deleted = join(dir.path, 'b.ulp');
    const r2 = ulpPack(['--pid', String(t.pid), path, '-o', deleted, '--json']);
    assert.equal(r2.code, 0, r2.stdout + r2.stderr);
    assert.equal(r2.json.old.buildId, buildIdOf(demo.lib(1)));
    assert.equal(r2.json.new.buildId, buildIdOf(demo.lib(2)));

    // Applied: the live build is v2 (a ulp memfd), so a v3 is packed from v2.
    assert.equal(runCli('ulp-trigger', [String(t.pid), deleted]).code, 0);
    const r3 = ulpPack(['--pid', String(t.pid), demo.lib(3), '--check', '--json']);
    assert.ok([0, 2].includes(r3.code), r3.stdout + r3.stderr);
    assert.equal(r3.json.old.buildId, buildIdOf(demo.lib(2)));
  });

  function expectError(args: string[], exit: number, code: string): void {
    const r = ulpPack([...args, '--json']);
    assert.equal(r.code, exit, r.stdout + r.stderr);
    assert.equal(r.json?.error?.code, code, r.stdout);
    assert.ok(r.json.error.hint);
  }

  it('bad inputs: no such process (4), a process without the library (3), usage (64)', () => {
    const gone = Number(execFileSync('sh', ['-c', 'true & echo $!'], { encoding: 'utf8' }).trim());
    const out = join(dir.path, 'bad.ulp');
    expectError(['--pid', String(gone), demo.lib(2), '-o', out], 4, 'PACK_PROCESS_NOT_FOUND');
    const sleeper = startTarget(['sleep', '600']);
    try {
      expectError(['--pid', String(sleeper.pid), demo.lib(2), '-o', out], 3, 'PACK_LIBRARY_NOT_LOADED');
    } finally {
      sleeper.dispose();
    }
    expectError(['--pid', 'abc', demo.lib(2), '-o', out], 64, 'PACK_USAGE');
    expectError(['--pid', '1', demo.lib(1), demo.lib(2), '-o', out], 64, 'PACK_USAGE');
    expectError(['--pid', '1', '--deb', demo.lib(1), demo.lib(2), '-o', out], 64, 'PACK_USAGE');
    expectError(['--pid', '1', demo.lib(2)], 64, 'PACK_USAGE');
    expectError(['--inspect', out, '--pid', '1'], 64, 'PACK_USAGE');
  });
});
