/**
 * `--all` without `--jobs` (trigger/all.ts autoJobs): a second tracer only
 * where there is a second CPU for it and a fleet large enough to repay its
 * worker's start; never more than two.
 */
import assert from 'node:assert/strict';
import { autoJobs, POOL_MIN_PROCESSES } from '../../../trigger/all.js';

describe('--all default jobs', () => {
  it('one tracer for a fleet smaller than a worker start is worth', () => {
    for (const cpus of [1, 2, 8]) {
      assert.equal(autoJobs(0, cpus), 1);
      assert.equal(autoJobs(1, cpus), 1);
      assert.equal(autoJobs(POOL_MIN_PROCESSES - 1, cpus), 1);
    }
  });

  it('two tracers for a large fleet on two CPUs or more, one on a single CPU', () => {
    assert.equal(autoJobs(POOL_MIN_PROCESSES, 1), 1);
    assert.equal(autoJobs(POOL_MIN_PROCESSES, 2), 2);
    assert.equal(autoJobs(1000, 2), 2);
    assert.equal(autoJobs(1000, 64), 2);
    assert.equal(autoJobs(1000, 0), 1, 'an unknown CPU count is one');
  });
});
