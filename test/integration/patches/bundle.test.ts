import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isUlpError } from '../../../common/errors.js';
import {
  BundleEncoder,
  FORMAT_VERSION,
  decodeBundle,
  encodeBundle,
  loadPrivateKey,
  loadPublicKey,
  patchIdOf,
  patchStep,
  readBundleFile,
  serializeManifest,
  writeFileAtomic,
  type Manifest,
} from '../../../patches/index.js';
import { gz, rawTar, sampleManifest, type RawEntry } from '../../../lab/patches/craft.js';

function expectCode(fn: () => unknown, code: string, message?: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(isUlpError(err), `expected a UlpError, got ${String(err)}`);
    assert.equal(err.code, code, `expected ${code}, got ${err.code}: ${err.message}`);
    assert.ok(err.hint && err.hint.length > 0, 'every rejection carries a hint');
    if (message) assert.match(err.message, message);
    return true;
  });
}

/** A structurally valid bundle whose parts the test may replace. */
function craft(
  opts: {
    manifest?: Buffer | object;
    oldBuild?: Buffer;
    newBuild?: Buffer;
    extra?: RawEntry[];
    omit?: string[];
  } = {},
): Buffer {
  const base = sampleManifest();
  const manifest = Buffer.isBuffer(opts.manifest)
    ? opts.manifest
    : opts.manifest
      ? Buffer.from(JSON.stringify(opts.manifest))
      : serializeManifest(base.manifest);
  const entries: RawEntry[] = [
    { name: 'ulp.json', data: manifest },
    { name: 'new.so', data: opts.newBuild ?? base.newBuild },
    { name: 'old.so', data: opts.oldBuild ?? base.oldBuild },
    ...(opts.extra ?? []),
  ].filter((e) => !opts.omit?.includes(e.name));
  return gz(rawTar(entries));
}

/** The sample manifest with `edit` applied and the patch id recomputed, so only the edited fact is wrong. */
function editedManifest(edit: (m: Manifest) => void): Manifest {
  const m = structuredClone(sampleManifest().manifest);
  edit(m);
  m.patchId = patchIdOf(m.soname, m.builds.old, m.builds.new);
  return m;
}

describe('patches: bundle round trip', () => {
  it('decodes what it encodes, checks hashes and build-ids, reports an unsigned bundle', () => {
    const { manifest, oldBuild, newBuild } = sampleManifest();
    const bundle = decodeBundle(encodeBundle({ manifest, oldBuild, newBuild }));
    assert.deepEqual(bundle.manifest, manifest);
    assert.ok(bundle.oldBuild.equals(oldBuild));
    assert.ok(bundle.newBuild.equals(newBuild));
    assert.deepEqual(bundle.signature, { state: 'unsigned' });
    assert.equal(bundle.manifest.format, FORMAT_VERSION);
  });

  it('writes byte-identical bundles for identical inputs (fixed tar and gzip metadata)', () => {
    const a = sampleManifest();
    const b = sampleManifest();
    const x = encodeBundle(a);
    assert.ok(x.equals(encodeBundle(b)));
    assert.equal(x.readUInt32LE(4), 0, 'gzip MTIME is zero');
    assert.equal(x[9], 0xff, 'gzip OS byte is fixed');
  });

  it('keeps the patch id when only the creation time differs, and changes it with the builds', () => {
    const a = sampleManifest(new Date('2025-01-01T00:00:00Z'));
    const b = sampleManifest(new Date('2030-06-01T12:00:00Z'));
    assert.equal(a.manifest.patchId, b.manifest.patchId);
    assert.notEqual(a.manifest.createdAt, b.manifest.createdAt);
    assert.ok(!encodeBundle(a).equals(encodeBundle(b)));
    const swapped = patchIdOf(
      a.manifest.soname,
      { ...a.manifest.builds.new, entry: 'old.so' },
      { ...a.manifest.builds.old, entry: 'new.so' },
    );
    assert.notEqual(swapped, a.manifest.patchId);
  });

  it('gives the forward and the reverse step with the right builds', () => {
    const bundle = decodeBundle(encodeBundle(sampleManifest()));
    const fwd = patchStep(bundle, 'forward');
    const rev = patchStep(bundle, 'reverse');
    assert.equal(fwd.from.entry.entry, 'old.so');
    assert.equal(fwd.to.bytes, bundle.newBuild);
    assert.equal(rev.from.entry.entry, 'new.so');
    assert.equal(rev.to.bytes, bundle.oldBuild);
    assert.equal(rev.direction.from, 'new');
  });
});

