/**
 * One seized thread and the rules for moving it between "running" and
 * "stopped" without losing or inventing anything the program would see:
 *
 * - A signal that arrives while we stop a thread is delivered at once with
 *   its original siginfo (PTRACE_CONT with the same signal number from its
 *   signal-delivery-stop); the pending PTRACE_INTERRUPT then stops the thread
 *   right after the kernel has set up the handler frame, before any user code.
 * - A group-stop (SIGSTOP, SIGTSTP... sent to the process) is honoured: the
 *   thread stays job-control stopped (PTRACE_LISTEN) instead of running.
 * - Stops we did not ask for (a late interrupt) are absorbed by resuming again.
 */
import { readStatus, threadState } from './procfs.js';
import { resumeRegs } from './restart.js';
import type { Regs } from './sys/regs.js';
import { SIG } from './sys/constants.js';
import { ECHILD, ESRCH, SysError } from './sys/errno.js';
import * as pt from './sys/ptrace.js';
import {
  isEventStop,
  isGroupStop,
  isSignalStop,
  pollThread,
  waitThread,
  type WaitEvent,
} from './sys/wait.js';

export type TraceeState = 'running' | 'stopped' | 'gone';

export class Tracee {
  state: TraceeState = 'running';
  /** Stopped in a group-stop (job control): resume means PTRACE_LISTEN, not PTRACE_CONT. */
  groupStopped = false;
  /** A PTRACE_INTERRUPT was sent and its stop has not been seen yet. */
  private interrupting = false;
  /** Driven by an injection: its events are not Session.service's to handle. */
  busy = false;
  /**
   * Its own registers were put back at a syscall-exit stop while its
   * interrupted syscall still has to be restarted. The kernel applies the
   * restart only on the signal path: PTRACE_DETACH goes through it by itself
   * (it sets TIF_SIGPENDING), resume() sends the thread through it first.
   */
  restartPending = false;
  /** With restartPending: the thread's own registers and mask, for settleRestart's quick way. */
  restartFrom: { regs: Regs; mask: bigint } | undefined;

  constructor(readonly tid: number) {}

  /** A stop was requested and not seen yet: its events belong to awaitStop, not to Session.service. */
  get stopRequested(): boolean {
    return this.interrupting || this.busy;
  }

  /** Asks a running thread to stop; `awaitStop` collects the stop. */
  requestStop(): void {
    if (this.state !== 'running' || this.interrupting) return;
    try {
      pt.interrupt(this.tid);
      this.interrupting = true;
    } catch (e) {
      if (e instanceof SysError && e.errno === ESRCH) this.markGone();
      else throw e;
    }
  }

  /**
   * Waits until the thread is in a clean stop (interrupt or group-stop).
   * Returns false if the thread exited, undefined on timeout.
   */
  awaitStop(deadline: number, onIdle?: () => void): boolean | undefined {
    while (this.state === 'running') {
      const ev = this.waitUnlessZombie(deadline, onIdle);
      if (ev === 'zombie') {
        this.markGone();
        return false;
      }
      if (ev === undefined) return undefined;
      this.absorbWhileStopping(ev);
    }
    return this.state === 'stopped';
  }

  /**
   * wait(), ended early ('zombie') once /proc shows the thread as a zombie,
   * looked at every 50 ms while idle and at the deadline: a thread of a
   * killed process never stops, and a traced leader's exit is only reported
   * once its other threads are reaped, so /proc says it first.
   */
  private waitUnlessZombie(deadline: number, onIdle?: () => void): WaitEvent | undefined | 'zombie' {
    let next = performance.now() + 50;
    let zombie = false;
    const ev = this.wait(deadline, onIdle, () => {
      const now = performance.now();
      if (now < next) return false;
      next = now + 50;
      return (zombie = this.isZombie());
    });
    if (ev === undefined && !zombie) zombie = this.isZombie();
    return zombie ? 'zombie' : ev;
  }

  private isZombie(): boolean {
    return /^[ZX]$/.test(threadState(this.tid, this.tid) ?? 'X');
  }

  /** Resumes a stopped thread the way it would have gone on without us. */
  resume(deadline = performance.now() + 2000): void {
    if (this.state !== 'stopped') return;
    try {
      this.settleRestart(deadline, true);
      if (this.state !== 'stopped') return;
      if (this.groupStopped) pt.listen(this.tid);
      else pt.cont(this.tid, 0);
      this.state = 'running';
    } catch (e) {
      if (e instanceof SysError && e.errno === ESRCH) this.markGone();
      else throw e;
    }
  }

