/**
 * What every injection (remote syscall or call) shares: saving a stopped
 * thread's state, the registers it runs with while borrowed, driving it from
 * stop to stop, and putting it back exactly as it was.
 *
 * Restart semantics. A thread stopped while blocked in a system call (read
 * on a pipe, nanosleep...) sits in the kernel's signal path with
 * rax = -ERESTARTSYS (or -ERESTARTNOINTR, -ERESTARTNOHAND,
 * -ERESTART_RESTARTBLOCK) and orig_rax = the syscall number. When it leaves
 * that stop the kernel rewinds rip by 2 and redoes the call (or calls
 * restart_syscall, which resumes a nanosleep with its remaining time from
 * the thread's restart_block). So:
 *  - while injecting, orig_rax = -1, or the kernel would "restart" our code;
 *  - afterwards the exact original registers are put back. If that happens at
 *    a syscall-exit stop (outside the signal path) the kernel would not apply
 *    the restart by itself, so the thread leaves through the signal path:
 *    PTRACE_DETACH does that on its own (it sets TIF_SIGPENDING), and before
 *    a PTRACE_CONT the thread is sent to an interrupt stop first
 *    (Tracee.restartPending). The kernel, not the runtime, then decides how
 *    to restart, signals included;
 *  - for the stub page (a tracer killed mid-injection), `resumeRegs` computes
 *    the registers the kernel would resume with when no signal is pending:
 *    rip - 2 and rax = orig_rax (or __NR_restart_syscall for
 *    -ERESTART_RESTARTBLOCK; the stub never calls rt_sigreturn, which would
 *    clear restart_block). The only difference from the kernel: a signal
 *    arriving in that instant finds the call already restarted (as with
 *    SA_RESTART) rather than failing with EINTR.
 */
import { FAULT_SIGNALS, SYSCALL_INFO_OP } from './sys/constants.js';
import { SysError } from './sys/errno.js';
import { tgkill } from './sys/libc.js';
import * as pt from './sys/ptrace.js';
import { cloneRegs, EFLAGS_DF, EFLAGS_TF, type Regs } from './sys/regs.js';
import { isEventStop, isSignalStop, isSyscallStop } from './sys/wait.js';
import type { InjectionHost } from './injection-host.js';
import type { Tracee } from './tracee.js';
import { needsRestart } from './restart.js';
import { u64 } from '../common/u64.js';

export interface SavedThread {
  regs: Regs;
  mask: bigint;
  /** XSAVE image, when the injection may clobber vector registers (calls). */
  xstate?: Buffer;
}

export function saveThread(tid: number, withXState: boolean): SavedThread {
  const regs = pt.getRegs(tid);
  const mask = pt.getSigMask(tid);
  return withXState ? { regs, mask, xstate: pt.getXState(tid) } : { regs, mask };
}

export { needsRestart, resumeRegs } from './restart.js';

/** Lowest address the thread may be using: the 128-byte red zone lies below rsp. */
export function belowRedZone(rsp: bigint, reserve = 0): bigint {
  return (rsp - 128n - BigInt(reserve)) & ~15n;
}

/**
 * Registers for running injected code on a saved thread: orig_rax = -1 (no
 * restart of the interrupted syscall with these registers), TF and DF clear
 * (the ABI requires DF clear at function entry); the caller chooses rip and
 * an rsp below the red zone (placeArgs).
 */
export function injectionRegs(saved: Regs, patch: Partial<Regs> & { rip: bigint; rsp: bigint }): Regs {
  const r = cloneRegs(saved);
  r.orig_rax = u64(-1);
  r.eflags = saved.eflags & ~(EFLAGS_TF | EFLAGS_DF);
  return Object.assign(r, patch);
}

/** Every signal blocked while a thread is borrowed, except those a fault raises (blocking those makes the kernel reset their handlers). */
export const INJECTION_SIGMASK = FAULT_SIGNALS.reduce((m, s) => m & ~(1n << BigInt(s - 1)), (1n << 64n) - 1n);

export type InjectionEvent =
  | { kind: 'syscall-entry'; rip: bigint; nr: bigint }
  | { kind: 'syscall-exit'; rip: bigint; rval: bigint }
  | { kind: 'fault'; signal: number; addr: bigint }
  | { kind: 'timeout' }
  | { kind: 'gone' };

/** Per-injection bookkeeping of things to hand back to the thread afterwards. */
export class InjectionContext {
  /** Stop signals (SIGSTOP...) that arrived meanwhile; re-sent after the thread is restored. */
  heldStops: number[] = [];
  /** Where the thread currently sits: a syscall-stop needs the restart treatment, an interrupt stop does not. */
  at: 'interrupt' | 'syscall-entry' | 'syscall-exit' | 'signal' = 'interrupt';

  private resumed = false;

  constructor(
    readonly session: InjectionHost,
    readonly t: Tracee,
    public deadline: number,
    readonly op: 'syscall' | 'call',
  ) {
    t.busy = true;
  }

