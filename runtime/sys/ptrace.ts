/**
 * Typed ptrace requests. Each throws SysError with errno on failure; the
 * callers (tracee.ts) decide what an errno means for the session.
 */
import koffi from 'koffi';
import { NT, PTRACE } from './constants.js';
import { SysError } from './errno.js';
import { lastErrno, ptraceBuf, ptraceInt } from './libc.js';
import { decodeRegs, encodeRegs, REGS_SIZE, type Regs } from './regs.js';
import { note } from './tally.js';

function check(op: string, r: number | bigint): void {
  note(`ptrace:${op}`);
  if (Number(r) === -1) throw new SysError(op, lastErrno());
}

export function seize(tid: number, options: number): void {
  check('PTRACE_SEIZE', ptraceInt(PTRACE.SEIZE, tid, 0, options));
}

export function interrupt(tid: number): void {
  check('PTRACE_INTERRUPT', ptraceInt(PTRACE.INTERRUPT, tid, 0, 0));
}

/** Resumes a stopped tracee; `sig` is delivered only from a signal-delivery-stop. */
export function cont(tid: number, sig = 0): void {
  check('PTRACE_CONT', ptraceInt(PTRACE.CONT, tid, 0, sig));
}

/** Resumes until the next system-call entry or exit (reported as SIGTRAP|0x80 with TRACESYSGOOD). */
export function syscall(tid: number, sig = 0): void {
  check('PTRACE_SYSCALL', ptraceInt(PTRACE.SYSCALL, tid, 0, sig));
}

/** Keeps a tracee in group-stop while letting the tracer see further events. */
export function listen(tid: number): void {
  check('PTRACE_LISTEN', ptraceInt(PTRACE.LISTEN, tid, 0, 0));
}

export function detach(tid: number, sig = 0): void {
  check('PTRACE_DETACH', ptraceInt(PTRACE.DETACH, tid, 0, sig));
}

const regsBuf = Buffer.alloc(REGS_SIZE);

export function getRegs(tid: number): Regs {
  check('PTRACE_GETREGS', ptraceBuf(PTRACE.GETREGS, tid, 0, regsBuf));
  return decodeRegs(regsBuf);
}

export function setRegs(tid: number, regs: Regs): void {
  check('PTRACE_SETREGS', ptraceBuf(PTRACE.SETREGS, tid, 0, encodeRegs(regs, regsBuf)));
}

const maskBuf = Buffer.alloc(8);

/** The thread's blocked-signal mask (bit n-1 = signal n). */
export function getSigMask(tid: number): bigint {
  check('PTRACE_GETSIGMASK', ptraceBuf(PTRACE.GETSIGMASK, tid, 8, maskBuf));
  return maskBuf.readBigUInt64LE(0);
}

export function setSigMask(tid: number, mask: bigint): void {
  maskBuf.writeBigUInt64LE(BigInt.asUintN(64, mask));
  check('PTRACE_SETSIGMASK', ptraceBuf(PTRACE.SETSIGMASK, tid, 8, maskBuf));
}

/** Word write through the tracee's view of memory; works on read-only pages (FOLL_FORCE). */
export function pokeData(tid: number, addr: bigint, word: bigint): void {
  check('PTRACE_POKEDATA', ptraceInt(PTRACE.POKEDATA, tid, addr, BigInt.asUintN(64, word)));
}

export function peekData(tid: number, addr: bigint): bigint {
  koffi.errno(0);
  note('ptrace:PTRACE_PEEKDATA');
  const r = ptraceInt(PTRACE.PEEKDATA, tid, addr, 0);
  if (Number(r) === -1 && lastErrno() !== 0) throw new SysError('PTRACE_PEEKDATA', lastErrno());
  return BigInt.asUintN(64, BigInt(r));
}

/** siginfo_t is 128 bytes; callers only need si_signo/si_code/si_addr. */
export function getSigInfo(tid: number): { signo: number; code: number; addr: bigint } {
  const b = Buffer.alloc(128);
  check('PTRACE_GETSIGINFO', ptraceBuf(PTRACE.GETSIGINFO, tid, 0, b));
  return { signo: b.readInt32LE(0), code: b.readInt32LE(8), addr: b.readBigUInt64LE(16) };
}

export interface SyscallInfo {
  /** SYSCALL_INFO_OP: 1 entry, 2 exit. */
  op: number;
  rip: bigint;
  nr: bigint;
  /** Return value at exit (sign-extended). */
  rval: bigint;
}

const sciBuf = Buffer.alloc(88);

/** Entry or exit of a syscall-stop, without tracking parity by hand (Linux 5.3+). */
export function getSyscallInfo(tid: number): SyscallInfo {
  check('PTRACE_GET_SYSCALL_INFO', ptraceBuf(PTRACE.GET_SYSCALL_INFO, tid, sciBuf.length, sciBuf));
  const op = sciBuf.readUInt8(0);
  return {
    op,
    rip: sciBuf.readBigUInt64LE(8),
    nr: op === 1 ? sciBuf.readBigUInt64LE(24) : 0n,
    rval: op === 2 ? sciBuf.readBigInt64LE(24) : 0n,
  };
}

/** iovec for the regset calls: { base, len } pointing at a local buffer. */
function iovecFor(buf: Buffer): Buffer {
  const iov = Buffer.alloc(16);
  iov.writeBigUInt64LE(BigInt.asUintN(64, BigInt(koffi.address(buf))), 0);
  iov.writeBigUInt64LE(BigInt(buf.length), 8);
  return iov;
}

/**
 * The thread's extended FPU state (XSAVE standard format, as the kernel
 * exposes it to debuggers: sw_reserved carries xcr0 and the size). Returns
 * undefined on CPUs without XSAVE.
 */
export function getXState(tid: number, maxSize = 16384): Buffer | undefined {
  const buf = Buffer.allocUnsafeSlow(maxSize).fill(0);
  const iov = iovecFor(buf);
  note('ptrace:PTRACE_GETREGSET(NT_X86_XSTATE)');
  const r = ptraceBuf(PTRACE.GETREGSET, tid, NT.X86_XSTATE, iov);
  if (Number(r) === -1) {
    const e = lastErrno();
    if (e === 22 /* EINVAL: no xsave */ || e === 19 /* ENODEV */) return undefined;
    throw new SysError('PTRACE_GETREGSET(NT_X86_XSTATE)', e);
  }
  return buf.subarray(0, Number(iov.readBigUInt64LE(8)));
}

export function setXState(tid: number, state: Buffer): void {
  const copy = Buffer.allocUnsafeSlow(state.length); // the iovec must point at stable off-heap memory we own
  state.copy(copy);
  const iov = iovecFor(copy);
  check('PTRACE_SETREGSET(NT_X86_XSTATE)', ptraceBuf(PTRACE.SETREGSET, tid, NT.X86_XSTATE, iov));
}