  /**
   * With a restart pending, moves the thread from its syscall-exit stop to an
   * interrupt stop inside get_signal(), where the kernel restarts syscalls.
   * Needed before resuming it for anything but a detach or an injection.
   * `resuming`: the thread is resumed right after (not lent to a call), so
   * when no signal is pending the restart is made here instead, without
   * that extra stop (restartsNow).
   */
  settleRestart(deadline: number, resuming = false): void {
    if (!this.restartPending || this.state !== 'stopped') return;
    this.restartPending = false;
    const own = this.restartFrom;
    this.restartFrom = undefined;
    // Not for a thread in a group-stop: PTRACE_LISTEN, its way back, needs the interrupt stop.
    if (resuming && own && !this.groupStopped && restartsNow(this.tid, own.mask)) {
      pt.setRegs(this.tid, resumeRegs(own.regs));
      return;
    }
    pt.interrupt(this.tid);
    pt.cont(this.tid, 0);
    this.state = 'running';
    this.interrupting = true;
    this.awaitStop(deadline);
  }

  /** Handles an event seen while the thread should be running (see Session.service). */
  absorbWhileRunning(ev: WaitEvent): void {
    if (ev.kind !== 'stopped') return this.markGone();
    if (isSignalStop(ev)) return pt.cont(this.tid, ev.signal);
    if (isGroupStop(ev)) {
      this.groupStopped = true;
      return pt.listen(this.tid);
    }
    this.groupStopped = false;
    pt.cont(this.tid, 0);
  }

  /** Waits for this thread's next event; marks it gone when the kernel no longer knows it. */
  wait(deadline: number, onIdle?: () => void, giveUp?: () => boolean): WaitEvent | undefined {
    try {
      const ev = waitThread(this.tid, deadline, onIdle, giveUp);
      if (ev && ev.kind !== 'stopped') this.markGone();
      return ev;
    } catch (e) {
      if (e instanceof SysError && e.errno === ECHILD) {
        this.markGone();
        return { kind: 'exited', code: 0 };
      }
      throw e;
    }
  }

  /**
   * Detaches; a running thread is stopped first (PTRACE_DETACH needs a
   * stopped tracee). Returns false if it did not stop before `deadline`.
   */
  detach(deadline: number): boolean {
    if (this.state === 'gone') {
      this.reap();
      return true;
    }
    if (this.state === 'running') {
      this.requestStop();
      while (this.state === 'running') {
        const ev = this.waitUnlessZombie(deadline);
        if (ev === 'zombie') {
          this.reap();
          return true;
        }
        if (ev === undefined) return false;
        if (ev.kind !== 'stopped') return true;
        if (isSignalStop(ev)) {
          this.detachWith(ev.signal); // delivered as the thread goes free
          return true;
        }
        this.state = 'stopped';
      }
    }
    this.detachWith(0);
    return true;
  }

  private detachWith(sig: number): void {
    this.restartPending = false; // detaching takes the signal path by itself
    try {
      pt.detach(this.tid, sig);
    } catch (e) {
      if (!(e instanceof SysError && e.errno === ESRCH)) throw e;
      this.reap();
    }
    this.state = 'gone';
  }

  private absorbWhileStopping(ev: WaitEvent): void {
    if (ev.kind !== 'stopped') return;
    if (isSignalStop(ev)) {
      pt.cont(this.tid, ev.signal); // our interrupt is still pending and stops it right after
      return;
    }
    if (isEventStop(ev)) {
      this.interrupting = false;
      this.groupStopped = ev.signal !== SIG.SIGTRAP;
      this.state = 'stopped';
      return;
    }
    pt.cont(this.tid, 0); // a syscall-stop or other event we did not ask for
  }

  markGone(): void {
    this.state = 'gone';
    this.interrupting = false;
  }

  /** Collects the exit status of a traced thread that died, so it does not linger as a zombie. */
  reap(): void {
    this.state = 'gone';
    try {
      pollThread(this.tid);
    } catch {
      /* not ours any more */
    }
  }
}

/**
 * Whether a thread about to be resumed from a syscall-exit stop may restart
 * its own interrupted system call by taking the registers the kernel would
 * return with (resumeRegs: rip on the `syscall` instruction again, rax the
 * call's number or restart_syscall) instead of going through an interrupt
 * stop for the kernel to decide: one stop fewer each time a lent thread goes
 * back to work. The two differ only when a signal its own mask lets through
 * is pending, which the kernel would deliver first and, for most calls,
 * answer with EINTR; so a pending signal (SigPnd, ShdPnd of
 * /proc/TID/task/TID/status) keeps the kernel's way. A signal arriving
 * between this look and the resume, microseconds later, is one that
 * arrived just after the kernel restarted the call: the program cannot
 * tell the two apart. Held stop signals are re-sent before this look.
 */
function restartsNow(tid: number, ownMask: bigint): boolean {
  const st = readStatus(tid, tid);
  return st !== undefined && ((st.sigPnd | st.shdPnd) & ~ownMask) === 0n;
}
