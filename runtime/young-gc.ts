/**
 * A scavenge of the tracer's own young generation, made just before a pause
 * so that none lands inside it. The plan of a switch allocates thousands of
 * small objects that are still alive when the threads are stopped; the few
 * allocations the pause itself makes (a number from performance.now, a
 * ptrace result) can then fill the young generation, and V8 stops the
 * tracer to copy every live object out of it while every thread of the
 * target waits (milliseconds for a plan of a large library). Emptied just
 * before, the young generation has far more room than the pause uses.
 *
 * The collector is reached without a command-line flag: `--expose-gc` set
 * at run time makes a fresh context get a `gc` function (node:v8
 * setFlagsFromString; a process started with --expose-gc has it already).
 * Where V8 refuses, nothing is collected and the pause is as before.
 */
import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

type Collect = (options?: { type?: 'minor' | 'major' }) => void;

let collect: Collect | null | undefined;

function collector(): Collect | null {
  if (collect !== undefined) return collect;
  const own = (globalThis as { gc?: Collect }).gc;
  try {
    if (typeof own === 'function') collect = own;
    else {
      setFlagsFromString('--expose-gc');
      const gc = runInNewContext('gc') as unknown;
      collect = typeof gc === 'function' ? (gc as Collect) : null;
    }
  } catch {
    collect = null;
  }
  return collect;
}

/**
 * Empties the young generation now; false when the collector is out of
 * reach. Two minor collections: a live object survives the first one in
 * the young generation, and leaves it for the old one at the second.
 */
export function scavengeNow(): boolean {
  const gc = collector();
  if (!gc) return false;
  gc({ type: 'minor' });
  gc({ type: 'minor' });
  return true;
}

/**
 * Room in the young generation the pause may allocate in without a
 * scavenge: far more than it allocates (a few hundred kB at most: register
 * sets, a few thousand small numbers). With at least this much free, as for
 * the second and later processes of `--all`, nothing is collected.
 */
const PAUSE_ROOM = 2 << 20;

/** Empties the young generation unless it has PAUSE_ROOM free already; true when it collected. */
export function makeRoomForPause(): boolean {
  const young = getHeapSpaceStatistics().find((s) => s.space_name === 'new_space');
  if (young && young.space_available_size >= PAUSE_ROOM) return false;
  return scavengeNow();
}
