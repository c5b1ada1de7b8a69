/** What ulp-pack writes: determinism, signatures, --check, --inspect. */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync, gzipSync } from 'node:zlib';
import { libfix } from '../../../lab/packer/fixtures.js';
import { tempDir, ulpPack } from '../../../lab/packer/run.js';

const dir = tempDir();
after(() => dir.dispose());
const old = () => libfix({});
const neu = () => libfix({ defines: ['COMPUTE_ADD=2'] });
const p = (name: string) => join(dir.path, name);

const keys = generateKeyPairSync('ed25519');
const other = generateKeyPairSync('ed25519');
before(() => {
  writeFileSync(p('key.pem'), keys.privateKey.export({ type: 'pkcs8', format: 'pem' }));
  writeFileSync(p('key.pub'), keys.publicKey.export({ type: 'spki', format: 'pem' }));
  writeFileSync(p('other.pub'), other.publicKey.export({ type: 'spki', format: 'pem' }));
  writeFileSync(
    p('rsa.pem'),
    generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ type: 'pkcs8', format: 'pem' }),
  );
});

/** Replaces one entry of a bundle's tar by other bytes of the same size, keeping the rest. */
function tamper(bundle: Buffer, entry: string, edit: (data: Buffer) => void): Buffer {
  const tar = Buffer.from(gunzipSync(bundle));
  for (let off = 0; off < tar.length;) {
    const name = tar.toString('latin1', off, off + 100).replace(/\0.*/s, '');
    const size = parseInt(tar.toString('latin1', off + 124, off + 136), 8);
    if (name === entry) {
      edit(tar.subarray(off + 512, off + 512 + size));
      return gzipSync(tar);
    }
    off += 512 + Math.ceil(size / 512) * 512;
  }
  throw new Error(`no ${entry}`);
}

describe('ulp-pack: the bundle', () => {
  it('is byte-identical when packed twice with the same creation time (SOURCE_DATE_EPOCH or --created-at)', () => {
    const a = ulpPack([old(), neu(), '-o', p('a.ulp')], { SOURCE_DATE_EPOCH: '1700000000' });
    const b = ulpPack([old(), neu(), '-o', p('b.ulp')], { SOURCE_DATE_EPOCH: '1700000000' });
    const c = ulpPack([old(), neu(), '-o', p('c.ulp'), '--created-at', '2023-11-14T22:13:20Z']);
    for (const r of [a, b, c]) assert.equal(r.code, 0, r.stderr);
    assert.ok(readFileSync(p('a.ulp')).equals(readFileSync(p('b.ulp'))));
    assert.ok(
      readFileSync(p('a.ulp')).equals(readFileSync(p('c.ulp'))),
      '--created-at and SOURCE_DATE_EPOCH name the same second',
    );
  });

  it('keeps its patch id when only the creation time changes', () => {
    const a = ulpPack([old(), neu(), '--check', '--json', '--created-at', '0']);
    const x = ulpPack([old(), neu(), '-o', p('t1.ulp'), '--json', '--created-at', '1000']);
    const y = ulpPack([old(), neu(), '-o', p('t2.ulp'), '--json', '--created-at', '2000']);
    assert.equal(a.json.patchId, null, '--check writes no bundle, so names no patch');
    assert.equal(x.json.patchId, y.json.patchId);
    assert.ok(!readFileSync(p('t1.ulp')).equals(readFileSync(p('t2.ulp'))));
  });

  it('--check analyses and writes nothing', () => {
    const before = readdirSync(dir.path).length;
    const r = ulpPack([old(), neu(), '--check']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /--check: nothing written/);
    assert.equal(readdirSync(dir.path).length, before);
    const bad = ulpPack([old(), libfix({ defines: ['EXTRA_GLOBAL'] }), '--check']);
    assert.equal(bad.code, 2, 'an incompatible pair is still exit 2 with --check');
  });

  it('--inspect shows manifest, build-ids and reports (text and JSON)', () => {
    const packed = ulpPack([old(), neu(), '-o', p('i.ulp'), '--json']);
    const text = ulpPack(['--inspect', p('i.ulp')]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, new RegExp(`patch ${packed.json.patchId} for libfix\\.so\\.1`));
    assert.match(text.stdout, new RegExp(`old  build-id ${packed.json.old.buildId}`));
    assert.match(text.stdout, /signature: unsigned/);
    assert.match(text.stdout, /update \(old -> new\): COMPATIBLE/);
    assert.match(text.stdout, /revert \(new -> old\): COMPATIBLE/);
    const json = ulpPack(['--inspect', p('i.ulp'), '--json']);
    assert.equal(json.json.manifest.patchId, packed.json.patchId);
    assert.deepEqual(json.json.manifest.forward.report, packed.json.forward);
    assert.deepEqual(json.json.signature, { state: 'unsigned' });
  });

  it('--inspect refuses a tampered bundle: exit 3', () => {
    const good = readFileSync(p('i.ulp'));
    writeFileSync(
      p('hash.ulp'),
      tamper(good, 'new.so', (d) => (d[d.length - 1] ^= 0xff)),
    );
    const r = ulpPack(['--inspect', p('hash.ulp'), '--json']);
    assert.equal(r.code, 3);
    assert.equal(r.json.error.code, 'BUNDLE_HASH_MISMATCH');
    writeFileSync(p('trunc.ulp'), good.subarray(0, good.length >> 1));
    assert.equal(ulpPack(['--inspect', p('trunc.ulp')]).code, 3);
    assert.equal(ulpPack(['--inspect', p('nothing-here.ulp')]).code, 5);
  });
});

