/**
 * runtime/loader/active-functions.ts frameInside: which watched function a
 * stopped thread is inside, from its call chain, and from a scan of its
 * stack where the walk could not finish.
 */
import assert from 'node:assert/strict';
import { frameInside, type WatchedFunction } from '../../../../runtime/loader/active-functions.js';

const creator: WatchedFunction = { start: 0x1000n, end: 0x1100n, label: 'creator' };
const words = (...v: bigint[]) => {
  const b = Buffer.alloc(v.length * 8);
  v.forEach((x, i) => b.writeBigUInt64LE(x, i * 8));
  return b;
};

describe('frameInside', () => {
  it('the stopped pc inside the function', () => {
    const hit = frameInside({ pcs: [0x1010n], complete: true, sp: 0x7000n }, 0x7000n, words(), [creator]);
    assert.deepEqual(hit, { fn: creator, how: 'pc' });
  });

  it('a return address into it on the call chain; one just past its end (a call as its last instruction) too', () => {
    const chain = { pcs: [0x5000n, 0x6000n, 0x1040n], complete: true, sp: 0x7000n };
    assert.equal(frameInside(chain, 0x7000n, words(), [creator])?.how, 'frame');
    const last = { pcs: [0x5000n, 0x1100n], complete: true, sp: 0x7000n };
    assert.equal(frameInside(last, 0x7000n, words(), [creator])?.fn, creator);
  });

  it('a complete chain outside it: not inside, whatever stale words the stack holds', () => {
    const chain = { pcs: [0x5000n, 0x6000n], complete: true, sp: 0x7010n };
    assert.equal(frameInside(chain, 0x7000n, words(0n, 0n, 0x1050n), [creator]), undefined);
  });

  it('an unfinished walk: a word past where it stopped that points into it counts', () => {
    const chain = { pcs: [0x5000n], complete: false, sp: 0x7008n };
    assert.equal(frameInside(chain, 0x7000n, words(0x1050n, 0n, 0x1050n), [creator])?.how, 'scan');
    // Words below where the walk stopped were walked already.
    assert.equal(frameInside(chain, 0x7000n, words(0x1050n, 0n, 0n), [creator]), undefined);
  });
});
