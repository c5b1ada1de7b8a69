/**
 * Downgrades: ulp-pack refuses a new build that looks older than the old one
 * (PACK_DOWNGRADE, exit 2, nothing written) unless --allow-downgrade, on
 * evidence that holds for any library: the ELF package note, version strings
 * in read-only data, versioned folder names. The trigger never calls a
 * process that loaded the bundle's new build at start "already applied".
 * Checked on Debian's OpenSSL builds (../shared/real-builds) and on gcc
 * fixtures stamped with a package note (ld --package-metadata).
 */
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { readBundleFile } from '../../../patches/index.js';
import { HardLab, linesAfter, status, trigger } from '../../../lab/hard-lab.js';
import { REAL, REAL_FILES, realBuildsDir } from '../../../lab/real-builds.js';
import { tempDir, ulpPack } from '../../../lab/packer/run.js';

const dir = tempDir();
after(() => dir.dispose());

describe('ulp-pack refuses downgrades: Debian OpenSSL 3.0.19 / 3.0.20', function () {
  this.timeout(10 * 60_000);
  let real: string;
  before(function () {
    const d = realBuildsDir();
    if (!d) this.skip();
    real = d!;
  });
  const build = (v: string, f: string) => join(real, v, f);

  for (const lib of [REAL_FILES.crypto, REAL_FILES.ssl]) {
    it(`${lib}: 3.0.20 -> 3.0.19 is refused as a downgrade, with its evidence; 3.0.19 -> 3.0.20 is not`, () => {
      const out = join(dir.path, `${lib}-down.ulp`);
      const down = ulpPack([build(REAL.ssl20, lib), build(REAL.ssl19, lib), '-o', out, '--json']);
      assert.equal(down.code, 2, down.stdout + down.stderr);
      assert.equal(down.json.error.code, 'PACK_DOWNGRADE');
      const ev = down.json.error.details.evidence;
      assert.ok(
        ev.some((e: any) => e.order === 'older' && e.old.startsWith('3.0.20') && e.new.startsWith('3.0.19')),
        JSON.stringify(ev),
      );
      assert.ok(!existsSync(out), 'nothing written');
      const text = ulpPack([build(REAL.ssl20, lib), build(REAL.ssl19, lib), '--check']);
      assert.equal(text.code, 2);
      assert.match(text.stderr, /PACK_DOWNGRADE.*looks older.*3\.0\.20.*3\.0\.19/);
      assert.match(text.stderr, /--allow-downgrade/);

      const up = ulpPack([build(REAL.ssl19, lib), build(REAL.ssl20, lib), '--check', '--json']);
      assert.equal(up.code, 0, up.stdout + up.stderr);
      assert.equal(up.json.versions.downgrade, false);
      assert.ok(up.json.versions.evidence.every((e: any) => e.order === 'newer'));
    });
  }

  it('libcrypto is told by its own version strings, wherever the files lie; libssl carries none', () => {
    const place = (v: string, f: string, where: string) => {
      mkdirSync(join(dir.path, where), { recursive: true });
      copyFileSync(build(v, f), join(dir.path, where, f));
      return join(dir.path, where, f);
    };
    const r = ulpPack([
      place(REAL.ssl20, REAL_FILES.crypto, 'a'),
      place(REAL.ssl19, REAL_FILES.crypto, 'b'),
      '--check',
      '--json',
    ]);
    assert.equal(r.json?.error?.code, 'PACK_DOWNGRADE', r.stdout + r.stderr);
    const strings = r.json.error.details.evidence.filter((e: any) => e.source === 'version-string');
    assert.ok(
      strings.some((e: any) => e.what.startsWith('OpenSSL 3.0.20')),
      JSON.stringify(strings),
    );
    // docs/LIMITATIONS.md: without a note, versioned paths or known bundles, a library with no version in its bytes is not told.
    const ssl = ulpPack(
      [place(REAL.ssl20, REAL_FILES.ssl, 'c'), place(REAL.ssl19, REAL_FILES.ssl, 'd'), '--check', '--json'],
      { ULP_BUNDLES_DIR: join(dir.path, 'no-store') },
    );
    assert.equal(ssl.code, 0, ssl.stdout + ssl.stderr);
    assert.deepEqual(ssl.json.versions.evidence, []);
  });

  it('libssl is told once its upgrade was packed: a bundle in the store that updates NEW to OLD', () => {
    const place = (v: string, where: string) => {
      mkdirSync(join(dir.path, where), { recursive: true });
      copyFileSync(build(v, REAL_FILES.ssl), join(dir.path, where, REAL_FILES.ssl));
      return join(dir.path, where, REAL_FILES.ssl);
    };
    const [ssl19, ssl20] = [place(REAL.ssl19, 'e'), place(REAL.ssl20, 'f')];
    const store = join(dir.path, 'store');
    mkdirSync(store, { recursive: true });
    const env = { ULP_BUNDLES_DIR: store };
    const upgrade = join(store, 'libssl.so.3_19_20.ulp');
    const up = ulpPack([ssl19, ssl20, '-o', upgrade, '--json'], env);
    assert.equal(up.code, 0, up.stdout + up.stderr);

    const down = ulpPack([ssl20, ssl19, '--check', '--json'], env);
    assert.equal(down.json?.error?.code, 'PACK_DOWNGRADE', down.stdout + down.stderr);
    assert.deepEqual(
      down.json.error.details.evidence.map((e: any) => [e.source, e.order, e.bundles]),
      [['known-bundle', 'older', [upgrade]]],
    );
    assert.match(ulpPack([ssl20, ssl19, '--check'], env).stderr, /PACK_DOWNGRADE.*libssl\.so\.3_19_20\.ulp/);
  });

  it('--allow-downgrade writes the bundle and marks it', () => {
    const out = join(dir.path, 'crypto-down.ulp');
    const r = ulpPack([
      build(REAL.ssl20, REAL_FILES.crypto),
      build(REAL.ssl19, REAL_FILES.crypto),
      '-o',
      out,
      '--allow-downgrade',
    ]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /versions: the new build looks OLDER/);
    assert.equal(readBundleFile(out).manifest.downgrade, true);
    assert.match(ulpPack(['--inspect', out]).stdout, /DOWNGRADE/);
  });
});

