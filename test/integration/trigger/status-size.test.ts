/**
 * "memory mapped by ulp" of --status (trigger/status.ts ulpMappedSize), on
 * fixed /proc/PID/maps text: every `ulp:` memfd counts, and the anonymous
 * rest of the stub and fork pages behind their named first page.
 */
import assert from 'node:assert/strict';
import { parseMaps } from '../../../runtime/index.js';
import { FORK_PAGE_SIZE } from '../../../runtime/loader/fork/layout.js';
import { STUB_SIZE } from '../../../runtime/stub/layout.js';
import { ulpMappedSize } from '../../../trigger/status.js';

const hex = (n: number) => n.toString(16);
const line = (start: number, end: number, perms: string, offset: number, path: string) =>
  `${hex(start)}-${hex(end)} ${perms} ${hex(offset).padStart(8, '0')} 00:01 1234 ${path}`;

describe('--status: memory mapped by ulp', () => {
  it('counts the stub and fork pages whole, every ulp: memfd, and nothing else', () => {
    const stub = 0x7f0000000000;
    const fork = 0x7f0000100000;
    const build = 0x7f0000200000;
    const maps = parseMaps(
      [
        line(0x400000, 0x401000, 'r-xp', 0, '/usr/bin/prog'),
        line(stub, stub + 0x1000, 'r--s', 0, '/memfd:ulp:stub (deleted)'),
        line(stub + 0x1000, stub + 0x5000, 'r-xp', 0, ''),
        line(stub + 0x5000, stub + STUB_SIZE, 'rw-p', 0, ''),
        line(fork, fork + 0x1000, 'r--s', 0, '/memfd:ulp:fork (deleted)'),
        line(fork + 0x1000, fork + 0x2000, 'r-xp', 0, ''),
        // The table merged with an unrelated anonymous mapping after it: only the page's part counts.
        line(fork + 0x2000, fork + FORK_PAGE_SIZE + 0x10000, 'rw-p', 0, ''),
        line(build, build + 0x3000, 'r-xp', 0, `/memfd:ulp:${'ab'.repeat(16)}:new:libx.so.1 (deleted)`),
        line(build + 0x3000, build + 0x4000, 'rw-s', 0, '/memfd:ulp:data:libx.so.1 (deleted)'),
        line(0x7f0000300000, 0x7f0000302000, 'r--s', 0, '/memfd:ulp:redirects:libx.so.1 (deleted)'),
        line(0x7f0000400000, 0x7f0000401000, 'r--s', 0, `/memfd:ulp:meta:${'ab'.repeat(16)} (deleted)`),
        line(0x7f0000500000, 0x7f0000501000, 'r--s', 0, '/memfd:ulp:newer-kind (deleted)'),
        line(0x7f0000600000, 0x7f0000700000, 'rw-p', 0, ''),
        line(0x7f0000800000, 0x7f0000801000, 'rw-s', 0, '/memfd:pulseaudio (deleted)'),
      ].join('\n'),
    );
    assert.equal(ulpMappedSize(maps), STUB_SIZE + FORK_PAGE_SIZE + 0x4000 + 0x2000 + 0x1000 + 0x1000);
  });

  it('a process ulp never touched has none', () => {
    assert.equal(ulpMappedSize(parseMaps(line(0x400000, 0x401000, 'r-xp', 0, '/usr/bin/prog'))), 0);
  });
});
