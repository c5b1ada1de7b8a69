/**
 * Where a switch writes its redirect journal and which journal mappings go
 * after it (runtime/loader/redirect-journal.ts journalPlacement): the newest
 * journal is never written over, a mapping that does not hold it is reused
 * when it is large enough, and only a third one is dropped.
 */
import assert from 'node:assert/strict';
import { parseMaps } from '../../../../runtime/maps.js';
import { journalMappings, journalPlacement } from '../../../../runtime/loader/redirect-journal.js';

const J = '/memfd:ulp:redirects:libx.so.1 (deleted)';
const maps = parseMaps(`
7f0000000000-7f0000001000 r--p 00000000 00:01 80 ${J}
7f0000010000-7f0000011000 r--p 00000000 00:01 80 ${J}
7f0000020000-7f0000022000 r--p 00000000 00:01 81 ${J}
7f0000030000-7f0000031000 r--p 00000000 00:01 82 /memfd:ulp:redirects:liby.so.1 (deleted)
`);
const all = journalMappings(maps, 'libx.so.1');
const at = (m: { start: bigint } | undefined) => m?.start.toString(16);

describe('redirect journal placement', () => {
  it('finds the library’s journal mappings only', () => {
    assert.deepEqual(all.map(at), ['7f0000000000', '7f0000010000', '7f0000020000']);
  });

  it('the first switch (no journal mapped) makes a new mapping with a spare beside it', () => {
    assert.deepEqual(journalPlacement({ mappings: [], current: undefined }, 100), {
      reuse: undefined,
      drop: [],
      spare: true,
    });
  });

  it('the spare is written over; the newest journal stays, and nothing is dropped', () => {
    const [a, b] = all;
    const p = journalPlacement({ mappings: [a!, b!], current: a }, 100);
    assert.equal(at(p.reuse), '7f0000010000');
    assert.deepEqual(p.drop, []);
    assert.equal(p.spare, false);
    // And the switch after it writes over the mapping that held the newest journal before.
    assert.equal(at(journalPlacement({ mappings: [a!, b!], current: b }, 100).reuse), '7f0000000000');
  });

  it('never reuses the mapping holding the newest journal, even when it is the only one large enough', () => {
    const [a, b, c] = all;
    const p = journalPlacement({ mappings: [a!, b!, c!], current: c }, 6000);
    assert.equal(p.reuse, undefined, 'the 4 KiB mappings are too small for 6000 bytes');
    assert.deepEqual(p.drop.map(at), ['7f0000000000', '7f0000010000'], 'the newest becomes the spare');
    assert.equal(p.spare, false);
  });

  it('a journal too large for the spare gets a new mapping; the newest is kept as the next spare', () => {
    const [a, b] = all;
    const p = journalPlacement({ mappings: [a!, b!], current: a }, 5000);
    assert.equal(p.reuse, undefined);
    assert.deepEqual(p.drop.map(at), ['7f0000010000']);
  });

  it('mappings without a valid journal (a switch that failed): one is reused, the others dropped', () => {
    const [a, b, c] = all;
    const p = journalPlacement({ mappings: [a!, b!, c!], current: undefined }, 100);
    assert.equal(at(p.reuse), '7f0000000000');
    assert.deepEqual(p.drop.map(at), ['7f0000010000', '7f0000020000']);
    assert.equal(p.spare, false);
  });
});
