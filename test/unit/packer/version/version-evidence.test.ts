/** The pure parts of downgrade detection (packer/version/evidence.ts): pairing version strings and paths. */
import assert from 'node:assert/strict';
import type { ElfObject } from '../../../../elf/index.js';
import {
  pathEvidence,
  splitVersion,
  stringEvidence,
  versionStrings,
} from '../../../../packer/version/evidence.js';

describe('version evidence', () => {
  it('finds the first dotted version and the text before it', () => {
    assert.deepEqual(splitVersion('OpenSSL 3.0.20 7 Apr 2026'), { prefix: 'OpenSSL ', version: '3.0.20' });
    assert.deepEqual(splitVersion('expat_2.5.0'), { prefix: 'expat_', version: '2.5.0' });
    assert.deepEqual(splitVersion('libevent 2.1.12-stable'), {
      prefix: 'libevent ',
      version: '2.1.12-stable',
    });
    assert.deepEqual(splitVersion('ssl-3.0.19-1~deb12u2'), { prefix: 'ssl-', version: '3.0.19-1~deb12u2' });
    assert.equal(splitVersion('no version 42 here'), undefined);
    assert.equal(splitVersion('libfoo.so.1.v2'), undefined, 'a SONAME suffix with a letter is not a version');
    assert.equal(splitVersion('1.2.840.113549.1.1.1'), undefined, 'an OID is not a version');
  });

  it('pairs strings only one build has by the text before the version, and only when the pairing is unambiguous', () => {
    const old = new Set(['OpenSSL 3.0.20 7 Apr 2026', 'common 1.2.3', 'x 1.0', 'x 1.1', 'OPENSSL_3.0.3']);
    const neu = new Set([
      'OpenSSL 3.0.19 27 Jan 2026',
      'common 1.2.3',
      'x 0.9',
      'OPENSSL_3.0.3',
      'OPENSSL_3.0.9',
    ]);
    const ev = stringEvidence(old, neu);
    assert.deepEqual(
      ev,
      [
        {
          source: 'version-string',
          what: 'OpenSSL 3.0.20 7 Apr 2026',
          old: '3.0.20',
          new: '3.0.19',
          order: 'older',
        },
      ],
      'x has two candidates on one side; OPENSSL_3.0.9 has no partner',
    );
    assert.deepEqual(
      stringEvidence(neu, old).map((e) => e.order),
      ['newer'],
    );
    // Bare numbers name nothing: an OID-like or numeric string added and another removed are not a version change.
    assert.deepEqual(stringEvidence(new Set(['3.0.20', '2.5.4.3']), new Set(['3.0.19', '2.5.29.1'])), []);
  });

  it('reads every NUL-terminated printable string with a version token from read-only segments, and only those', () => {
    // One read-only segment (flags R) and one executable one (R+X), as the segments of a file.
    const ro =
      'OpenSSL 3.0.20 7 Apr 2026\0a.1\0v9..2\0x 1.2\0no 1. 2 here\0..3.4\0short\0' +
      '1.2.840.113549.1.1.1\0' +
      'tail 9.8';
    const code = 'code 4.5.6\0';
    const file = Buffer.from(ro + code, 'latin1');
    const obj = {
      loadSegments: [
        { flags: 4, offset: 0n, filesz: BigInt(ro.length) },
        { flags: 5, offset: BigInt(ro.length), filesz: BigInt(code.length) },
      ],
    } as unknown as ElfObject;
    const found = versionStrings(obj, file);
    // Every string the full reading would keep (each printable run, tested with splitVersion) and nothing else.
    const expected = ro
      .split('\0')
      .slice(0, -1)
      .filter((t) => t.length >= 4 && splitVersion(t) !== undefined);
    assert.deepEqual([...found].sort(), expected.sort());
    assert.deepEqual(
      [...found].sort(),
      ['OpenSSL 3.0.20 7 Apr 2026', 'x 1.2'],
      'no version in "v9..2", "no 1. 2 here", "..3.4", an OID, a string without its NUL, or executable bytes',
    );
  });

  it('compares path components that differ only in their version, lined up from the file name', () => {
    assert.deepEqual(
      pathEvidence('/r/ssl-3.0.20-1~deb12u2/libssl.so.3', '/r/ssl-3.0.19-1~deb12u2/libssl.so.3').map((e) => [
        e.old,
        e.new,
        e.order,
      ]),
      [['3.0.20-1~deb12u2', '3.0.19-1~deb12u2', 'older']],
    );
    assert.deepEqual(pathEvidence('/a/old/libssl.so.3', '/a/new/libssl.so.3'), []);
    assert.deepEqual(
      pathEvidence('/x/libfoo-1.2/lib.so', '/x/libbar-1.3/lib.so'),
      [],
      'different names before the version are not one thing',
    );
    assert.deepEqual(
      pathEvidence('/x/e-2.1.12-stable-8/l.so', '/x/e-2.1.12-stable-8+deb12u1/l.so').map((e) => e.order),
      ['newer'],
    );
  });
});
