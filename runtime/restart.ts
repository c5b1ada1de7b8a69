/**
 * What the kernel does with a system call a stop interrupted
 * (-ERESTART* in rax, the call's number in orig_rax): which calls it redoes
 * and the registers it returns to user space with when no signal is
 * pending. Kept apart from injection.ts so that tracee.ts can use it too.
 */
import { ERESTARTNOHAND, ERESTARTNOINTR, ERESTARTSYS, ERESTART_RESTARTBLOCK, NR } from './sys/constants.js';
import { cloneRegs, signed, type Regs } from './sys/regs.js';
import { u64 } from '../common/u64.js';

const RESTART_CODES = new Set(
  [-ERESTARTSYS, -ERESTARTNOINTR, -ERESTARTNOHAND, -ERESTART_RESTARTBLOCK].map(BigInt),
);

/** The thread was stopped inside a system call that the kernel will redo when it resumes. */
export function needsRestart(r: Regs): boolean {
  return signed(r.orig_rax) >= 0n && RESTART_CODES.has(signed(r.rax));
}

/** The registers the kernel would return to user space with, absent a signal (the stub's restore target). */
export function resumeRegs(r: Regs): Regs {
  const out = cloneRegs(r);
  if (needsRestart(r)) {
    out.rax = signed(r.rax) === BigInt(-ERESTART_RESTARTBLOCK) ? BigInt(NR.restart_syscall) : r.orig_rax;
    out.rip = r.rip - 2n;
  }
  out.orig_rax = u64(-1);
  return out;
}
