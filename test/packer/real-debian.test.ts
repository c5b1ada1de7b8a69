/**
 * ulp-pack on real Debian security updates (../shared/real-builds, see its
 * README for the verdict an expert gives each): the writable-region rules
 * relative to each build's region.
 */
import assert from 'node:assert/strict';
import { realBuild, realBuildsDir, REAL, REAL_FILES } from '../helpers/real-builds.js';
import { codes, ulpPack } from './run.js';

describe('ulp-pack on real Debian builds: writable regions that moved', function () {
  this.timeout(5 * 60_000);
  let dir: string;
  before(function () {
    const d = realBuildsDir();
    if (!d) this.skip();
    dir = d!;
  });

  const check = (a: string, b: string) => ulpPack([a, b, '--check', '--json']);

  it('libcrypto 3.0.20 -> 3.0.22: compatible both ways; the region moved by 0x2000 is the only data finding, no init finding', () => {
    const r = check(realBuild(dir, REAL.ssl20, REAL_FILES.crypto), realBuild(dir, REAL.ssl22, REAL_FILES.crypto));
    assert.equal(r.code, 0, r.stderr + r.stdout);
    for (const [report, from, to] of [
      [r.json.forward, '0x482000', '0x484000'],
      [r.json.reverse, '0x484000', '0x482000'],
    ] as const) {
      assert.equal(report.verdict, 'compatible', codes(report).join(', '));
      const found = codes(report);
      assert.deepEqual(found.filter((c) => c.startsWith('data:') || c.startsWith('init:')), ['data:DATA_REGION_MOVED']);
      const moved = report.categories.data.findings[0];
      assert.equal(moved.details.from.start, from);
      assert.equal(moved.details.to.start, to);
      assert.equal(report.writable.start, from);
      assert.equal(report.writable.to.start, to);
      // Every relocated word of the region pairs up by region offset.
      assert.ok(report.writable.sites.length > 400, `${report.writable.sites.length} sites`);
    }
  });

  it('libcrypto 3.0.19 -> 3.0.20 (region in place) stays compatible', () => {
    const r = check(realBuild(dir, REAL.ssl19, REAL_FILES.crypto), realBuild(dir, REAL.ssl20, REAL_FILES.crypto));
    assert.equal(r.code, 0, r.stderr + r.stdout);
    assert.equal(r.json.forward.verdict, 'compatible');
    assert.equal(r.json.forward.categories.data.verdict, 'unchanged');
    assert.deepEqual(r.json.forward.writable.to, { start: '0x482000', end: '0x488000' });
  });

  it('libexpat deb12u2 -> deb12u5: its region moved by 0x3000, which alone is no reason to refuse', () => {
    const r = check(realBuild(dir, REAL.expat2, REAL_FILES.expat), realBuild(dir, REAL.expat5, REAL_FILES.expat));
    // The pair is incompatible for its heap layout (docs: another rule); the move must not be among the reasons.
    const found = codes(r.json.forward);
    assert.ok(found.includes('data:DATA_REGION_MOVED'), found.join(', '));
    const errors = Object.entries(r.json.forward.categories).flatMap(([cat, c]) =>
      (c as { findings: Array<{ code: string; severity: string }> }).findings.filter((x) => x.severity === 'error').map((x) => `${cat}:${x.code}`),
    );
    assert.deepEqual(errors.filter((c) => c.startsWith('data:') || c.startsWith('init:')), [], `no data or init error: ${errors.join(', ')}`);
  });
});
