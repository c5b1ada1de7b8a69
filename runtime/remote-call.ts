/**
 * Function calls executed by a stopped thread of the target (dlopen,
 * pthread_atfork, __register_frame_info, IFUNC resolvers...).
 *
 * System V ABI: integer arguments in rdi, rsi, rdx, rcx, r8, r9; rsp + 8
 * 16-byte aligned at entry, below the 128-byte red zone and below any bytes
 * passed by address; DF clear; al = 0 (no vector arguments for varargs).
 * The return address is the stub block's `call_return`, so the function
 * returns into code that ends in the marker rt_sigprocmask: the tracer sees
 * its syscall-entry stop (no breakpoint, no SIGTRAP that would kill an
 * orphaned thread), reads the result from r12, and restores the thread
 * (general registers, signal mask and XSAVE state). Every syscall the
 * function makes is a syscall-stop the tracer passes over.
 *
 * Borrowing caveat (docs/RUNTIME.md, "Remote function calls"): a call that needs a lock held by a stopped
 * thread never returns. Make calls while the other threads run (borrow), and
 * prefer a thread that is not inside the allocator or the loader. On timeout
 * the thread is restored, but whatever the call had half done stays so.
 */
import { ERESTART_RESTARTBLOCK, NR, SYSCALL_INFO_OP } from './sys/constants.js';
import * as pt from './sys/ptrace.js';
import { signed, type Regs } from './sys/regs.js';
import { isSignalStop, isSyscallStop } from './sys/wait.js';
import { procError } from './errors.js';
import {
  InjectionContext,
  injectionRegs,
  INJECTION_SIGMASK,
  needsRestart,
  resumeRegs,
  saveThread,
} from './injection.js';
import { placeArgs, syscallName, type RemoteArg } from './remote-syscall.js';
import type { InjectionHost } from './injection-host.js';
import { ENTRY } from './stub/code.js';
import { SLOT_STATE } from './stub/layout.js';
import { blockAddress, releaseSlot, writeSlot } from './stub/slots.js';
import type { Tracee } from './tracee.js';
import { note } from './sys/tally.js';
import { hex } from '../common/format.js';
import { u64Bytes } from '../common/u64.js';

export interface CallOptions {
  /** Give up after this many ms (default 10000); the thread is restored and PROC_CALL_TIMEOUT thrown. */
  timeoutMs?: number;
  /**
   * The called function makes no timed sleep of its own (and runs with
   * signals blocked), so it cannot overwrite the kernel's restart_block: a
   * thread stopped in a timed sleep is used at once instead of being let
   * finish its sleep first (awaitCleanStop). True for the runtime's own
   * calls (dlopen, dlsym, __register_atfork, __register_frame, IFUNC
   * resolvers); leave it unset for arbitrary functions.
   */
  noTimedSleep?: boolean;
}

const CALL_ARG_REGS = ['rdi', 'rsi', 'rdx', 'rcx', 'r8', 'r9'] as const;

/**
 * A thread stopped inside a timed sleep (nanosleep, clock_nanosleep, poll or
 * a futex wait with a timeout) resumes it through restart_syscall, which
 * reads the remaining time from the kernel's per-thread restart_block. A
 * called function that sleeps or is interrupted itself overwrites that block,
 * and the thread's own sleep would then end early with EINTR. So such a
 * thread is first let go on until its sleep returns (traced to the
 * syscall-exit stop), a point where nothing depends on the kernel's memory.
 * Remote syscalls do not need this: the ones the runtime makes never touch
 * restart_block.
 */
/** Stopped inside a timed sleep that the kernel resumes through restart_syscall (see awaitCleanStop). */
export function inTimedSleep(r: Regs, insn?: Buffer): boolean {
  if (signed(r.rax) === BigInt(-ERESTART_RESTARTBLOCK) && needsRestart(r)) return true;
  // The same sleep restarted at resume (Tracee.settleRestart) and stopped before it ran: rip on a `syscall`
  // instruction that will make restart_syscall.
  return (
    r.rax === BigInt(NR.restart_syscall) &&
    signed(r.orig_rax) < 0n &&
    insn !== undefined &&
    insn[0] === 0x0f &&
    insn[1] === 0x05
  );
}

