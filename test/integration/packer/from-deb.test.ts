/**
 * `ulp-pack --deb OLD.deb NEW.deb -o DIR` on packages built with the real
 * dpkg-deb: which libraries pair, one bundle per compatible pair under the
 * bundles-folder name, nothing for a refused or unchanged one, and each bad
 * input with its own code and exit code. The pairing is tested directly.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseElf } from '../../../elf/index.js';
import { pairLibraries, parseControlFields, type DebLibrary } from '../../../packer/from-deb.js';
import { buildDeb } from '../../../lab/deb.js';
import { UPG_SONAME, upgLib } from '../../../lab/upgrade-fixture.js';
import { libfix } from '../../../lab/packer/fixtures.js';
import { tempDir, ulpPack } from '../../../lab/packer/run.js';

const lib = (path: string, soname: string, buildId = 'b'): DebLibrary => ({
  path,
  file: `/x/${path}`,
  soname,
  buildId,
});
const buildIdOf = (path: string) => parseElf(readFileSync(path)).buildId!;

describe('ulp-pack --deb: pairing (pure)', () => {
  it('pairs by SONAME across a renamed file, and by path where a package ships one SONAME twice', () => {
    const r = pairLibraries(
      [
        lib('usr/lib/libfoo.so.1.2.3', 'libfoo.so.1'),
        lib('usr/lib/a/libbar.so.2', 'libbar.so.2'),
        lib('usr/lib/b/libbar.so.2', 'libbar.so.2'),
        lib('usr/lib/libgone.so.1', 'libgone.so.1'),
      ],
      [
        lib('usr/lib/libfoo.so.1.2.4', 'libfoo.so.1'),
        lib('usr/lib/b/libbar.so.2', 'libbar.so.2'),
        lib('usr/lib/c/libbar.so.2', 'libbar.so.2'),
        lib('usr/lib/libnew.so.1', 'libnew.so.1'),
      ],
    );
    assert.deepEqual(
      r.pairs.map((p) => [p.soname, p.old.path, p.new.path]),
      [
        ['libbar.so.2', 'usr/lib/b/libbar.so.2', 'usr/lib/b/libbar.so.2'],
        ['libfoo.so.1', 'usr/lib/libfoo.so.1.2.3', 'usr/lib/libfoo.so.1.2.4'],
      ],
    );
    assert.deepEqual(
      r.onlyOld.map((l) => l.path),
      ['usr/lib/a/libbar.so.2', 'usr/lib/libgone.so.1'],
    );
    assert.deepEqual(
      r.onlyNew.map((l) => l.path),
      ['usr/lib/c/libbar.so.2', 'usr/lib/libnew.so.1'],
    );
  });

  it('reads dpkg-deb -f output', () => {
    assert.deepEqual(
      parseControlFields('Package: libssl3\nVersion: 3.0.20-1~deb12u2\nArchitecture: amd64\n'),
      { Package: 'libssl3', Version: '3.0.20-1~deb12u2', Architecture: 'amd64' },
    );
  });
});

describe('ulp-pack --deb', function () {
  this.timeout(120_000);
  const dir = tempDir();
  after(() => dir.dispose());
  const L = 'usr/lib/x86_64-linux-gnu';
  const deb = (version: string, upg: number, file = 'libulpupgtest.so.1.0.0', name = 'ulp-debtest1') =>
    buildDeb(dir.path, {
      name,
      version,
      files: {
        [`${L}/${file}`]: upgLib(upg),
        [`${L}/${UPG_SONAME}`]: { link: file },
        [`${L}/libfix.so.1`]: libfix({}),
        'usr/share/doc/x/README': __filename,
      },
    });

  it('writes one bundle per compatible library, named for its build pair; an unchanged library gets none', () => {
    const out = join(dir.path, 'bundles');
    const r = ulpPack([
      '--deb',
      deb('1.0-1', 1),
      deb('1.0-2', 2, 'libulpupgtest.so.1.0.1'),
      '-o',
      out,
      '--json',
    ]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const name = `${UPG_SONAME}_${buildIdOf(upgLib(1))}_${buildIdOf(upgLib(2))}.ulp`;
    assert.deepEqual(readdirSync(out), [name]);
    assert.deepEqual(
      r.json.libraries.map((l: any) => [l.soname, l.oldPath, l.newPath, l.verdict, l.output]),
      [
        ['libfix.so.1', `${L}/libfix.so.1`, `${L}/libfix.so.1`, 'same-build', null],
        [
          UPG_SONAME,
          `${L}/libulpupgtest.so.1.0.0`,
          `${L}/libulpupgtest.so.1.0.1`,
          'compatible',
          join(out, name),
        ],
      ],
    );
    assert.deepEqual(
      [r.json.old.package, r.json.old.version, r.json.new.version],
      ['ulp-debtest1', '1.0-1', '1.0-2'],
    );
    // The package's name and versions are in the bundle.
    const inspect = ulpPack(['--inspect', join(out, name), '--json']);
    assert.equal(inspect.code, 0);
    assert.deepEqual(inspect.json.manifest.package, {
      name: 'ulp-debtest1',
      fromVersion: '1.0-1',
      toVersion: '1.0-2',
    });
    const text = ulpPack(['--deb', deb('1.0-1', 1), deb('1.0-2', 2, 'libulpupgtest.so.1.0.1'), '--check']);
    assert.equal(text.code, 0, text.stderr);
    assert.match(
      text.stdout,
      /libfix\.so\.1 \(usr\/lib\/x86_64-linux-gnu\/libfix\.so\.1\): the same build in both: nothing to patch/,
    );
    assert.match(
      text.stdout,
      /libulpupgtest\.so\.1 \(.*libulpupgtest\.so\.1\.0\.0 -> .*libulpupgtest\.so\.1\.0\.1\): compatible: nothing written \(--check\)/,
    );
  });

  it('packages given the wrong way round: their control fields refuse each rebuilt library as a downgrade', () => {
    const out = join(dir.path, 'down');
    const r = ulpPack(['--deb', deb('1.0-2', 2), deb('1.0-1', 1), '-o', out, '--json']);
    assert.equal(r.code, 2, r.stdout + r.stderr);
    assert.deepEqual(
      r.json.libraries.map((l: any) => [l.soname, l.verdict, l.reasons.map((x: any) => x.code)]),
      [
        ['libfix.so.1', 'same-build', []],
        [UPG_SONAME, 'error', ['PACK_DOWNGRADE']],
      ],
    );
    assert.match(
      r.json.libraries[1].reasons[0].message,
      /package-control deb package ulp-debtest1: 1\.0-2 -> 1\.0-1/,
    );
    assert.deepEqual(readdirSync(out), []);
    const allowed = ulpPack(['--deb', deb('1.0-2', 2), deb('1.0-1', 1), '-o', out, '--allow-downgrade']);
    assert.equal(allowed.code, 0, allowed.stdout + allowed.stderr);
    const [bundle] = readdirSync(out);
    const inspect = ulpPack(['--inspect', join(out, bundle!), '--json']);
    assert.equal(inspect.json.manifest.downgrade, true);
  });

  it('an incompatible library: exit 2, its reasons, no bundle', () => {
    const out = join(dir.path, 'refused');
    const r = ulpPack(['--deb', deb('1.0-1', 1), deb('1.0-3', 3), '-o', out]);
    assert.equal(r.code, 2, r.stdout + r.stderr);
    assert.match(
      r.stdout,
      /libulpupgtest\.so\.1 \(.*\): incompatible: no bundle written\n\s+data: .*\[DATA_/,
    );
    assert.match(r.stdout, /result: 0 bundles written, 1 refused/);
    assert.deepEqual(readdirSync(out), []);
  });

  function expectError(args: string[], exit: number, code: string): void {
    const r = ulpPack([...args, '--json']);
    assert.equal(r.code, exit, r.stdout + r.stderr);
    assert.equal(r.json?.error?.code, code, r.stdout);
    assert.ok(r.json.error.hint);
  }

  it('bad inputs: each its code and exit code, nothing written', () => {
    const out = join(dir.path, 'bad');
    const notDeb = join(dir.path, 'not.deb');
    writeFileSync(notDeb, 'not an archive\n');
    expectError(['--deb', notDeb, deb('1.0-2', 2), '-o', out], 3, 'PACK_DEB_INVALID');
    expectError(
      ['--deb', join(dir.path, 'missing.deb'), deb('1.0-2', 2), '-o', out],
      5,
      'PACK_INPUT_UNREADABLE',
    );
    expectError(
      ['--deb', deb('1.0-1', 1), deb('1.0-2', 2, 'libulpupgtest.so.1.0.0', 'ulp-debtest-other'), '-o', out],
      3,
      'PACK_DEB_MISMATCH',
    );
    const docOnly = (v: string) =>
      buildDeb(dir.path, {
        name: 'ulp-debtest-doc',
        version: v,
        files: { 'usr/share/doc/x/README': __filename },
      });
    expectError(['--deb', docOnly('1'), docOnly('2'), '-o', out], 3, 'PACK_DEB_NO_LIBRARIES');
    expectError(['--deb', deb('1.0-1', 1), deb('1.0-2', 2), '-o', out, '--package', 'x'], 64, 'PACK_USAGE');
    expectError(['--deb', deb('1.0-1', 1), deb('1.0-2', 2)], 64, 'PACK_USAGE');
    expectError(['--deb', deb('1.0-1', 1)], 64, 'PACK_USAGE');
    assert.ok(!existsSync(out) || readdirSync(out).length === 0);
  });
});
