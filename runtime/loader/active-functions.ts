/**
 * Whether a stopped thread is inside one of a set of functions: a frame of
 * its call chain (call-chain.ts) lies in one, the innermost by its pc, every
 * other by its return address minus one (a call may be a function's last
 * instruction). Where the walk cannot finish (code without unwind rules: JIT
 * code, a corrupt frame) every word of the rest of its stack counts as a
 * return address, which can only find more. A bundle's conditions (the
 * packer's LAYOUT_STACK_CONFINED: a structure whose layout changed lives on
 * the stack of these functions; CODE_CALLERS_IN_FLIGHT: they keep registers
 * across a call the switch sends to code that writes them) are checked with
 * it in the pause.
 */
import { UlpError } from '../../common/errors.js';
import { findMapping, readMaps } from '../maps.js';
import type { Session } from '../session.js';
import type { Regs } from '../sys/regs.js';
import { callChain, type CallChain } from './call-chain.js';
import type { ProcessObject } from './model.js';

/** A function no thread may be inside, as runtime addresses. */
export interface WatchedFunction {
  start: bigint;
  end: bigint;
  /** How messages name it: a name, or the build and link-time address. */
  label: string;
}

/** Bytes of a thread's stack read for the walk; all of it up to MAX_SCAN_BYTES when the walk cannot finish. */
const STACK_READ_BYTES = 256 * 1024;
const MAX_SCAN_BYTES = 16 * 1024 * 1024;

/**
 * The watched function a frame of `chain` is in, and how it was found; `words` are the stack from
 * `sp` on (for the scan past an unfinished walk). Pure.
 */
export function frameInside(
  chain: CallChain,
  sp: bigint,
  words: Buffer,
  watched: readonly WatchedFunction[],
): { fn: WatchedFunction; how: 'pc' | 'frame' | 'scan' } | undefined {
  const find = (a: bigint) => watched.find((w) => a >= w.start && a < w.end);
  const first = find(chain.pcs[0]!);
  if (first) return { fn: first, how: 'pc' };
  for (const pc of chain.pcs.slice(1)) {
    const fn = find(pc - 1n);
    if (fn) return { fn, how: 'frame' };
  }
  if (chain.complete) return undefined;
  for (let off = Math.max(0, Number(chain.sp - sp)) & ~7; off + 8 <= words.length; off += 8) {
    const fn = find(words.readBigUInt64LE(off) - 1n);
    if (fn) return { fn, how: 'scan' };
  }
  return undefined;
}

/** The threads of a stopped process inside a watched function: tid, the function, how it was found. */
export function threadsInsideFunctions(
  s: Session,
  objects: readonly ProcessObject[],
  watched: readonly WatchedFunction[],
): Array<{ tid: number; fn: WatchedFunction; how: string }> {
  const maps = readMaps(s.pid);
  const out: Array<{ tid: number; fn: WatchedFunction; how: string }> = [];
  for (const tid of s.tids()) {
    const r: Regs = s.regs(tid);
    const stack = findMapping(maps, r.rsp);
    const room = stack ? Number(stack.end - r.rsp) & ~7 : 0;
    let words = (room > 0 && s.memory.tryRead(r.rsp, Math.min(STACK_READ_BYTES, room))) || undefined;
    const readU64 = (addr: bigint): bigint | undefined => {
      const off = addr - r.rsp;
      if (words && off >= 0n && off + 8n <= BigInt(words.length)) return words.readBigUInt64LE(Number(off));
      const b = s.memory.tryRead(addr, 8);
      return b ? b.readBigUInt64LE(0) : undefined;
    };
    const chain = callChain(objects, r, readU64);
    // A walk that stops (JIT code, a corrupt frame) is followed by a scan of the whole rest of the stack: a frame
    // of a watched function may lie deep below. A stack that cannot be read, or too large to scan, cannot be
    // shown free of the functions: the thread counts as inside.
    if (!chain.complete && room > (words?.length ?? 0))
      words = room <= MAX_SCAN_BYTES ? s.memory.tryRead(r.rsp, room) || undefined : undefined;
    if (!words && !chain.complete) {
      out.push({ tid, fn: watched[0]!, how: 'unreadable stack' });
      continue;
    }
    const hit = frameInside(chain, r.rsp, words ?? Buffer.alloc(0), watched);
    if (hit) out.push({ tid, fn: hit.fn, how: hit.how });
  }
  return out;
}

export function functionActive(
  pid: number,
  busy: ReadonlyArray<{ tid: number; fn: WatchedFunction; how: string }>,
  attempts: number,
  reason: string,
): UlpError {
  const first = busy[0]!;
  const how =
    first.how === 'pc'
      ? 'executing it'
      : first.how === 'frame'
        ? 'a frame of it is on its call chain'
        : first.how === 'scan'
          ? 'its stack could not be walked to the end and holds a return address into it'
          : 'its stack could not be read whole';
  return new UlpError(
    'LOADER_FUNCTION_ACTIVE',
    `thread ${first.tid} of process ${pid} is inside ${first.fn.label} (${how})${busy.length > 1 ? ` and ${busy.length - 1} more thread${busy.length > 2 ? 's are' : ' is'} inside a watched function` : ''} at each of ${attempts} attempts; the bundle is safe only while no thread is (${reason})`,
    'The process was left unchanged. Retry when it is not in that call (a thread blocked inside it for good blocks the patch: restart the process to update it).',
    { pid, tid: first.tid, function: first.fn.label, threads: busy.map((b) => b.tid) },
  );
}
