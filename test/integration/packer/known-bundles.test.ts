/**
 * Downgrade evidence from bundles already written: ulp-pack reads the store
 * ulp-trigger keeps ($ULP_BUNDLES_DIR) and the --known folders, and refuses
 * NEW -> OLD when a bundle there (or a chain of them) updates NEW to OLD.
 * The builds are gcc fixtures whose bytes and paths carry no version, like
 * Debian's libssl.so.3: without the bundles nothing tells them apart.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { libfix } from '../../../lab/packer/fixtures.js';
import { tempDir, ulpPack } from '../../../lab/packer/run.js';
import { randomBytes } from 'node:crypto';
import { gunzipSync, gzipSync } from 'node:zlib';
import { readBundleFile } from '../../../patches/index.js';
import { gzipMemberSync } from '../../../patches/gzip.js';
import { tarEntry, TAR_END } from '../../../patches/tar.js';

const dir = tempDir();
after(() => dir.dispose());

/** A build copied to `where/libfix.so.1`: no version in the folder or the file name. */
function placed(where: string, defines: string[]): string {
  mkdirSync(join(dir.path, where), { recursive: true });
  const to = join(dir.path, where, 'libfix.so.1');
  copyFileSync(libfix({ defines }), to);
  return to;
}

function folder(name: string): string {
  const p = join(dir.path, name);
  mkdirSync(p, { recursive: true });
  return p;
}