  /** Hands the thread back to the session's bookkeeping. */
  done(): void {
    this.t.busy = false;
  }

  /** Resumes to the next syscall-stop or fault, absorbing everything else. */
  next(): InjectionEvent {
    const { t } = this;
    for (;;) {
      t.state = 'running';
      try {
        pt.syscall(t.tid, 0);
      } catch (e) {
        if (e instanceof SysError) return this.gone();
        throw e;
      }
      if (!this.resumed) {
        this.resumed = true;
        this.session.step('running', t.tid, this.op);
      }
      for (;;) {
        const ev = t.wait(this.deadline, () => this.session.service());
        if (ev === undefined) return { kind: 'timeout' };
        if (ev.kind !== 'stopped') return this.gone();
        t.state = 'stopped';
        if (isSyscallStop(ev)) {
          const info = pt.getSyscallInfo(t.tid);
          this.at = info.op === SYSCALL_INFO_OP.ENTRY ? 'syscall-entry' : 'syscall-exit';
          if (info.op === SYSCALL_INFO_OP.ENTRY) return { kind: 'syscall-entry', rip: info.rip, nr: info.nr };
          if (info.op === SYSCALL_INFO_OP.EXIT)
            return { kind: 'syscall-exit', rip: info.rip, rval: info.rval };
          break;
        }
        if (isSignalStop(ev) && FAULT_SIGNALS.includes(ev.signal)) {
          this.at = 'signal';
          return { kind: 'fault', signal: ev.signal, addr: pt.getSigInfo(t.tid).addr };
        }
        if (isSignalStop(ev)) this.heldStops.push(ev.signal); // only unblockable stop signals get here
        if (isEventStop(ev)) this.at = 'interrupt';
        break; // an event stop, a held signal: resume and keep going
      }
    }
  }

  /** Brings a running (timed-out) thread to a stop so it can be restored. */
  interrupt(): boolean {
    const { t } = this;
    try {
      pt.interrupt(t.tid);
    } catch {
      return false;
    }
    for (;;) {
      const ev = t.wait(performance.now() + this.session.stopTimeoutMs);
      if (ev === undefined || ev.kind !== 'stopped') return false;
      t.state = 'stopped';
      if (isEventStop(ev)) {
        this.at = 'interrupt';
        return true;
      }
      if (isSyscallStop(ev)) {
        this.at = pt.getSyscallInfo(t.tid).op === SYSCALL_INFO_OP.ENTRY ? 'syscall-entry' : 'syscall-exit';
        return true;
      }
      if (FAULT_SIGNALS.includes(ev.signal)) {
        this.at = 'signal';
        return true;
      }
      this.heldStops.push(ev.signal);
      pt.cont(t.tid, 0);
    }
  }

  /**
   * Puts the saved state back: vector state, then the signal mask, then the
   * registers (in that order, so that a tracer dying in between leaves the
   * stub's restore path or the original code, never a mix), then lets the
   * kernel handle syscall restart and pending signals from an interrupt stop.
   */
  restore(saved: SavedThread): void {
    const { t } = this;
    if (this.at === 'syscall-entry') this.skipSyscall();
    if (saved.xstate) pt.setXState(t.tid, saved.xstate);
    pt.setSigMask(t.tid, saved.mask);
    pt.setRegs(t.tid, saved.regs);
    // At a syscall-exit stop the kernel no longer restarts the thread's own syscall by itself (see Tracee.restartPending);
    // at an interrupt or signal-delivery stop it still will (a fault signal is dropped by resuming with 0).
    t.restartPending = this.at === 'syscall-exit' && needsRestart(saved.regs);
    t.restartFrom = t.restartPending ? { regs: saved.regs, mask: saved.mask } : undefined;
    for (const sig of this.heldStops) tgkill(this.session.pid, t.tid, sig);
    this.heldStops = [];
    this.session.step('restored', t.tid, this.op);
  }

  /**
   * At a syscall-entry stop the kernel is about to run whatever orig_rax
   * says; restoring there would run the thread's own interrupted syscall
   * with a bogus result. Cancel it (orig_rax = -1) and go to its exit stop.
   */
  private skipSyscall(): void {
    const r = pt.getRegs(this.t.tid);
    r.orig_rax = u64(-1);
    pt.setRegs(this.t.tid, r);
    for (;;) {
      pt.syscall(this.t.tid, 0);
      const ev = this.t.wait(performance.now() + this.session.stopTimeoutMs);
      if (ev === undefined || ev.kind !== 'stopped')
        throw new Error(`thread ${this.t.tid} did not leave a cancelled syscall`);
      if (isSyscallStop(ev)) break;
      if (isSignalStop(ev)) this.heldStops.push(ev.signal);
    }
    this.at = 'syscall-exit';
  }

  private gone(): InjectionEvent {
    this.t.markGone();
    return { kind: 'gone' };
  }
}
