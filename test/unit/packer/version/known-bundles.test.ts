/** Downgrade evidence from bundles already written (packer/version/known-bundles.ts): which builds they say are later. */
import assert from 'node:assert/strict';
import { knownBundleEvidence, type KnownUpdate } from '../../../../packer/version/known-bundles.js';
import { assessVersions } from '../../../../packer/version/evidence.js';
import type { ElfObject } from '../../../../elf/index.js';

const A = 'aa'.repeat(20);
const B = 'bb'.repeat(20);
const C = 'cc'.repeat(20);
const D = 'dd'.repeat(20);
const upd = (path: string, oldBuildId: string, newBuildId: string, downgrade = false): KnownUpdate => ({
  path,
  oldBuildId,
  newBuildId,
  downgrade,
});

describe('known bundles as downgrade evidence', () => {
  it('a bundle that updates NEW to OLD makes OLD -> NEW older, and names the bundle', () => {
    const ev = knownBundleEvidence(B, A, [upd('/s/x_a_b.ulp', A, B), upd('/s/other.ulp', C, D)]);
    assert.deepEqual(ev, [
      {
        source: 'known-bundle',
        what: '/s/x_a_b.ulp updates the NEW build to the OLD one',
        old: B,
        new: A,
        order: 'older',
        bundles: ['/s/x_a_b.ulp'],
      },
    ]);
  });

  it('the same pair again is newer; unrelated bundles say nothing', () => {
    assert.deepEqual(
      knownBundleEvidence(A, B, [upd('/s/x_a_b.ulp', A, B)]).map((e) => [e.order, e.bundles]),
      [['newer', ['/s/x_a_b.ulp']]],
    );
    assert.deepEqual(knownBundleEvidence(A, C, [upd('/s/x_a_b.ulp', A, B), upd('/s/d.ulp', D, C)]), []);
    assert.deepEqual(knownBundleEvidence(A, B, []), []);
  });

  it('follows chains of updates, by the fewest bundles', () => {
    const known = [
      upd('/s/1.ulp', A, B),
      upd('/s/2.ulp', B, C),
      upd('/s/3.ulp', C, D),
      upd('/s/skip.ulp', A, C),
    ];
    const [ev, ...rest] = knownBundleEvidence(D, A, known);
    assert.equal(rest.length, 0);
    assert.equal(ev!.order, 'older');
    assert.deepEqual(ev!.bundles, ['/s/skip.ulp', '/s/3.ulp']);
    assert.match(ev!.what, /\/s\/skip\.ulp, \/s\/3\.ulp update the NEW build to the OLD one, in 2 steps/);
  });

  it('a bundle packed with --allow-downgrade counts the other way round', () => {
    // x_b_a.ulp put A (the older build) in place of B: A -> B is the upgrade it undid.
    const known = [upd('/s/x_b_a.ulp', B, A, true)];
    assert.deepEqual(
      knownBundleEvidence(A, B, known).map((e) => e.order),
      ['newer'],
    );
    assert.deepEqual(
      knownBundleEvidence(B, A, known).map((e) => e.order),
      ['older'],
    );
  });

  it('cycles end; bundles that contradict each other give both orders', () => {
    const known = [upd('/s/ab.ulp', A, B), upd('/s/ba.ulp', B, A)];
    assert.deepEqual(
      knownBundleEvidence(A, B, known).map((e) => [e.order, e.bundles]),
      [
        ['older', ['/s/ba.ulp']],
        ['newer', ['/s/ab.ulp']],
      ],
    );
    assert.deepEqual(knownBundleEvidence(A, D, known), []);
  });

  it("assessVersions: the packages' own versions decide, over what the bundles say", () => {
    const bare = { obj: { notes: [], loadSegments: [] } as unknown as ElfObject, bytes: Buffer.alloc(0) };
    const old = { ...bare, path: '/a/old/libx.so.1' };
    const neu = { ...bare, path: '/a/new/libx.so.1' };
    const older = knownBundleEvidence(B, A, [upd('/s/ab.ulp', A, B)]);
    const up = { type: 'deb', name: 'libx1', old: '1.0-1', new: '1.0-1+deb12u1' };
    const r = assessVersions(old, neu, older, up);
    assert.equal(r.downgrade, false);
    assert.deepEqual(
      r.evidence.map((e) => [e.source, e.order]),
      [
        ['package-control', 'newer'],
        ['known-bundle', 'older'],
      ],
    );
    const down = assessVersions(old, neu, [], { ...up, old: '1:0.9', new: '1.0' });
    assert.deepEqual([down.downgrade, down.evidence[0]!.what], [true, 'deb package libx1']);
  });

  it('assessVersions: known-bundle evidence that says older is a downgrade; newer alone is not', () => {
    const bare = { obj: { notes: [], loadSegments: [] } as unknown as ElfObject, bytes: Buffer.alloc(0) };
    const old = { ...bare, path: '/a/old/libx.so.1' };
    const neu = { ...bare, path: '/a/new/libx.so.1' };
    const older = knownBundleEvidence(B, A, [upd('/s/ab.ulp', A, B)]);
    assert.deepEqual(assessVersions(old, neu, older), { downgrade: true, evidence: older });
    const newer = knownBundleEvidence(A, B, [upd('/s/ab.ulp', A, B)]);
    assert.deepEqual(assessVersions(old, neu, newer), { downgrade: false, evidence: newer });
  });
});
