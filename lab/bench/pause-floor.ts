/**
 * The floor of a switch's pause on one process: every thread stopped, the
 * same number of pages read back with one process_vm_readv and the same
 * number of write system calls (each writing back the 8 bytes it read, so
 * the target sees nothing), then every thread resumed. The trigger's pause
 * can only add to this; the benchmark prints the ratio.
 */
import { readMaps } from '../../runtime/maps.js';
import { Session } from '../../runtime/session.js';
import { PauseIO } from '../../runtime/loader/pause-io.js';

export interface Floor {
  /** Stop, read, writes, resume, as the session's pause clock measures it (ms). */
  ms: number;
  /** Stop and resume alone (ms). */
  bareMs: number;
}

/** One floor measurement with `pages` pages read and `writes` writes, on the main thread's stack (private, writable, mapped). */
export function pauseFloor(pid: number, pages: number, writes: number): Floor {
  const stack = readMaps(pid).find((m) => m.path === '[stack]');
  if (!stack) throw new Error(`process ${pid} has no [stack] mapping`);
  // The top pages of the stack are the ones it uses: mapped and present.
  const n = Math.max(1, Math.min(pages, Number((stack.end - stack.start) / 4096n) - 1));
  const watched = Array.from({ length: n }, (_, i) => ({ addr: stack.end - BigInt(i + 1) * 4096n, len: 8 }));
  const s = Session.open(pid, { deferSignals: false });
  try {
    const io = new PauseIO(s, watched);
    const word = Buffer.alloc(8);
    io.read();
    s.stopAll();
    s.resume();
    const bareMs = s.pauses.at(-1)!.ms;
    s.stopAll();
    io.read();
    for (let k = 0; k < writes; k++) {
      word.writeBigUInt64LE(io.u64(k % n));
      io.write(watched[k % n]!.addr, word);
    }
    s.resume();
    io.close();
    return { ms: s.pauses.at(-1)!.ms, bareMs };
  } finally {
    s.detach();
  }
}
