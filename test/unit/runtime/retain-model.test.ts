/**
 * The pure parts of moving a patched library's old code onto a memfd
 * (runtime/retain.ts): which mappings move, the memfd's name, and that
 * --outdated still ties the copy to its deleted file. The live move is
 * tested on real processes by test/system/trigger/upgrade.test.ts.
 */
import assert from 'node:assert/strict';
import { parseMaps } from '../../../runtime/maps.js';
import { mappingsToRetain } from '../../../runtime/retain.js';
import { retainedFileKey, retainedMemfdName } from '../../../runtime/memfd-names.js';
import { mappedCodeFiles } from '../../../trigger/outdated-model.js';

const BEFORE = parseMaps(`
7f0000000000-7f0000001000 r--p 00000000 fe:01 200 /usr/lib/libx.so.1 (deleted)
7f0000001000-7f0000003000 r-xp 00001000 fe:01 200 /usr/lib/libx.so.1 (deleted)
7f0000003000-7f0000004000 r--p 00003000 fe:01 200 /usr/lib/libx.so.1 (deleted)
7f0000004000-7f0000005000 rw-p 00004000 fe:01 200 /usr/lib/libx.so.1 (deleted)
7f0000010000-7f0000011000 r-xp 00001000 fe:01 200 /usr/lib/libx.so.1 (deleted)
7f0000020000-7f0000021000 r-xp 00001000 fe:01 201 /usr/lib/liby.so.1
`);

describe('retaining the old build on a memfd: pure part', () => {
  it("moves only the file's private executable mappings inside the build's span", () => {
    const moved = mappingsToRetain(
      BEFORE,
      { dev: 'fe:01', inode: 200 },
      { start: 0x7f0000000000n, end: 0x7f0000005000n },
    );
    assert.deepEqual(
      moved.map((m) => m.start.toString(16)),
      ['7f0000001000'],
    );
  });

  it('names the copy after the file, and reads the name back', () => {
    const name = retainedMemfdName('fe:01', 200, 'libx.so.1');
    assert.equal(name, 'ulp-retained:fe:01:200:libx.so.1');
    assert.equal(retainedFileKey(`/memfd:${name} (deleted)`), 'fe:01:200');
    assert.equal(retainedFileKey('/memfd:ulp:0123456789abcdef:new:libx.so.1 (deleted)'), undefined);
    assert.equal(retainedMemfdName('fe:01', 1, 'x'.repeat(300)).length, 249);
  });

  it('--outdated still lists the file as code once its executable mapping is a copy', () => {
    const after = parseMaps(`
7f0000000000-7f0000001000 r--p 00000000 fe:01 200 /usr/lib/libx.so.1 (deleted)
7f0000001000-7f0000003000 r-xp 00000000 00:01 77 /memfd:ulp-retained:fe:01:200:libx.so.1 (deleted)
7f0000003000-7f0000004000 r--p 00003000 fe:01 200 /usr/lib/libx.so.1 (deleted)
7f0000030000-7f0000031000 r--p 00000000 fe:01 300 /usr/share/data (deleted)
`);
    assert.deepEqual(
      mappedCodeFiles(after).map((f) => [f.path, f.deleted, f.inode]),
      [['/usr/lib/libx.so.1', true, 200]],
    );
  });

  it('a build without -z separate-code: the header page was code and moved, --outdated reads the header from the copy and the bytes from the file', () => {
    const after = parseMaps(`
7f0000000000-7f0000002000 r-xp 00000000 00:01 77 /memfd:ulp-retained:fe:01:200:libx.so.1 (deleted)
7f0000002000-7f0000003000 rw-p 00002000 fe:01 200 /usr/lib/libx.so.1 (deleted)
`);
    const [f] = mappedCodeFiles(after);
    assert.equal(f?.path, '/usr/lib/libx.so.1');
    assert.equal(f?.header.start, 0x7f0000000000n);
    assert.equal(f?.file?.start, 0x7f0000002000n);
  });
});