describe('patches: signatures', () => {
  const keys = generateKeyPairSync('ed25519');
  const other = generateKeyPairSync('ed25519');
  const priv = loadPrivateKey(keys.privateKey.export({ type: 'pkcs8', format: 'pem' }));
  const pub = loadPublicKey(keys.publicKey.export({ type: 'spki', format: 'pem' }));

  it('verifies a signed bundle with its public key, and is deterministic', () => {
    const c = sampleManifest();
    const bytes = encodeBundle(c, { privateKey: priv });
    assert.ok(bytes.equals(encodeBundle(sampleManifest(), { privateKey: priv })));
    const b = decodeBundle(bytes, { publicKey: pub });
    assert.equal(b.signature.state, 'verified');
  });

  it('says "unverified" for a signed bundle read without a key (the caller decides)', () => {
    const b = decodeBundle(encodeBundle(sampleManifest(), { privateKey: priv }));
    assert.equal(b.signature.state, 'unverified');
  });

  it('accepts a private key file where a public key is expected', () => {
    const pubFromPriv = loadPublicKey(keys.privateKey.export({ type: 'pkcs8', format: 'pem' }));
    assert.equal(
      decodeBundle(encodeBundle(sampleManifest(), { privateKey: priv }), { publicKey: pubFromPriv }).signature
        .state,
      'verified',
    );
  });

  it('refuses an unsigned bundle when a key is required', () => {
    expectCode(() => decodeBundle(encodeBundle(sampleManifest()), { publicKey: pub }), 'BUNDLE_UNSIGNED');
  });

  it('refuses a bundle signed by another key', () => {
    const otherPub = loadPublicKey(other.publicKey.export({ type: 'spki', format: 'pem' }));
    expectCode(
      () => decodeBundle(encodeBundle(sampleManifest(), { privateKey: priv }), { publicKey: otherPub }),
      'BUNDLE_SIGNATURE_KEY_MISMATCH',
    );
  });

  it('detects a manifest edited after signing, even with a consistent patch id', () => {
    const signed = decodeBundle(encodeBundle(sampleManifest(), { privateKey: priv }));
    const sigEntry = rawSignatureEntry(encodeBundle(sampleManifest(), { privateKey: priv }));
    const tampered = editedManifest((m) => (m.tool.version = 'evil'));
    const bytes = craft({
      manifest: serializeManifest(tampered),
      extra: [{ name: 'signature', data: sigEntry }],
    });
    expectCode(() => decodeBundle(bytes, { publicKey: pub }), 'BUNDLE_SIGNATURE_INVALID');
    assert.equal(signed.signature.state, 'unverified');
  });

  it('detects a build replaced after signing', () => {
    const sigEntry = rawSignatureEntry(encodeBundle(sampleManifest(), { privateKey: priv }));
    const { newBuild } = sampleManifest();
    const evil = Buffer.from(newBuild);
    evil[evil.length - 1] ^= 0xff;
    expectCode(
      () =>
        decodeBundle(craft({ newBuild: evil, extra: [{ name: 'signature', data: sigEntry }] }), {
          publicKey: pub,
        }),
      'BUNDLE_SIGNATURE_INVALID',
    );
  });

  it('refuses a malformed signature entry', () => {
    expectCode(
      () => decodeBundle(craft({ extra: [{ name: 'signature', data: '{"scheme":"nope"}' }] })),
      'BUNDLE_SIGNATURE_MALFORMED',
    );
  });

  it('refuses keys that are not Ed25519', () => {
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 });
    expectCode(
      () => loadPrivateKey(rsa.privateKey.export({ type: 'pkcs8', format: 'pem' })),
      'BUNDLE_KEY_INVALID',
      /rsa/,
    );
    expectCode(() => loadPublicKey('not a key'), 'BUNDLE_KEY_INVALID');
    // A public key given to sign with says so, and where it belongs.
    const ed = generateKeyPairSync('ed25519');
    expectCode(
      () => loadPrivateKey(ed.publicKey.export({ type: 'spki', format: 'pem' })),
      'BUNDLE_KEY_INVALID',
      /is a public key: signing needs the private key/,
    );
  });
});