describe('ulp-pack: downgrade evidence from known bundles', function () {
  this.timeout(5 * 60_000);
  let v1: string, v2: string, v3: string;
  let store: string;
  /** v1 -> v2, packed into the store before the tests (ulp-pack's --json of it). */
  let upgrade: { path: string; json: any };
  const inStore = (args: string[], s = store) => ulpPack(args, { ULP_BUNDLES_DIR: s });

  before(() => {
    v1 = placed('a', []);
    v2 = placed('b', ['COMPUTE_ADD=2']);
    v3 = placed('c', ['COMPUTE_ADD=3']);
    store = folder('store');
    const path = join(store, 'libfix_1_2.ulp');
    const packed = inStore([v1, v2, '-o', path, '--json'], folder('empty-store'));
    assert.equal(packed.code, 0, packed.stdout + packed.stderr);
    assert.equal(packed.json.versions.downgrade, false);
    upgrade = { path, json: packed.json };
  });

  it('without known bundles the builds cannot be told apart: the downgrade is packed', () => {
    const r = inStore([v2, v1, '--check', '--json'], folder('empty-store'));
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.equal(r.json.versions.downgrade, false);
    assert.deepEqual(r.json.versions.evidence, []);
    assert.equal(r.stderr.includes('warning'), false, 'an empty store is no reason to warn');
  });

  it('a bundle in the store that updates NEW to OLD refuses the pair, naming the bundle; nothing is written', () => {
    const { path: up, json: packed } = upgrade;
    const out = join(dir.path, 'down.ulp');
    const r = inStore([v2, v1, '-o', out, '--json']);
    assert.equal(r.code, 2, r.stdout + r.stderr);
    assert.equal(r.json.error.code, 'PACK_DOWNGRADE');
    const ev = r.json.error.details.evidence;
    assert.deepEqual(
      ev.map((e: any) => [e.source, e.order, e.bundles, e.old, e.new]),
      [['known-bundle', 'older', [up], packed.new.buildId, packed.old.buildId]],
    );
    assert.ok(!existsSync(out), 'nothing written');

    const text = inStore([v2, v1, '--check']);
    assert.equal(text.code, 2);
    assert.match(
      text.stderr,
      /PACK_DOWNGRADE.*known-bundle .*libfix_1_2\.ulp updates the NEW build to the OLD one/,
    );
    assert.match(text.stderr, /--allow-downgrade/);

    // The right way round, the same bundle is evidence that the pair is an upgrade.
    const again = inStore([v1, v2, '--check', '--json']);
    assert.equal(again.code, 0, again.stdout + again.stderr);
    assert.deepEqual(
      again.json.versions.evidence.map((e: any) => [e.source, e.order]),
      [['known-bundle', 'newer']],
    );
  });

  it('--allow-downgrade still writes the downgrade, marked as one', () => {
    const out = join(folder('elsewhere'), 'down.ulp');
    const r = inStore([v2, v1, '-o', out, '--allow-downgrade', '--json']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.equal(r.json.versions.downgrade, true);
    assert.equal(readBundleFile(out).manifest.downgrade, true);
    // That bundle, kept, is evidence too, the other way round: it undid v1 -> v2, so v1 -> v2 stays an upgrade.
    const known = folder('known-down');
    copyFileSync(out, join(known, 'down.ulp'));
    const up = inStore([v1, v2, '--check', '--json', '--known', known], folder('empty-store'));
    assert.equal(up.code, 0, up.stdout + up.stderr);
    assert.deepEqual(
      up.json.versions.evidence.map((e: any) => [e.order, e.bundles]),
      [['newer', [join(known, 'down.ulp')]]],
    );
    const down = inStore([v2, v1, '--check', '--json', '--known', known], folder('empty-store'));
    assert.equal(down.json?.error?.code, 'PACK_DOWNGRADE', down.stdout + down.stderr);
  });

  it('--known folders count as the store does, and chains of updates count', () => {
    const known = folder('known');
    const empty = folder('empty-store');
    assert.equal(inStore([v1, v2, '-o', join(known, 'one.ulp')], empty).code, 0);
    assert.equal(inStore([v2, v3, '-o', join(known, 'two.ulp')], empty).code, 0);
    assert.equal(inStore([v3, v1, '--check'], empty).code, 0, 'not without --known');

    const r = inStore([v3, v1, '--check', '--json', '--known', known], empty);
    assert.equal(r.code, 2, r.stdout + r.stderr);
    assert.equal(r.json.error.code, 'PACK_DOWNGRADE');
    assert.deepEqual(r.json.error.details.evidence[0].bundles, [
      join(known, 'one.ulp'),
      join(known, 'two.ulp'),
    ]);
    const twice = inStore([v3, v2, '--check', '--json', '--known', known, '--known', known], empty);
    assert.equal(twice.json.error.code, 'PACK_DOWNGRADE');
    assert.equal(twice.json.error.details.evidence.length, 1, 'a folder given twice is read once');
  });

  it('bundles that cannot be read are skipped with a warning, never fatal; a missing store is normal', () => {
    const messy = folder('messy');
    const good = upgrade.path;
    copyFileSync(good, join(messy, 'good.ulp'));
    writeFileSync(join(messy, 'garbage.ulp'), 'not a bundle\n');
    writeFileSync(join(messy, 'cut.ulp'), readFileSync(good).subarray(0, 40));
    writeFileSync(join(messy, 'empty.ulp'), '');
    mkdirSync(join(messy, 'folder.ulp'));
    execFileSync('mkfifo', [join(messy, 'pipe.ulp')]);
    writeFileSync(join(messy, 'notes.txt'), 'not a .ulp name: not looked at');

    const r = inStore([v2, v1, '--check', '--json'], messy);
    assert.equal(r.json?.error?.code, 'PACK_DOWNGRADE', r.stdout + r.stderr);
    assert.deepEqual(r.json.error.details.evidence[0].bundles, [join(messy, 'good.ulp')]);
    for (const name of ['garbage.ulp', 'cut.ulp', 'empty.ulp', 'folder.ulp', 'pipe.ulp'])
      assert.match(r.stderr, new RegExp(`warning: skipped ${join(messy, name)} \\(BUNDLE_`), name);
    assert.doesNotMatch(r.stderr, /notes\.txt/);

    const up = inStore([v1, v2, '--check', '--json'], messy);
    assert.equal(up.code, 0, up.stdout + up.stderr);
    assert.deepEqual(
      up.json.knownBundles.skipped.map((s: any) => [s.path.slice(messy.length + 1), s.code]),
      [
        ['cut.ulp', 'BUNDLE_CORRUPT'],
        ['empty.ulp', 'BUNDLE_NOT_GZIP'],
        ['folder.ulp', 'BUNDLE_READ_FAILED'],
        ['garbage.ulp', 'BUNDLE_NOT_GZIP'],
        ['pipe.ulp', 'BUNDLE_READ_FAILED'],
      ],
    );
    assert.equal(up.json.knownBundles.read, 1);

    const missing = inStore([v2, v1, '--check', '--json'], join(dir.path, 'no-such-store'));
    assert.equal(missing.code, 0, missing.stdout + missing.stderr);
    assert.equal(missing.stderr, '');

    // A store that cannot be listed (here a file; for a user who is not root, the 0700 folder) is a warning.
    const unlistable = inStore([v2, v1, '--check', '--json'], join(messy, 'notes.txt'));
    assert.equal(unlistable.code, 0, unlistable.stdout + unlistable.stderr);
    assert.match(unlistable.stderr, /warning: skipped .*notes\.txt \(BUNDLE_READ_FAILED: cannot list/);
  });

  it('reads a manifest larger than its first read, and a bundle recompressed as one gzip member', () => {
    const good = readFileSync(upgrade.path);
    const manifest = readBundleFile(upgrade.path).manifestBytes;
    // Incompressible filler: its gzip member is far larger than the 64 KiB read first.
    const big = JSON.stringify({
      ...JSON.parse(manifest.toString()),
      filler: randomBytes(1 << 20).toString('hex'),
    });
    const mtime = new Date('2026-01-01T00:00:00Z');
    const onlyBig = folder('big');
    writeFileSync(
      join(onlyBig, 'big.ulp'),
      Buffer.concat([gzipMemberSync(tarEntry('ulp.json', Buffer.from(big), mtime)), gzipMemberSync(TAR_END)]),
    );
    const r = inStore([v2, v1, '--check', '--json', '--known', onlyBig], folder('empty-store'));
    assert.equal(r.json?.error?.code, 'PACK_DOWNGRADE', r.stdout + r.stderr);
    assert.deepEqual(r.json.error.details.evidence[0].bundles, [join(onlyBig, 'big.ulp')]);

    const oneMember = folder('one-member');
    writeFileSync(join(oneMember, 'gz.ulp'), gzipSync(gunzipSync(good)));
    const one = inStore([v2, v1, '--check', '--json', '--known', oneMember], folder('empty-store'));
    assert.equal(one.json?.error?.code, 'PACK_DOWNGRADE', one.stdout + one.stderr);
    assert.equal(one.stderr, '');
  });

  it('a --known folder that does not exist is an I/O error before anything is read, and --inspect takes none', () => {
    const out = join(dir.path, 'never.ulp');
    const r = inStore([v1, v2, '-o', out, '--json', '--known', join(dir.path, 'nope')]);
    assert.equal(r.code, 5, r.stdout + r.stderr);
    assert.equal(r.json.error.code, 'PACK_KNOWN_DIR_UNREADABLE');
    assert.match(r.json.error.message, /nope does not exist/);
    assert.ok(!existsSync(out));
    const file = inStore([v1, v2, '-o', out, '--known', v1]);
    assert.equal(file.code, 5);
    assert.match(file.stderr, /PACK_KNOWN_DIR_UNREADABLE.*is not a folder/);
    const inspect = inStore(['--inspect', upgrade.path, '--known', store]);
    assert.equal(inspect.code, 64, inspect.stdout + inspect.stderr);
  });
});
