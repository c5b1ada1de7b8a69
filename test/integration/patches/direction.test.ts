/**
 * Where a bundle says each step's target build keeps its writable region:
 * recorded since format 1.1 (`writable.to`), implied by `writable` before.
 */
import assert from 'node:assert/strict';
import {
  decodeBundle,
  encodeBundle,
  patchStep,
  recordedToRegion,
  serializeManifest,
} from '../../../patches/index.js';
import { sampleManifest } from '../../../lab/patches/craft.js';

describe('patches: the region a step switches to', () => {
  it('is writable.to when recorded, in both directions', () => {
    const { manifest, oldBuild, newBuild } = sampleManifest();
    manifest.forward.report.writable = {
      start: '0x4000',
      end: '0x5000',
      to: { start: '0x6000', end: '0x7000' },
      sites: [],
    };
    manifest.reverse.report.writable = {
      start: '0x6000',
      end: '0x7000',
      to: { start: '0x4000', end: '0x5000' },
      sites: [],
    };
    const bundle = decodeBundle(encodeBundle({ manifest, oldBuild, newBuild }));
    assert.deepEqual(recordedToRegion(patchStep(bundle, 'forward')), { start: 0x6000n, end: 0x7000n });
    assert.deepEqual(recordedToRegion(patchStep(bundle, 'reverse')), { start: 0x4000n, end: 0x5000n });
  });

  it('is the from region in a 1.0 bundle, which has no writable.to (its packer required the same region)', () => {
    const { manifest, oldBuild, newBuild } = sampleManifest();
    manifest.format = '1.0.0';
    const bundle = decodeBundle(encodeBundle({ manifest, oldBuild, newBuild }));
    assert.equal(bundle.manifest.forward.report.writable!.to, undefined);
    assert.ok(!serializeManifest(bundle.manifest).toString().includes('"to":{'), 'nothing added on reading');
    assert.deepEqual(recordedToRegion(patchStep(bundle, 'forward')), { start: 0x4000n, end: 0x5000n });
  });

  it('is null when the builds have no writable region', () => {
    const { manifest, oldBuild, newBuild } = sampleManifest();
    manifest.forward.report.writable = null;
    assert.equal(
      recordedToRegion(patchStep(decodeBundle(encodeBundle({ manifest, oldBuild, newBuild })), 'forward')),
      null,
    );
  });
});