/** The signature entry of an encoded bundle, to graft onto a crafted one. */
function rawSignatureEntry(bytes: Buffer): Buffer {
  const tar = gunzipSync(bytes);
  let off = 0;
  while (off < tar.length) {
    const name = tar
      .subarray(off, off + 100)
      .toString()
      .replace(/\0.*/s, '');
    const size = parseInt(tar.subarray(off + 124, off + 136).toString(), 8);
    if (name === 'signature') return tar.subarray(off + 512, off + 512 + size);
    off += 512 + Math.ceil(size / 512) * 512;
  }
  throw new Error('no signature entry');
}

describe('patches: rejected bundles', () => {
  it('not gzip', () =>
    expectCode(() => decodeBundle(Buffer.from('PK\x03\x04 this is a zip, not a bundle')), 'BUNDLE_NOT_GZIP'));

  it('damaged gzip stream', () => {
    const good = craft();
    expectCode(() => decodeBundle(good.subarray(0, good.length - 100)), 'BUNDLE_CORRUPT');
  });

  it('gzip bomb: gunzip output beyond the cap', () => {
    const bomb = gz(rawTar([{ name: 'ulp.json', data: Buffer.alloc(8 << 20) }]));
    assert.ok(bomb.length < 64 << 10);
    expectCode(() => decodeBundle(bomb, { limits: { archiveBytes: 1 << 20 } }), 'BUNDLE_TOO_LARGE');
  });

  it('compressed file beyond the cap', () =>
    expectCode(() => decodeBundle(craft(), { limits: { fileBytes: 100 } }), 'BUNDLE_TOO_LARGE'));

  it('entry beyond its cap', () =>
    expectCode(
      () => decodeBundle(craft(), { limits: { buildBytes: 1000 } }),
      'BUNDLE_ENTRY_TOO_LARGE',
      /new\.so/,
    ));

  it('symbolic link', () =>
    expectCode(
      () =>
        decodeBundle(
          craft({ extra: [{ name: 'signature', type: 'SymbolicLink', linkpath: '/etc/shadow' }] }),
        ),
      'BUNDLE_LINK_ENTRY',
    ));

  it('hard link', () =>
    expectCode(
      () => decodeBundle(craft({ extra: [{ name: 'signature', type: 'Link', linkpath: 'ulp.json' }] })),
      'BUNDLE_LINK_ENTRY',
    ));

  it('directory', () =>
    expectCode(
      () => decodeBundle(craft({ extra: [{ name: 'signature', type: 'Directory' }] })),
      'BUNDLE_NOT_REGULAR_FILE',
      /directory/,
    ));

  it('character device', () =>
    expectCode(
      () => decodeBundle(craft({ extra: [{ name: 'signature', type: 'CharacterDevice' }] })),
      'BUNDLE_NOT_REGULAR_FILE',
    ));

  it('FIFO', () =>
    expectCode(
      () => decodeBundle(craft({ extra: [{ name: 'signature', type: 'FIFO' }] })),
      'BUNDLE_NOT_REGULAR_FILE',
    ));

  it('pax extended header (could rename the next entry)', () =>
    expectCode(
      () =>
        decodeBundle(
          craft({
            extra: [{ name: 'PaxHeader', type: 'ExtendedHeader', data: '30 path=../../etc/cron.d/x\n' }],
          }),
        ),
      'BUNDLE_NOT_REGULAR_FILE',
      /pax/,
    ));

  it('absolute path', () =>
    expectCode(
      () => decodeBundle(craft({ extra: [{ name: '/etc/passwd', data: 'x' }] })),
      'BUNDLE_UNSAFE_PATH',
    ));

  it('parent-relative path', () =>
    expectCode(
      () => decodeBundle(craft({ extra: [{ name: '../../.bashrc', data: 'x' }] })),
      'BUNDLE_UNSAFE_PATH',
    ));

  it('parent-relative path hidden in the middle', () =>
    expectCode(
      () => decodeBundle(craft({ extra: [{ name: 'x/../ulp.json', data: 'x' }] })),
      'BUNDLE_UNSAFE_PATH',
    ));

  it('name outside the allow-list', () =>
    expectCode(
      () => decodeBundle(craft({ extra: [{ name: 'install.sh', data: 'rm -rf /' }] })),
      'BUNDLE_UNEXPECTED_ENTRY',
      /install\.sh/,
    ));

  it('duplicate entry', () =>
    expectCode(
      () => decodeBundle(craft({ extra: [{ name: 'old.so', data: 'second copy' }] })),
      'BUNDLE_DUPLICATE_ENTRY',
    ));

  it('missing build', () =>
    expectCode(() => decodeBundle(craft({ omit: ['old.so'] })), 'BUNDLE_MISSING_ENTRY', /old\.so/));

  it('missing manifest', () =>
    expectCode(() => decodeBundle(craft({ omit: ['ulp.json'] })), 'BUNDLE_MISSING_ENTRY', /ulp\.json/));

  it('bad header checksum', () =>
    expectCode(
      () => decodeBundle(gz(rawTar([{ name: 'ulp.json', data: '{}', badChecksum: true }]))),
      'BUNDLE_CORRUPT',
    ));

  it('tar without end-of-archive marker', () =>
    expectCode(
      () => decodeBundle(gz(rawTar([{ name: 'ulp.json', data: '{}' }], { end: false }))),
      'BUNDLE_CORRUPT',
      /end-of-archive/,
    ));

  it('data after the end-of-archive marker', () =>
    expectCode(
      () =>
        decodeBundle(
          gz(
            Buffer.concat([
              rawTar([{ name: 'ulp.json', data: '{}' }]),
              rawTar([{ name: 'evil', data: 'x' }]),
            ]),
          ),
        ),
      'BUNDLE_CORRUPT',
      /after its end/,
    ));

  it('manifest that is not JSON', () =>
    expectCode(() => decodeBundle(craft({ manifest: Buffer.from('{not json') })), 'BUNDLE_MANIFEST_INVALID'));

  it('manifest that violates the schema', () => {
    const m = structuredClone(sampleManifest().manifest) as unknown as Record<string, unknown>;
    delete m.soname;
    expectCode(() => decodeBundle(craft({ manifest: m })), 'BUNDLE_MANIFEST_INVALID', /soname/);
  });

  it('unknown major format version, named in the message', () => {
    const m = { ...sampleManifest().manifest, format: '3.0.0' };
    expectCode(() => decodeBundle(craft({ manifest: m })), 'BUNDLE_FORMAT_UNSUPPORTED', /3\.0\.0/);
  });

  it('conditions (LAYOUT_STACK_CONFINED) are read under format 2 and refused under format 1, which ignores them', () => {
    const withCondition = (format: string) => {
      const m = structuredClone(sampleManifest().manifest);
      m.format = format;
      m.forward.report.conditions = [
        { kind: 'inactive', functions: [{ name: 'run', start: '0x1000', end: '0x1100' }], reason: 'test' },
      ];
      return m;
    };
    const read = decodeBundle(craft({ manifest: withCondition('2.0.0') })).manifest;
    assert.equal(read.forward.report.conditions?.[0]?.functions[0]?.name, 'run');
    expectCode(
      () => decodeBundle(craft({ manifest: withCondition('1.1.0') })),
      'BUNDLE_MANIFEST_INVALID',
      /conditions under format 1\.1\.0/,
    );
  });

  it('accepts a newer minor version with extra fields', () => {
    const m = { ...sampleManifest().manifest, format: '1.7.0', futureField: { x: 1 } };
    assert.equal(decodeBundle(craft({ manifest: m })).manifest.format, '1.7.0');
  });

  it('patch id that does not match the builds', () => {
    const m = { ...sampleManifest().manifest, patchId: '0'.repeat(32) };
    expectCode(() => decodeBundle(craft({ manifest: m })), 'BUNDLE_PATCH_ID_MISMATCH');
  });

  it('build whose hash differs from the manifest', () => {
    const evil = Buffer.from(sampleManifest().newBuild);
    evil[100] ^= 1;
    expectCode(() => decodeBundle(craft({ newBuild: evil })), 'BUNDLE_HASH_MISMATCH', /new\.so/);
  });

  it('build whose size differs from the manifest', () => {
    expectCode(
      () => decodeBundle(craft({ oldBuild: Buffer.concat([sampleManifest().oldBuild, Buffer.from([0])]) })),
      'BUNDLE_SIZE_MISMATCH',
      /old\.so/,
    );
  });

  it('build-id that differs from the build, with hashes and patch id made consistent', () => {
    const m = editedManifest((x) => (x.builds.new.buildId = 'ab'.repeat(20)));
    expectCode(() => decodeBundle(craft({ manifest: m })), 'BUNDLE_BUILD_ID_MISMATCH');
  });

  it('build that is not a shared object, with hashes made consistent', () => {
    const junk = Buffer.from('#!/bin/sh\necho not a library\n');
    const m = editedManifest((x) => {
      x.builds.old.size = junk.length;
      x.builds.old.sha256 = createHash('sha256').update(junk).digest('hex');
    });
    expectCode(() => decodeBundle(craft({ manifest: m, oldBuild: junk })), 'BUNDLE_BUILD_INVALID');
  });

  it('a forward patch that its own report calls incompatible', () => {
    const m = editedManifest((x) => {
      x.forward.verdict = 'incompatible';
      x.forward.report.verdict = 'incompatible';
    });
    expectCode(() => decodeBundle(craft({ manifest: m })), 'BUNDLE_INCOMPATIBLE');
  });
});

