/**
 * `--all`'s quick scan of /proc/PID/maps (runtime/maps.ts headerMappings):
 * the same mappings, in the same order, as the full parse filtered the way
 * the search filtered it before (file offset 0, readable, backed by a file).
 */
import assert from 'node:assert/strict';
import { headerMappings, parseMaps } from '../../../runtime/maps.js';

const TEXT = `5581a2c00000-5581a2c01000 r--p 00000000 08:01 1312 /usr/bin/fleet main
5581a2c01000-5581a2c02000 r-xp 00001000 08:01 1312 /usr/bin/fleet main
5581a3e4e000-5581a3e6f000 rw-p 00000000 00:00 0                          [heap]
7f0000000000-7f0000001000 r--p 00000000 00:01 70 /memfd:ulp:0123456789abcdef0123456789abcdef@fedcba9876543210:new:libx.so.1 (deleted)
7f0000001000-7f0000002000 ---p 00000000 00:01 70 /memfd:ulp:0123456789abcdef0123456789abcdef@fedcba9876543210:new:libx.so.1 (deleted)
7f0000004000-7f0000005000 rw-s 00000000 00:01 71 /memfd:ulp:data:libx.so.1 (deleted)
7f1234500000-7f1234528000 r--p 00000000 fd:02 2621451                    /usr/lib/x86_64-linux-gnu/libc.so.6
7f1234528000-7f12346bd000 r-xp 00028000 fd:02 2621451                    /usr/lib/x86_64-linux-gnu/libc.so.6
7f1234715000-7f1234719000 r--p 001fe000 fd:02 2621451                    /usr/lib/x86_64-linux-gnu/libc.so.6
7f1234800000-7f1234801000 r--s 00000000 103:05 99 /var/cache/a file with spaces
7f1234900000-7f1234901000 -w-p 00000000 08:01 1313 /tmp/unreadable
7fff5b1c2000-7fff5b1e3000 rw-p 00000000 00:00 0                          [stack]
7fff5b1f9000-7fff5b1fb000 r-xp 00000000 00:00 0                          [vdso]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0                  [vsyscall]
`;

describe('--all: the quick scan of /proc/PID/maps', () => {
  it('finds what the full parse finds: offset 0, readable, file-backed, with device:inode and start', () => {
    const expected = parseMaps(TEXT)
      .filter((m) => m.offset === 0n && m.inode !== 0 && m.read)
      .map((m) => ({ key: `${m.dev}:${m.inode}`, start: m.start }));
    assert.deepEqual(headerMappings(TEXT), expected);
    assert.deepEqual(
      headerMappings(TEXT).map((m) => m.key),
      ['08:01:1312', '00:01:70', '00:01:71', 'fd:02:2621451', '103:05:99'],
    );
  });

  it('reads nothing from empty text, a text without a final newline, or lines it cannot read', () => {
    assert.deepEqual(headerMappings(''), []);
    assert.deepEqual(headerMappings('7f00-7f01 r--p 00000000 08:01 5 /lib/x.so'), [
      { key: '08:01:5', start: 0x7f00n },
    ]);
    assert.deepEqual(headerMappings('garbage\n\n7f00 r--p\n'), []);
  });
});