describe('package notes (ld --package-metadata): downgrade evidence and bundle metadata', function () {
  this.timeout(5 * 60_000);
  const note = (version: string) => [
    `-Xlinker`,
    `--package-metadata={"type":"deb","name":"libnotes1","version":"${version}","architecture":"amd64"}`,
  ];
  let lab: HardLab;
  before(() => {
    // Same source and SONAME; each key is one package version.
    const spec = (version: string) => ({
      soname: 'libnotes.so.1',
      sources: ['hard/libstack.c'],
      flags: note(version),
    });
    lab = new HardLab(
      { u1: spec('2.0-1'), u2: spec('2.0-1+deb12u1'), u3: spec('2.0-2'), epoch: spec('1:1.0-1') },
      'downgrade',
    );
  });
  after(() => lab?.dispose());

  it('orders the notes as dpkg does: a later revision, an epoch; an earlier one is refused', () => {
    const check = (a: [string, number], b: [string, number]) =>
      ulpPack([lab.lib(...a), lab.lib(...b), '--check', '--json']);
    const up = check(['u1', 1], ['u2', 2]);
    assert.equal(up.code, 0, up.stdout + up.stderr);
    assert.deepEqual(
      up.json.versions.evidence.find((e: any) => e.source === 'package-note'),
      {
        source: 'package-note',
        what: 'deb package libnotes1',
        old: '2.0-1',
        new: '2.0-1+deb12u1',
        order: 'newer',
      },
    );
    assert.equal(check(['u3', 1], ['epoch', 2]).code, 0, 'epoch 1 is newer than any epoch 0');
    const down = check(['u3', 1], ['u2', 2]);
    assert.equal(down.code, 2);
    assert.equal(down.json.error.code, 'PACK_DOWNGRADE');
    assert.match(down.json.error.message, /package-note deb package libnotes1: 2\.0-2 -> 2\.0-1\+deb12u1/);
  });

  it('records the package, versions and CVEs: from the notes by default, from the options when given', () => {
    const a = lab.bundlePath('u1', 1, 2);
    assert.equal(
      ulpPack([
        lab.lib('u1', 1),
        lab.lib('u2', 2),
        '-o',
        a,
        '--fixes',
        'CVE-2026-1234',
        '--fixes',
        'cve-2026-99999',
      ]).code,
      0,
    );
    assert.deepEqual(readBundleFile(a).manifest.package, {
      name: 'libnotes1',
      fromVersion: '2.0-1',
      toVersion: '2.0-1+deb12u1',
      fixes: ['CVE-2026-1234', 'CVE-2026-99999'],
    });
    assert.match(
      ulpPack(['--inspect', a]).stdout,
      /package libnotes1 2\.0-1 -> 2\.0-1\+deb12u1, fixes CVE-2026-1234, CVE-2026-99999/,
    );
    const inspected = ulpPack(['--inspect', a, '--json']).json;
    assert.equal(inspected.manifest.format, '1.1.0');
    assert.equal(inspected.manifest.package.name, 'libnotes1');

    const b = join(dir.path, 'given.ulp');
    const r = ulpPack([
      lab.lib('u1', 1),
      lab.lib('u2', 2),
      '-o',
      b,
      '--package',
      'libnotes-custom',
      '--from-version',
      '7.1',
      '--to-version',
      '7.2',
      '--json',
    ]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.deepEqual(r.json.package, { name: 'libnotes-custom', fromVersion: '7.1', toVersion: '7.2' });
    assert.deepEqual(readBundleFile(b).manifest.package, r.json.package);
  });

  it('refuses bad package facts with their own codes, before reading anything, writing nothing', () => {
    const out = join(dir.path, 'bad.ulp');
    for (const [args, code] of [
      [['--fixes', 'CVE-26-1'], 'PACK_BAD_CVE'],
      [['--fixes', 'CVE-2026-1234', '--fixes', 'heartbleed'], 'PACK_BAD_CVE'],
      [['--package', ''], 'PACK_BAD_PACKAGE'],
      [['--package', 'lib ssl'], 'PACK_BAD_PACKAGE'],
      [['--from-version', ''], 'PACK_BAD_VERSION'],
      [['--to-version', '1.0 beta'], 'PACK_BAD_VERSION'],
    ] as Array<[string[], string]>) {
      const r = ulpPack(['/nonexistent/old.so', '/nonexistent/new.so', '-o', out, '--json', ...args]);
      assert.equal(r.code, 64, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
      assert.equal(r.json.error.code, code, args.join(' '));
      assert.ok(!existsSync(out));
    }
    const r = ulpPack(['--inspect', '/nonexistent.ulp', '--fixes', 'CVE-2026-1234']);
    assert.equal(r.code, 64);
  });

  it('ulp-trigger: a process that loaded the new build at start "runs the new build already", one ulp patched is "already applied"', async () => {
    // A downgrade bundle, written on purpose: its new build is the older package.
    const bundle = lab.bundlePath('u3', 1, 2);
    assert.equal(ulpPack([lab.lib('u3', 1), lab.lib('u2', 2), '-o', bundle, '--allow-downgrade']).code, 0);
    const exe = lab.exe('stack_main', { sources: ['hard/stack_main.c'], needs: ['u3'] });

    const older = lab.start(exe, { u2: 2 });
    await linesAfter(older, 0, (ls) => ls.length >= 1);
    const r = trigger(String(older.pid), bundle, '--json').json;
    assert.equal(r.outcome, 'runs-new-build');
    const text = trigger(String(older.pid), bundle).stdout;
    assert.match(text, /runs the new build of patch [0-9a-f]+ already \(loaded at start, not patched\)/);
    assert.doesNotMatch(text, /already applied/);

    const patched = lab.start(exe, { u3: 1 });
    await linesAfter(patched, 0, (ls) => ls.length >= 1);
    const applied = trigger(String(patched.pid), bundle, '--json').json;
    assert.equal(applied.outcome, 'applied');
    assert.equal(applied.downgrade, true, 'the report says what was applied is a downgrade');
    const st = status(patched.pid).libraries.find((l: { soname: string }) => l.soname === 'libnotes.so.1');
    assert.deepEqual(
      st.patches.map((p: any) => [p.state, p.downgrade, p.package?.toVersion]),
      [['applied', true, '2.0-1+deb12u1']],
    );
    assert.match(
      trigger('--status', String(patched.pid)).stdout,
      /applied \(package libnotes1 2\.0-2 -> 2\.0-1\+deb12u1; a DOWNGRADE, packed with --allow-downgrade\)/,
    );
    assert.equal(trigger(String(patched.pid), bundle, '--json').json.outcome, 'already-applied');
    assert.match(trigger(String(patched.pid), bundle).stdout, /already applied/);
  });
});
