/**
 * struct user_regs_struct (arch/x86/include/asm/user_64.h): 27 unsigned
 * 64-bit words in this exact order, as PTRACE_GETREGS/SETREGS exchange them
 * and as the stub page's save slots store them.
 */
export const REG_NAMES = [
  'r15',
  'r14',
  'r13',
  'r12',
  'rbp',
  'rbx',
  'r11',
  'r10',
  'r9',
  'r8',
  'rax',
  'rcx',
  'rdx',
  'rsi',
  'rdi',
  'orig_rax',
  'rip',
  'cs',
  'eflags',
  'rsp',
  'ss',
  'fs_base',
  'gs_base',
  'ds',
  'es',
  'fs',
  'gs',
] as const;

export type RegName = (typeof REG_NAMES)[number];

/** All values are unsigned 64-bit bigints (so orig_rax = -1 reads as 2^64-1; see `signed`). */
export type Regs = Record<RegName, bigint>;

export const REGS_SIZE = REG_NAMES.length * 8;

/** Byte offset of a register inside user_regs_struct. */
export function regOffset(name: RegName): number {
  return REG_NAMES.indexOf(name) * 8;
}

export function decodeRegs(buf: Buffer, offset = 0): Regs {
  const r = {} as Regs;
  REG_NAMES.forEach((n, i) => (r[n] = buf.readBigUInt64LE(offset + i * 8)));
  return r;
}

export function encodeRegs(r: Regs, buf: Buffer = Buffer.alloc(REGS_SIZE), offset = 0): Buffer {
  REG_NAMES.forEach((n, i) => buf.writeBigUInt64LE(BigInt.asUintN(64, r[n]), offset + i * 8));
  return buf;
}

export function cloneRegs(r: Regs): Regs {
  return { ...r };
}

/** A register as a signed 64-bit value (syscall results, orig_rax). */
export function signed(v: bigint): bigint {
  return BigInt.asIntN(64, v);
}

/** x86 EFLAGS bits the runtime touches. */
export const EFLAGS_TF = 0x100n;
export const EFLAGS_DF = 0x400n;
