/**
 * Which `ulp:` build memfds of /proc/PID/maps are builds and where each
 * starts (runtime/loader/build-mappings.ts), on maps as staging leaves them
 * for both ways ld lays out segments, finished and not.
 */
import assert from 'node:assert/strict';
import { parseMaps } from '../../../../runtime/maps.js';
import { buildMappings } from '../../../../runtime/loader/build-mappings.js';

const NAME = '/memfd:ulp:0123456789abcdef0123456789abcdef@fedcba9876543210:new:libx.so.1 (deleted)';
const starts = (ms: Array<{ start: bigint }>) => ms.map((m) => m.start.toString(16));

describe('builds and unfinished stagings in /proc/PID/maps', () => {
  it('a finished -z separate-code build: its offset-0 mapping is its base', () => {
    const maps = parseMaps(`
7f0000000000-7f0000001000 r--p 00000000 00:01 70 ${NAME}
7f0000001000-7f0000002000 r-xp 00001000 00:01 70 ${NAME}
7f0000002000-7f0000003000 r--p 00002000 00:01 70 ${NAME}
7f0000003000-7f0000004000 r--p 00002000 00:01 70 ${NAME}
7f0000004000-7f0000005000 rw-s 00000000 00:01 71 /memfd:ulp:data:libx.so.1 (deleted)
`);
    const r = buildMappings(maps);
    assert.deepEqual(starts(r.builds), ['7f0000000000']);
    assert.deepEqual(r.abandoned, []);
  });

  it('a finished -z noseparate-code build whose writable page maps offset 0 again: the lowest is the base', () => {
    const maps = parseMaps(`
7f0000000000-7f0000001000 r-xp 00000000 00:01 70 ${NAME}
7f0000001000-7f0000002000 r--p 00000000 00:01 70 ${NAME}
7f0000002000-7f0000003000 rw-s 00000000 00:01 71 /memfd:ulp:data:libx.so.1 (deleted)
`);
    assert.deepEqual(starts(buildMappings(maps).builds), ['7f0000000000']);
  });

  it('a staging with its marker is no build, wherever the marker lies; it is reported at its image base', () => {
    for (const marker of ['7effff000000-7effff001000', '7f0000010000-7f0000011000']) {
      const maps = parseMaps(
        [
          `7f0000000000-7f0000001000 r-xp 00000000 00:01 70 ${NAME}`,
          `7f0000001000-7f0000002000 rw-p 00000000 00:01 70 ${NAME}`,
          `${marker} ---p 00000000 00:01 70 ${NAME}`,
        ]
          .sort()
          .join('\n'),
      );
      const r = buildMappings(maps);
      assert.deepEqual(r.builds, [], marker);
      assert.deepEqual(starts(r.abandoned), ['7f0000000000'], marker);
    }
  });

  it('a staging stopped right after its marker is reported at the marker', () => {
    const r = buildMappings(parseMaps(`7effff000000-7effff001000 ---p 00000000 00:01 70 ${NAME}`));
    assert.deepEqual(starts(r.abandoned), ['7effff000000']);
    assert.deepEqual(r.builds, []);
  });

  it('an earlier version kept the header page itself inaccessible: still unfinished', () => {
    const maps = parseMaps(`
7f0000000000-7f0000001000 ---p 00000000 00:01 70 ${NAME}
7f0000001000-7f0000002000 r-xp 00001000 00:01 70 ${NAME}
`);
    const r = buildMappings(maps);
    assert.deepEqual(starts(r.abandoned), ['7f0000000000']);
    assert.deepEqual(r.builds, []);
  });

  it('tells builds apart by file, and leaves other memfds and files alone', () => {
    const other = NAME.replace('0123456789abcdef0123', 'aaaaaaaaaaaaaaaaaaaa');
    const maps = parseMaps(`
7f0000000000-7f0000001000 r-xp 00000000 00:01 70 ${NAME}
7f0000010000-7f0000011000 r-xp 00000000 00:01 80 ${other}
7f0000020000-7f0000021000 ---p 00000000 00:01 81 /memfd:ulp:redirects:libx.so.1 (deleted)
7f0000030000-7f0000031000 r-xp 00000000 fe:01 90 /usr/lib/libx.so.1
`);
    const r = buildMappings(maps);
    assert.deepEqual(starts(r.builds), ['7f0000000000', '7f0000010000']);
    assert.deepEqual(r.abandoned, []);
  });
});