describe('ulp-pack: signatures', () => {
  it('signs with --sign; --inspect --key verifies; without a key it says so', () => {
    const r = ulpPack([old(), neu(), '-o', p('s.ulp'), '--sign', p('key.pem')]);
    assert.equal(r.code, 0, r.stderr);
    const v = ulpPack(['--inspect', p('s.ulp'), '--key', p('key.pub'), '--json']);
    assert.equal(v.code, 0, v.stderr);
    assert.equal(v.json.signature.state, 'verified');
    const u = ulpPack(['--inspect', p('s.ulp')]);
    assert.equal(u.code, 0);
    assert.match(u.stdout, /signature: signed by key [0-9a-f]{32}, NOT verified \(give --key to check it\)/);
  });

  it('signing is deterministic (Ed25519)', () => {
    ulpPack([old(), neu(), '-o', p('s1.ulp'), '--sign', p('key.pem'), '--created-at', '5']);
    ulpPack([old(), neu(), '-o', p('s2.ulp'), '--sign', p('key.pem'), '--created-at', '5']);
    assert.ok(readFileSync(p('s1.ulp')).equals(readFileSync(p('s2.ulp'))));
  });

  it('detects tampering with a signed bundle', () => {
    const signed = readFileSync(p('s.ulp'));
    // Same-size edit of the manifest (hashes of the builds still match): only the signature can tell.
    writeFileSync(
      p('t.ulp'),
      tamper(signed, 'ulp.json', (d) => d.write('"evil"', d.indexOf('"ulp-pack"'), 'latin1')),
    );
    const r = ulpPack(['--inspect', p('t.ulp'), '--key', p('key.pub'), '--json']);
    assert.equal(r.code, 3);
    assert.equal(r.json.error.code, 'BUNDLE_SIGNATURE_INVALID');
  });

  it('refuses a bundle signed by another key, and an unsigned one when a key is given', () => {
    assert.equal(
      ulpPack(['--inspect', p('s.ulp'), '--key', p('other.pub'), '--json']).json.error.code,
      'BUNDLE_SIGNATURE_KEY_MISMATCH',
    );
    ulpPack([old(), neu(), '-o', p('u.ulp')]);
    const r = ulpPack(['--inspect', p('u.ulp'), '--key', p('key.pub'), '--json']);
    assert.equal(r.code, 3);
    assert.equal(r.json.error.code, 'BUNDLE_UNSIGNED');
  });

  it('refuses a signing key that is not Ed25519 (exit 3) or cannot be read (exit 5), before writing anything', () => {
    const rsa = ulpPack([old(), neu(), '-o', p('rsa.ulp'), '--sign', p('rsa.pem'), '--json']);
    assert.equal(rsa.code, 3);
    assert.equal(rsa.json.error.code, 'BUNDLE_KEY_INVALID');
    const missing = ulpPack([old(), neu(), '-o', p('rsa.ulp'), '--sign', p('missing.pem'), '--json']);
    assert.equal(missing.code, 5);
    assert.equal(missing.json.error.code, 'PACK_KEY_UNREADABLE');
    assert.ok(!existsSync(p('rsa.ulp')));
  });
});
