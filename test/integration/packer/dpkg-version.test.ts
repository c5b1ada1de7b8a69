/** Debian version ordering, checked against dpkg --compare-versions itself where dpkg is installed. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { compareDebianVersions, parseDebianVersion } from '../../../packer/version/dpkg.js';

const CASES: Array<[string, string, -1 | 0 | 1]> = [
  ['3.0.19-1~deb12u2', '3.0.20-1~deb12u2', -1],
  ['3.0.20-1~deb12u2', '3.0.19-1~deb12u2', 1],
  ['2.5.0-1+deb12u5', '2.5.0-1+deb12u2', 1],
  ['2.1.12-stable-8+deb12u1', '2.1.12-stable-8', 1],
  ['1.0~rc1', '1.0', -1],
  ['1.0~rc1', '1.0~rc1~1', 1],
  ['1.0', '1.0+b1', -1],
  ['1:0.9', '2.0', 1],
  ['0:2.0', '2.0', 0],
  ['2.0-0', '2.0', 0],
  ['1.10', '1.9', 1],
  ['1.010', '1.10', 0],
  ['1.0a', '1.0', 1],
  ['1.0a', '1.0+', -1],
  ['1.0-1', '1.0-1.1', -1],
  ['3.0.2', '3.0.20', -1],
];

describe('Debian version ordering', () => {
  it('orders epochs, ~, letters, digits and revisions as dpkg does', () => {
    for (const [a, b, want] of CASES) assert.equal(compareDebianVersions(a, b), want, `${a} vs ${b}`);
  });

  it('agrees with dpkg --compare-versions on every case', function () {
    if (spawnSync('dpkg', ['--version']).status !== 0) this.skip();
    for (const [a, b, want] of CASES) {
      const op = want < 0 ? 'lt' : want > 0 ? 'gt' : 'eq';
      assert.equal(spawnSync('dpkg', ['--compare-versions', a, op, b]).status, 0, `dpkg: ${a} ${op} ${b}`);
    }
  });

  it('rejects what is not a version', () => {
    for (const bad of ['', 'abc', 'x:1.0', '1.0 2', '-1'])
      assert.equal(parseDebianVersion(bad), undefined, JSON.stringify(bad));
    assert.deepEqual(parseDebianVersion('1:2.3-4'), { epoch: 1, upstream: '2.3', revision: '4' });
  });
});
