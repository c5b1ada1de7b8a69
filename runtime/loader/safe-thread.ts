/**
 * Which thread may make a remote call into libc or the unwinder
 * (__register_atfork, dlopen, __register_frame). Those calls take locks
 * (glibc's atfork lock, the loader lock, an arena lock, libgcc's object
 * mutex) and may allocate. A thread stopped inside fork(), the allocator,
 * ld.so or the unwinder's registry would wait for itself (docs/ARCHITECTURE.md,
 * "Stage"). So a thread is used only when neither its rip nor
 * any frame of its call chain is inside those functions or ld.so; the others
 * are let go and asked again a moment later.
 */
import { UlpError } from '../../common/errors.js';
import { findMapping, readMaps } from '../maps.js';
import { exited } from '../errors.js';
import type { Session } from '../session.js';
import type { ProcessObject } from './model.js';
import { callChain } from './call-chain.js';
import { lookupIn } from './scope.js';

/** libc entry points below which a thread may hold the atfork lock or an arena lock. */
const LIBC_UNSAFE = [
  'fork',
  '_Fork',
  '__register_atfork',
  'pthread_atfork',
  '__cxa_finalize',
  'exit',
  'malloc',
  'free',
  'calloc',
  'realloc',
  'reallocarray',
  'memalign',
  'posix_memalign',
  'aligned_alloc',
  'valloc',
  'pvalloc',
  'malloc_trim',
  'dlopen',
  'dlclose',
  'dlmopen',
  'dlsym',
  'dlvsym',
];
/** libgcc_s entry points that hold its object mutex (unwind.ts registers frames through them). */
const UNWINDER_UNSAFE = [
  '__register_frame',
  '__register_frame_info',
  '__register_frame_info_bases',
  '__register_frame_table',
  '__deregister_frame',
  '__deregister_frame_info',
  '__deregister_frame_info_bases',
  '_Unwind_Find_FDE',
];
const STACK_SCAN_BYTES = 64 * 1024;

type Range = [number, number];

/** Addresses as Numbers: user space fits in 47 bits, and Number comparisons keep the stack scan fast. */
export function unsafeRanges(objects: readonly ProcessObject[]): Range[] {
  const out: Range[] = [];
  for (const o of objects) {
    if (o.source !== 'linkmap') continue;
    if (o.soname?.startsWith('ld-linux')) for (const c of o.code) out.push([Number(c.start), Number(c.end)]);
    const names =
      o.soname === 'libc.so.6' ? LIBC_UNSAFE : o.soname === 'libgcc_s.so.1' ? UNWINDER_UNSAFE : [];
    for (const name of names) {
      const def = lookupIn(o, { name });
      if (def && def.sym.size > 0n) out.push([Number(def.addr), Number(def.addr + def.sym.size)]);
    }
  }
  return out;
}

function inRanges(ranges: readonly Range[], v: number): boolean {
  for (const [a, b] of ranges) if (v >= a && v < b) return true;
  return false;
}

/**
 * Why thread `tid` (stopped) must not make the call, or undefined when it
 * may. Its frames are found by walking its call chain with the unwind
 * tables (call-chain.ts); where the walk cannot go on, every word of the
 * rest of its stack counts as a frame, which can only make it refuse more.
 */
export function unsafeReason(
  s: Session,
  tid: number,
  objects: readonly ProcessObject[],
  ranges: readonly Range[],
): string | undefined {
  const r = s.regs(tid);
  if (inRanges(ranges, Number(r.rip)))
    return 'it is inside the allocator, fork, the dynamic loader or the unwinder';
  const stack = findMapping(readMaps(s.pid), r.rsp);
  if (!stack) return 'its stack is not mapped';
  const len = Math.min(STACK_SCAN_BYTES, Number(stack.end - r.rsp)) & ~7;
  const words = s.memory.tryRead(r.rsp, len);
  if (!words) return 'its stack cannot be read';
  const readU64 = (addr: bigint) => {
    const off = addr - r.rsp;
    if (off >= 0n && off + 8n <= BigInt(words.length)) return words.readBigUInt64LE(Number(off));
    const b = s.memory.tryRead(addr, 8);
    return b ? b.readBigUInt64LE(0) : undefined;
  };
  const chain = callChain(objects, r, readU64);
  // A return address points after its call instruction, which may be the last one of the function.
  if (chain.pcs.slice(1).some((pc) => inRanges(ranges, Number(pc - 1n))))
    return 'a frame of the allocator, fork, the dynamic loader or the unwinder is on its stack';
  if (chain.complete) return undefined;
  for (let off = Math.max(0, Number(chain.sp - r.rsp)) & ~7; off + 8 <= words.length; off += 8) {
    const v = words.readUInt32LE(off) + words.readUInt32LE(off + 4) * 2 ** 32;
    if (inRanges(ranges, v))
      return 'its stack could not be walked to the end, and a word on it points into the allocator, fork, the dynamic loader or the unwinder';
  }
  return undefined;
}

const pause = (ms: number) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

/**
 * Leaves exactly one thread borrowed, one that may call `fn` (see above),
 * and runs `fn` on it; a thread on which `fn` fails with PROC_NO_THREAD or
 * PROC_CALL_TIMEOUT is skipped. The other threads keep running throughout.
 * `what` completes "no thread of process N could ...".
 */
export function onSafeThread<T>(
  s: Session,
  objects: readonly ProcessObject[],
  what: string,
  fn: (tid: number) => T,
  timeoutMs = 3000,
): T {
  const ranges = unsafeRanges(objects);
  const deadline = performance.now() + timeoutMs;
  const reasons = new Map<number, string>();
  for (;;) {
    const order = [
      ...new Set([...(s.borrowed !== undefined ? [s.borrowed] : []), s.pid, ...s.tids()]),
    ].filter((t) => s.tids().includes(t));
    // No thread left: the process died, and waiting for a safe one would only delay saying so.
    if (order.length === 0) throw exited(s.pid, `looking for a thread that may ${what}`);
    for (const tid of order) {
      if (s.borrowed !== tid) {
        if (s.borrowed !== undefined) s.resume();
        s.borrow(tid);
      }
      const why = unsafeReason(s, tid, objects, ranges);
      if (why) {
        reasons.set(tid, why);
        continue;
      }
      try {
        return fn(tid);
      } catch (e) {
        if (!(e instanceof UlpError) || (e.code !== 'PROC_NO_THREAD' && e.code !== 'PROC_CALL_TIMEOUT'))
          throw e;
        reasons.set(tid, e.message);
      }
    }
    if (performance.now() > deadline) {
      const detail = [...reasons].map(([t, w]) => `thread ${t}: ${w}`).join('; ');
      throw new UlpError(
        'LOADER_NO_SAFE_THREAD',
        `no thread of process ${s.pid} could ${what} (${detail})`,
        'Every thread was busy in the allocator, fork, the dynamic loader or the unwinder; retry in a moment. The process was left unchanged.',
        { pid: s.pid },
      );
    }
    s.resume();
    s.service();
    pause(5);
  }
}

/** Options of every call the runtime makes through onSafeThread: none of them makes a timed sleep (remote-call.ts). */
export function runtimeCall(
  tid: number,
  timeoutMs: number,
): { tid: number; timeoutMs: number; noTimedSleep: true } {
  return { tid, timeoutMs, noTimedSleep: true };
}