describe('patches: files', () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'ulp-patches-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('reads a bundle file and refuses a missing one', () => {
    const p = join(dir, 'fix.ulp');
    writeFileAtomic(p, encodeBundle(sampleManifest()));
    assert.equal(readBundleFile(p).manifest.soname, 'libpdemo.so.1');
    expectCode(() => readBundleFile(join(dir, 'missing.ulp')), 'BUNDLE_READ_FAILED');
    expectCode(() => readBundleFile(dir), 'BUNDLE_READ_FAILED');
  });

  it('checks the file size before reading it', () => {
    const p = join(dir, 'fix.ulp');
    writeFileAtomic(p, encodeBundle(sampleManifest()));
    expectCode(() => readBundleFile(p, { limits: { fileBytes: 10 } }), 'BUNDLE_TOO_LARGE');
  });

  it('leaves neither the output nor a temporary file behind when writing fails', function () {
    if (process.getuid?.() === 0) {
      // root ignores directory permissions: make the rename fail instead (destination is a non-empty directory).
      const target = join(dir, 'fix.ulp');
      mkdirSync(target);
      writeFileSync(join(target, 'keep'), 'x');
      expectCode(() => writeFileAtomic(target, Buffer.from('data')), 'BUNDLE_WRITE_FAILED');
      assert.deepEqual(readdirSync(dir), ['fix.ulp']);
      return;
    }
    const ro = join(dir, 'ro');
    mkdirSync(ro);
    chmodSync(ro, 0o555);
    expectCode(() => writeFileAtomic(join(ro, 'fix.ulp'), Buffer.from('data')), 'BUNDLE_WRITE_FAILED');
    assert.deepEqual(readdirSync(ro), []);
  });

  it('fails in a folder that does not exist', () => {
    expectCode(() => writeFileAtomic(join(dir, 'nope', 'fix.ulp'), Buffer.from('x')), 'BUNDLE_WRITE_FAILED');
    assert.ok(!existsSync(join(dir, 'nope')));
  });
});

describe('patches: streaming encoder', () => {
  it('writes exactly the bytes of encodeBundle, signed or not', async () => {
    const { manifest, oldBuild, newBuild } = sampleManifest();
    const keys = generateKeyPairSync('ed25519');
    const privateKey = loadPrivateKey(keys.privateKey.export({ type: 'pkcs8', format: 'pem' }));
    const created = new Date(manifest.createdAt);
    assert.ok(
      (await new BundleEncoder(oldBuild, newBuild, created).finish(manifest)).equals(
        encodeBundle({ manifest, oldBuild, newBuild }),
      ),
    );
    assert.ok(
      (await new BundleEncoder(oldBuild, newBuild, created).finish(manifest, { privateKey })).equals(
        encodeBundle({ manifest, oldBuild, newBuild }, { privateKey }),
      ),
    );
  });
});
