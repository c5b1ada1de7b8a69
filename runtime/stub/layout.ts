/**
 * Layout of the stub mapping that lives in a target process (one per
 * process, created on first use, found again by later runs):
 *
 *   base + 0x0000  header page   /memfd:ulp:stub (sealed, read-only): magic, version, layout
 *   base + 0x1000  code          64 copies of the stub block (code.ts), 256 bytes apart, r-x
 *   base + 0x5000  slots         64 save slots, 256 bytes apart, rw- (slot i belongs to block i)
 *   base + 0x9000  xsave areas   64 XSAVE images, XSAVE_STRIDE apart (64-byte aligned), rw-
 *
 * Block i reaches slot i with RIP-relative operands, so every block is the
 * same bytes and needs no relocation; the distance is SLOT_DELTA.
 * Everything after the header page is private anonymous memory, so a fork
 * gives the child its own slots.
 */
import { memfdMapsPath, STUB_MEMFD } from '../memfd-names.js';

export const STUB_NAME = STUB_MEMFD;
/** What /proc/PID/maps shows for the header page. */
export const STUB_MAPS_NAME = memfdMapsPath(STUB_NAME);
export const STUB_MAGIC = Buffer.from('ULPSTUB\0', 'latin1');
export const STUB_VERSION = 2;

export const NSLOTS = 64;
export const BLOCK_STRIDE = 256;
export const HEADER_OFF = 0x0000;
export const CODE_OFF = 0x1000;
export const CODE_SIZE = NSLOTS * BLOCK_STRIDE;
export const SLOTS_OFF = CODE_OFF + CODE_SIZE;
export const SLOTS_SIZE = NSLOTS * BLOCK_STRIDE;
export const XSAVE_OFF = SLOTS_OFF + SLOTS_SIZE;
/**
 * Room for the XSAVE image of every user-space feature set, AMX tile data
 * included: the kernel's image is 11008 bytes on a Sapphire Rapids Xeon
 * (AVX-512 and AMX); a smaller area would leave vector registers unrestored.
 */
export const XSAVE_STRIDE = 12288;
export const STUB_SIZE = XSAVE_OFF + NSLOTS * XSAVE_STRIDE;
export const SLOT_DELTA = SLOTS_OFF - CODE_OFF;

/** Offsets inside a slot. */
export const SLOT = {
  STATE: 0x00,
  TID: 0x04,
  TGID: 0x08,
  MASK: 0x10,
  XSAVE_PTR: 0x18,
  /** struct user_regs_struct, 216 bytes: the registers the stub jumps back with. */
  REGS: 0x20,
  /** u64: the requested-feature bitmap of the stub's xrstor (EDX:EAX). */
  RFBM: 0xf8,
  SIZE: BLOCK_STRIDE,
} as const;

/** Slot states. Only the tracer writes FREE/SYSCALL/CALL; only the stub writes RESTORING. */
export const SLOT_STATE = { FREE: 0, SYSCALL: 1, CALL: 2, RESTORING: 3 } as const;

/** Header fields (little-endian u32 after the 8-byte magic). */
export const HEADER = {
  MAGIC: 0,
  VERSION: 8,
  NSLOTS: 12,
  BLOCK_STRIDE: 16,
  CODE_OFF: 20,
  SLOTS_OFF: 24,
  XSAVE_OFF: 28,
  XSAVE_STRIDE: 32,
  SIZE: 36,
} as const;

export function encodeHeader(): Buffer {
  const h = Buffer.alloc(4096);
  STUB_MAGIC.copy(h, HEADER.MAGIC);
  h.writeUInt32LE(STUB_VERSION, HEADER.VERSION);
  h.writeUInt32LE(NSLOTS, HEADER.NSLOTS);
  h.writeUInt32LE(BLOCK_STRIDE, HEADER.BLOCK_STRIDE);
  h.writeUInt32LE(CODE_OFF, HEADER.CODE_OFF);
  h.writeUInt32LE(SLOTS_OFF, HEADER.SLOTS_OFF);
  h.writeUInt32LE(XSAVE_OFF, HEADER.XSAVE_OFF);
  h.writeUInt32LE(XSAVE_STRIDE, HEADER.XSAVE_STRIDE);
  h.writeUInt32LE(STUB_SIZE, HEADER.SIZE);
  return h;
}

/** True when a header read from a target describes exactly this layout. */
export const HEADER_CHECK = 40;