function awaitCleanStop(s: InjectionHost, t: Tracee, deadline: number): void {
  t.settleRestart(deadline);
  const r = pt.getRegs(t.tid);
  if (!inTimedSleep(r, s.memory.tryRead(r.rip, 2))) return;
  let sig = 0;
  t.busy = true;
  try {
    for (;;) {
      t.state = 'running';
      pt.syscall(t.tid, sig);
      sig = 0;
      const ev = t.wait(deadline, () => s.service());
      if (ev === undefined) {
        pt.interrupt(t.tid);
        t.awaitStop(performance.now() + s.stopTimeoutMs);
        throw procError(
          'PROC_NO_THREAD',
          `thread ${t.tid} of process ${s.pid} is in a timed sleep that did not end in time; a call on it would cut the sleep short`,
          'Make the call on another thread, or with a longer timeout.',
          { pid: s.pid, tid: t.tid },
        );
      }
      if (ev.kind !== 'stopped') throw s.threadGone(t, 'waiting for a sleeping thread');
      t.state = 'stopped';
      if (isSignalStop(ev))
        sig = ev.signal; // delivered on the next resume, as it would have been
      else if (
        isSyscallStop(ev) &&
        pt.getSyscallInfo(t.tid).op === SYSCALL_INFO_OP.EXIT &&
        !needsRestart(pt.getRegs(t.tid))
      )
        return;
    }
  } finally {
    t.busy = false;
  }
}

export function remoteCall(
  s: InjectionHost,
  t: Tracee,
  fn: bigint,
  args: ReadonlyArray<RemoteArg>,
  opts: CallOptions = {},
): bigint {
  if (args.length > 6) throw new Error('remote calls take at most 6 integer arguments');
  note('call');
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const { base, slot } = s.slotFor(t);
  // A restart still pending from an earlier injection (Tracee.restartPending) needs no extra stop here: the call
  // saves the thread's registers as they are and puts them back at the same kind of stop, the restart still pending.
  if (!opts.noTimedSleep) awaitCleanStop(s, t, performance.now() + timeoutMs);
  const saved = saveThread(t.tid, true);
  const block = blockAddress(base, slot);
  const { values, low } = placeArgs(s, saved.regs, args);
  const entrySp = low - 16n; // 16-byte aligned; the return address goes just below it
  s.memory.write(entrySp - 8n, u64Bytes(block + BigInt(ENTRY.CALL_RETURN)));
  writeSlot(s.memory, base, slot, {
    state: SLOT_STATE.CALL,
    tid: t.tid,
    tgid: s.pid,
    mask: saved.mask,
    regs: resumeRegs(saved.regs),
    ...(saved.xstate ? { xstate: saved.xstate } : {}),
  });
  const regs = injectionRegs(saved.regs, { rip: fn, rsp: entrySp - 8n, rax: 0n });
  values.forEach((v, i) => (regs[CALL_ARG_REGS[i]!] = v));
  const ctx = new InjectionContext(s, t, performance.now() + timeoutMs, 'call');
  pt.setRegs(t.tid, regs);
  pt.setSigMask(t.tid, INJECTION_SIGMASK);
  s.step('redirected', t.tid, 'call');
  const marker = block + BigInt(ENTRY.MARKER_END);
  let result: bigint | undefined;
  let failure: Error | undefined;
  while (failure === undefined) {
    const ev = ctx.next();
    if (ev.kind === 'syscall-entry' && ev.rip !== marker)
      note(`syscall-in-call:${syscallName(Number(ev.nr))}`);
    if (
      ev.kind === 'syscall-entry' &&
      ev.rip === marker &&
      ev.nr === BigInt(NR.rt_sigprocmask) &&
      result === undefined
    ) {
      result = pt.getRegs(t.tid).r12;
      s.step('returned', t.tid, 'call');
    } else if (ev.kind === 'syscall-exit' && ev.rip === marker && result !== undefined) {
      break;
    } else if (ev.kind === 'fault') {
      failure = procError(
        'PROC_CALL_FAULT',
        `remote call to ${hex(fn)} in process ${s.pid} crashed with signal ${ev.signal} (fault address ${hex(ev.addr)}); thread ${t.tid} was restored`,
        'The function or its arguments are wrong for this process.',
        { pid: s.pid, tid: t.tid, fn: hex(fn), signal: ev.signal, addr: hex(ev.addr) },
      );
    } else if (ev.kind === 'timeout') {
      failure = procError(
        'PROC_CALL_TIMEOUT',
        `remote call to ${hex(fn)} in process ${s.pid} did not return within ${timeoutMs} ms; thread ${t.tid} was restored`,
        'It probably waits for a lock another thread holds; retry with the other threads running (borrow), or on another thread.',
        { pid: s.pid, tid: t.tid, fn: hex(fn), timeoutMs },
      );
      if (!ctx.interrupt()) throw s.threadGone(t, 'a remote call');
    } else if (ev.kind === 'gone') {
      throw s.threadGone(t, 'a remote call');
    }
  }
  ctx.restore(saved);
  ctx.done();
  releaseSlot(s.memory, base, slot);
  s.serviceSoon();
  if (failure) throw failure;
  return result!;
}
