/**
 * Save slots of the stub page: which one a thread uses, what goes in it.
 *
 * Ownership is (tgid, tid). The tracer claims a slot before redirecting a
 * thread and frees it after restoring the thread itself; an orphaned thread
 * (its tracer was killed) leaves its slot in state RESTORING, which the next
 * tracer reclaims once that thread has left the stub. A slot in state CALL
 * owned by a live thread means a call a killed tracer started is still
 * running: it is never reused, since the thread will return through it.
 */
import { existsSync } from 'node:fs';
import { procError } from '../errors.js';
import type { RemoteMemory } from '../memory.js';
import { readStatus } from '../procfs.js';
import { encodeRegs, type Regs } from '../sys/regs.js';
import {
  BLOCK_STRIDE,
  CODE_OFF,
  CODE_SIZE,
  NSLOTS,
  SLOT,
  SLOT_STATE,
  SLOTS_OFF,
  SLOTS_SIZE,
  XSAVE_OFF,
  XSAVE_STRIDE,
} from './layout.js';

export function blockAddress(base: bigint, i: number): bigint {
  return base + BigInt(CODE_OFF + i * BLOCK_STRIDE);
}

export function slotAddress(base: bigint, i: number): bigint {
  return base + BigInt(SLOTS_OFF + i * BLOCK_STRIDE);
}

export function xsaveAddress(base: bigint, i: number): bigint {
  return base + BigInt(XSAVE_OFF + i * XSAVE_STRIDE);
}

export function inStubCode(base: bigint, rip: bigint): boolean {
  return rip >= base + BigInt(CODE_OFF) && rip < base + BigInt(CODE_OFF + CODE_SIZE);
}

export interface SlotHeader {
  state: number;
  tid: number;
  tgid: number;
}

export function readSlotHeaders(mem: RemoteMemory, base: bigint): SlotHeader[] {
  const all = mem.read(base + BigInt(SLOTS_OFF), SLOTS_SIZE);
  return Array.from({ length: NSLOTS }, (_, i) => {
    const o = i * BLOCK_STRIDE;
    return {
      state: all.readUInt32LE(o + SLOT.STATE),
      tid: all.readUInt32LE(o + SLOT.TID),
      tgid: all.readUInt32LE(o + SLOT.TGID),
    };
  });
}

function ownerAlive(h: SlotHeader): boolean {
  if (!existsSync(`/proc/${h.tid}`)) return false;
  return readStatus(h.tid)?.tgid === h.tgid;
}

/**
 * Picks the slot for stopped thread `tid` of `pid` whose rip is `rip`.
 * Throws PROC_NO_THREAD when that thread is itself still finishing an
 * orphaned injection.
 */
export function claimSlot(mem: RemoteMemory, base: bigint, pid: number, tid: number, rip: bigint): number {
  const busy = (why: string) =>
    procError(
      'PROC_NO_THREAD',
      `thread ${tid} of process ${pid} ${why}`,
      'Retry in a moment, or use another thread.',
      { pid, tid },
    );
  if (inStubCode(base, rip)) throw busy('is still restoring itself after an interrupted injection');
  const headers = readSlotHeaders(mem, base);
  let free = -1;
  let stale = -1;
  for (let i = 0; i < headers.length; i++) {
    const h = headers[i]!;
    if (h.tid === tid && h.tgid === pid && h.state !== SLOT_STATE.FREE) {
      if (h.state === SLOT_STATE.CALL)
        throw busy('is still running a remote call started by a tracer that was killed');
      return i; // its own slot, and the thread is not in the stub: that injection is over
    }
    if (h.state === SLOT_STATE.FREE) {
      if (free < 0) free = i;
    } else if (stale < 0 && !ownerAlive(h)) stale = i;
  }
  if (free >= 0) return free;
  if (stale >= 0) return stale;
  throw procError(
    'PROC_STUB',
    `all ${NSLOTS} stub slots of process ${pid} are in use`,
    'Retry when the threads using them have finished.',
    { pid },
  );
}

export interface SlotContents {
  state: number;
  tid: number;
  tgid: number;
  mask: bigint;
  /** Registers the stub jumps back with (see injection.ts resumeRegs). */
  regs: Regs;
  /** XSAVE image to restore, or undefined (syscalls do not touch vector registers). */
  xstate?: Buffer;
}

/** AMX's components (XTILECFG, XTILEDATA). */
const AMX = (1n << 17n) | (1n << 18n);

/**
 * What the stub's xrstor restores from an image the kernel gave (ptrace's
 * NT_X86_XSTATE: xcr0 in sw_reserved at 464, XSTATE_BV at 512): every
 * enabled component, so that one the call dirtied and the thread never used
 * goes back to its initial state, except AMX's when the thread does not use
 * them. Those are armed to fault (XFD) until a thread first uses AMX, and
 * xrstor of a faulting component would kill the thread with SIGILL; runtime
 * calls never touch AMX.
 */
export function restoreMask(xstate: Buffer): bigint {
  const xcr0 = xstate.readBigUInt64LE(464);
  const inUse = xstate.readBigUInt64LE(512);
  return xcr0 & (~AMX | inUse);
}

export function writeSlot(mem: RemoteMemory, base: bigint, i: number, c: SlotContents): void {
  // An image larger than the area (a CPU with more state than XSAVE_STRIDE foresees) is not restored by the stub.
  const useXState = c.xstate !== undefined && c.xstate.length <= XSAVE_STRIDE;
  if (useXState) mem.write(xsaveAddress(base, i), c.xstate!);
  const b = Buffer.alloc(BLOCK_STRIDE);
  b.writeUInt32LE(c.state, SLOT.STATE);
  b.writeUInt32LE(c.tid, SLOT.TID);
  b.writeUInt32LE(c.tgid, SLOT.TGID);
  b.writeBigUInt64LE(c.mask, SLOT.MASK);
  b.writeBigUInt64LE(useXState ? xsaveAddress(base, i) : 0n, SLOT.XSAVE_PTR);
  encodeRegs(c.regs, b, SLOT.REGS);
  b.writeBigUInt64LE(useXState ? restoreMask(c.xstate!) : 0n, SLOT.RFBM);
  mem.write(slotAddress(base, i), b);
}

export function releaseSlot(mem: RemoteMemory, base: bigint, i: number): void {
  mem.write(slotAddress(base, i) + BigInt(SLOT.STATE), Buffer.alloc(4));
}
