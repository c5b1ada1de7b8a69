/**
 * What the tracer does to itself around a pause: it becomes a real-time
 * task for the pause and is put back after (runtime/sys/sched.ts), and its
 * young generation is emptied just before (runtime/young-gc.ts). Both act
 * on this test's own process, read back through the kernel and V8.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { getHeapSpaceStatistics } from 'node:v8';
import { currentPolicy, raiseToRealtime, restoreSched } from '../../../runtime/sys/sched.js';
import { makeRoomForPause, scavengeNow } from '../../../runtime/young-gc.js';

const SCHED_OTHER = 0;
const SCHED_FIFO = 1;

/** The calling thread's policy as /proc says it (field 41 of stat: policy). */
function procPolicy(): number {
  const stat = readFileSync('/proc/thread-self/stat', 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[38]);
}

const youngUsed = () => getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')!.space_used_size;

describe('the tracer around a pause', () => {
  it('runs the pause as a real-time task where it may, and is an ordinary task again after', function () {
    assert.equal(currentPolicy(), SCHED_OTHER);
    const before = raiseToRealtime();
    try {
      if (process.getuid?.() !== 0) {
        // Without CAP_SYS_NICE the kernel refuses: nothing changes.
        assert.equal(before, undefined);
        assert.equal(procPolicy(), SCHED_OTHER);
        this.skip();
      }
      assert.ok(before, 'root may raise it');
      assert.equal(currentPolicy(), SCHED_FIFO);
      assert.equal(procPolicy(), SCHED_FIFO);
      assert.equal(raiseToRealtime(), undefined, 'raising twice changes nothing and restores nothing');
    } finally {
      restoreSched(before);
    }
    assert.equal(currentPolicy(), SCHED_OTHER);
    assert.equal(procPolicy(), SCHED_OTHER);
  });

  it('empties its young generation on demand, without --expose-gc on the command line', () => {
    const keep: object[] = [];
    // Until half a MiB is young: a scavenge of its own may come during the filling (the young generation
    // may hold only 1 MiB when the process has not grown it), so fill again after one.
    // At least a thousand live objects, whatever the young generation held before the test.
    for (let i = 0; i < 1000 || (youngUsed() < 1 << 19 && i < 2_000_000); i++) keep.push({ i, s: `x${i}` });
    const full = youngUsed();
    assert.ok(full >= 1 << 19, `${full} bytes young`);
    assert.equal(scavengeNow(), true);
    assert.ok(youngUsed() < full / 4, `${youngUsed()} bytes young after, ${full} before`);
    keep.length = 0; // alive until here
  });

  it('before a pause, collects only when the young generation is short of room', () => {
    const keep: object[] = [];
    const young = () => getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')!;
    // Fill it until less than 2 MiB is free (the space grows as it fills, so ask again each time).
    while (young().space_available_size >= 2 << 20) for (let i = 0; i < 10_000; i++) keep.push({ i });
    const full = youngUsed();
    assert.equal(makeRoomForPause(), true);
    assert.ok(youngUsed() < full / 4, `${youngUsed()} bytes young after, ${full} before`);
    if (young().space_available_size >= 2 << 20)
      assert.equal(makeRoomForPause(), false, 'room enough: nothing to do');
    // Not asserted: with the young generation short of room already, the loop pushes nothing.
    keep.length = 0;
  });
});
