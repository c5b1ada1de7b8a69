/** The pure parts of reading a bundle's head (patches/bundle-head.ts, gzip.ts): the manifest from the start of the stream, and its fields. */
import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import { hasCode } from '../../../common/errors.js';
import { gzipMemberSync, inflateFirstMember } from '../../../patches/gzip.js';
import { manifestFromTarStart, parseBundleHead } from '../../../patches/bundle-head.js';
import { bundleStoreDir, DEFAULT_BUNDLES_DIR } from '../../../patches/store.js';
import { tarEntry, TAR_END } from '../../../patches/tar.js';

const OLD = '5d'.repeat(20);
const NEW = '57'.repeat(20);
const manifest = (extra: Record<string, unknown> = {}) =>
  Buffer.from(
    JSON.stringify({
      format: '1.1.0',
      soname: 'libx.so.1',
      builds: { old: { entry: 'old.so', buildId: OLD }, new: { entry: 'new.so', buildId: NEW } },
      ...extra,
    }),
  );
const mtime = new Date('2026-01-01T00:00:00Z');
const code = (c: string) => (e: unknown) => hasCode(e, c as never);

describe('bundle heads', () => {
  it('the store is $ULP_BUNDLES_DIR, else /var/lib/ulp/bundles', () => {
    assert.equal(bundleStoreDir({}), DEFAULT_BUNDLES_DIR);
    assert.equal(bundleStoreDir({ ULP_BUNDLES_DIR: '' }), '/var/lib/ulp/bundles');
    assert.equal(bundleStoreDir({ ULP_BUNDLES_DIR: '/srv/b' }), '/srv/b');
  });

  it('reads the update a manifest describes', () => {
    assert.deepEqual(parseBundleHead('/s/a.ulp', manifest()), {
      path: '/s/a.ulp',
      soname: 'libx.so.1',
      oldBuildId: OLD,
      newBuildId: NEW,
      downgrade: false,
    });
    assert.equal(parseBundleHead('/s/a.ulp', manifest({ downgrade: true })).downgrade, true);
    assert.equal(parseBundleHead('/s/a.ulp', manifest({ format: '1.0.0' })).oldBuildId, OLD);
  });

  it('refuses manifests it cannot read with the reader codes', () => {
    assert.throws(() => parseBundleHead('p', Buffer.from('{')), code('BUNDLE_MANIFEST_INVALID'));
    assert.throws(() => parseBundleHead('p', Buffer.from('[]')), code('BUNDLE_MANIFEST_INVALID'));
    assert.throws(() => parseBundleHead('p', manifest({ format: 'one' })), code('BUNDLE_MANIFEST_INVALID'));
    assert.throws(
      () => parseBundleHead('p', manifest({ format: '2.0.0' })),
      code('BUNDLE_FORMAT_UNSUPPORTED'),
    );
    assert.throws(() => parseBundleHead('p', manifest({ soname: 7 })), code('BUNDLE_MANIFEST_INVALID'));
    assert.throws(
      () => parseBundleHead('p', manifest({ builds: { old: { buildId: 'XYZ' }, new: { buildId: NEW } } })),
      code('BUNDLE_MANIFEST_INVALID'),
    );
    assert.throws(
      () => parseBundleHead('p', manifest({ builds: { old: {} } })),
      code('BUNDLE_MANIFEST_INVALID'),
    );
  });

  it('finds the manifest at the start of the tar stream, or asks for more', () => {
    const m = manifest();
    const tar = Buffer.concat([tarEntry('ulp.json', m, mtime), tarEntry('new.so', Buffer.alloc(10), mtime)]);
    assert.deepEqual(manifestFromTarStart(tar), m);
    assert.equal(manifestFromTarStart(tar.subarray(0, 511)), undefined);
    assert.equal(manifestFromTarStart(tar.subarray(0, 512 + m.length - 1)), undefined);
    assert.deepEqual(manifestFromTarStart(tar.subarray(0, 512 + m.length)), m);
    assert.throws(() => manifestFromTarStart(tar, m.length - 1), code('BUNDLE_ENTRY_TOO_LARGE'));
    const other = tarEntry('new.so', m, mtime);
    assert.throws(() => manifestFromTarStart(other), code('BUNDLE_MISSING_ENTRY'));
    const bad = Buffer.from(tar);
    bad[0] ^= 1;
    assert.throws(() => manifestFromTarStart(bad), code('BUNDLE_CORRUPT'));
    assert.throws(() => manifestFromTarStart(Buffer.alloc(1024)), code('BUNDLE_CORRUPT'));
  });

  it('inflates the first gzip member only, as far as the prefix reaches', () => {
    const head = tarEntry('ulp.json', manifest(), mtime);
    const build = Buffer.alloc(4 << 20); // compresses to a few KB, inflates to 4 MB
    const file = Buffer.concat([
      gzipMemberSync(head),
      gzipMemberSync(tarEntry('new.so', build, mtime)),
      gzipMemberSync(TAR_END),
    ]);
    assert.deepEqual(
      inflateFirstMember(file, 64 << 10),
      head,
      'the builds after the manifest are not inflated',
    );
    const partial = inflateFirstMember(file.subarray(0, 40), 64 << 10)!;
    assert.ok(partial.length < head.length && head.subarray(0, partial.length).equals(partial));
    assert.deepEqual(
      inflateFirstMember(file.subarray(0, 5), 64 << 10),
      Buffer.alloc(0),
      'inside the gzip header',
    );
    // A header with a file name (gzip(1) writes one) is skipped like the plain one.
    const named = gzipSync(head);
    named[3] = 0x08;
    const withName = Buffer.concat([named.subarray(0, 10), Buffer.from('ulp.tar\0'), named.subarray(10)]);
    assert.deepEqual(inflateFirstMember(withName, 64 << 10), head);
    // One member for everything (recompressed by hand): too large for a manifest, the caller reads it all.
    assert.equal(inflateFirstMember(gzipSync(Buffer.concat([head, build])), 64 << 10), undefined);
    assert.throws(() => inflateFirstMember(Buffer.from('not gzip at all'), 1024), code('BUNDLE_NOT_GZIP'));
    const damaged = Buffer.from(file);
    damaged.fill(0xff, 10, 30);
    assert.throws(() => inflateFirstMember(damaged, 64 << 10), code('BUNDLE_CORRUPT'));
  });
});
