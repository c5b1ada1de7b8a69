/**
 * packer/code/datarefs.ts's reachingWindows, the test that lets the map
 * account for bytes it did not decode: every 4-byte window that, read as
 * the disp32 of an instruction ending after it or after a trailing
 * immediate of 1, 2 or 4 bytes, points into the region. Checked against the
 * definition, window by window, on regions of every small size (where the
 * shortcut for regions of 2 bytes or more does not apply) and on windows
 * built to land just outside and just inside a region's ends.
 */
import assert from 'node:assert/strict';
import { reachingWindows } from '../../../../packer/code/datarefs.js';

/** The definition: window by window, trailing size by trailing size. */
function byDefinition(area: Buffer, areaStart: number, start: number, end: number, rs: number, re: number) {
  const out: number[] = [];
  for (let v = Math.max(areaStart, start - 3); v <= Math.min(areaStart + area.length - 4, end - 1); v++) {
    const disp = area.readInt32LE(v - areaStart);
    if ([0, 1, 2, 4].some((t) => v + 4 + t + disp >= rs && v + 4 + t + disp < re)) out.push(v);
  }
  return out;
}

describe('reachingWindows (datarefs.ts)', () => {
  const AREA = 0x10000;

  it('finds the windows the definition finds, for regions of 1 to 6 bytes and of pages', () => {
    for (const size of [1, 2, 3, 4, 5, 6, 0x1000]) {
      const rs = 0x40000;
      const re = rs + size;
      // Each window's displacement aimed at every position from 8 bytes before the region to 8 past it.
      const area = Buffer.alloc(4 * 48);
      const windows: number[] = [];
      for (let k = 0; k < 48; k++) {
        const v = AREA + 4 * k;
        const aim = k < 24 ? rs - 8 + k : re - 16 + k;
        area.writeInt32LE(aim - (v + 4), 4 * k);
        windows.push(v);
      }
      const got = reachingWindows(area, AREA, AREA, AREA + area.length, rs, re);
      assert.deepEqual(got, byDefinition(area, AREA, AREA, AREA + area.length, rs, re), `region of ${size}`);
      assert.ok(got.length > 0 && got.length < area.length - 3, `region of ${size}: some hit, some miss`);
    }
  });

  it('agrees with the definition on pseudo-random bytes and sub-ranges, negative displacements included', () => {
    let seed = 0x2545f491;
    const next = () => (seed = (Math.imul(seed, 0x41c64e6d) + 0x3039) >>> 0);
    const area = Buffer.alloc(0x4000);
    for (let i = 0; i < area.length; i++) area[i] = next() >>> 24;
    // Every 11th window aimed near the first region (from 0x1000 before it to 0x1000 past it), so that
    // windows hit and miss around both of its ends; the overlapping windows between stay random.
    for (let i = 0; i + 4 <= area.length; i += 11) {
      const aim = AREA + 0x7000 + (next() % 0x3000);
      area.writeInt32LE(aim - (AREA + i + 4), i);
    }
    let hits = 0;
    for (const [rs, re] of [
      [AREA + 0x8000, AREA + 0x9000],
      [AREA - 0x3000, AREA - 0x2ffe],
      [AREA + 0x5000, AREA + 0x5001],
    ] as const) {
      for (const [start, end] of [
        [AREA, AREA + area.length],
        [AREA + 0x100, AREA + 0x180],
        [AREA + area.length - 2, AREA + area.length],
      ] as const) {
        const got = reachingWindows(area, AREA, start, end, rs, re);
        assert.deepEqual(
          got,
          byDefinition(area, AREA, start, end, rs, re),
          `[${rs.toString(16)}, ${re.toString(16)}) over [${start.toString(16)}, ${end.toString(16)})`,
        );
        hits += got.length;
      }
    }
    assert.ok(hits > 0, 'some windows hit');
  });
});
