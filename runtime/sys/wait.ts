/**
 * waitpid on one thread (always __WALL: threads are clone children), the
 * decoding of its status word, and a deadline-aware wait that blocks in the
 * kernel (no polling) but never for longer than the caller allows.
 */
import { PTRACE_EVENT, SIG, WNOHANG, __WALL } from './constants.js';
import { EINTR, SysError } from './errno.js';
import { lastErrno, waitpid } from './libc.js';
import * as alarm from './wait-alarm.js';
import { note } from './tally.js';

export type WaitEvent =
  | { kind: 'exited'; code: number }
  | { kind: 'killed'; signal: number }
  /** A ptrace stop; `event` is PTRACE_EVENT_* (0 for signal-delivery and syscall stops). */
  | { kind: 'stopped'; signal: number; event: number };

export function decodeStatus(status: number): WaitEvent {
  const low = status & 0x7f;
  if (low === 0) return { kind: 'exited', code: (status >> 8) & 0xff };
  if ((status & 0xff) === 0x7f)
    return { kind: 'stopped', signal: (status >> 8) & 0xff, event: (status >> 16) & 0xff };
  return { kind: 'killed', signal: low };
}

/** Syscall-stops under PTRACE_O_TRACESYSGOOD. */
export function isSyscallStop(e: WaitEvent): boolean {
  return e.kind === 'stopped' && e.event === 0 && e.signal === (SIG.SIGTRAP | 0x80);
}

/** PTRACE_EVENT_STOP: an interrupt (signal SIGTRAP) or a group-stop (signal SIGSTOP, SIGTSTP...). */
export function isEventStop(e: WaitEvent): boolean {
  return e.kind === 'stopped' && e.event === PTRACE_EVENT.STOP;
}

export function isGroupStop(e: WaitEvent): boolean {
  return isEventStop(e) && e.kind === 'stopped' && e.signal !== SIG.SIGTRAP;
}

/** A signal the tracee is about to receive (it can be delivered, changed or suppressed on resume). */
export function isSignalStop(e: WaitEvent): boolean {
  return e.kind === 'stopped' && e.event === 0 && e.signal !== (SIG.SIGTRAP | 0x80);
}

const statusBuf = Buffer.alloc(4);

/** Each stop the tracer sees is a stop the target made (tally.ts). */
function counted(e: WaitEvent): WaitEvent {
  if (e.kind === 'stopped') note('stop');
  return e;
}

/** One non-blocking poll; undefined when nothing is pending. Throws SysError(ECHILD) when tid is not ours. */
export function pollThread(tid: number): WaitEvent | undefined {
  for (;;) {
    const r = waitpid(tid, statusBuf, __WALL | WNOHANG);
    note(r === 0 ? 'wait:empty' : 'wait');
    if (r === 0) return undefined;
    if (r === tid) return counted(decodeStatus(statusBuf.readInt32LE(0)));
    const e = lastErrno();
    if (e === EINTR) continue;
    throw new SysError('waitpid', e);
  }
}

const sleeper = new Int32Array(new SharedArrayBuffer(4));

function sleepMs(ms: number): void {
  Atomics.wait(sleeper, 0, 0, ms);
}

/** How long one blocking wait lasts at most before `onIdle`/`giveUp` are asked again. */
const SLICE_MS = 50;

/**
 * Blocks in waitpid on `tid` for at most `ms`; undefined when the alarm
 * ended the wait first. Throws SysError(ECHILD) when tid is not ours.
 */
function blockingWait(tid: number, ms: number): WaitEvent | undefined {
  alarm.arm(ms);
  try {
    const r = waitpid(tid, statusBuf, __WALL);
    note('wait');
    if (r === tid) return counted(decodeStatus(statusBuf.readInt32LE(0)));
    const e = lastErrno();
    if (e === EINTR) return undefined;
    throw new SysError('waitpid', e);
  } finally {
    alarm.disarm();
  }
}

/**
 * Sets up this thread's wait alarm now (a signal handler and a POSIX timer:
 * four system calls and koffi's first calls of them). Done lazily it lands
 * in the first wait of a process, which for a re-apply or a revert, which
 * make no remote system call first, is the wait for the pause's first stop.
 */
export function prepareWaits(): void {
  alarm.available();
}

/**
 * Waits for the next event of `tid` until `deadline` (a performance.now()
 * value); undefined on timeout. The thread blocks in waitpid (an alarm ends
 * each wait after at most SLICE_MS), so the CPU goes to the tracee: on two
 * cores a polling tracer takes the core a stopped thread needs to reach its
 * stop. Between slices, `onIdle` serves the session's other threads and
 * `giveUp` may end the wait early (undefined, as at the deadline). Where the
 * alarm cannot be set up, the wait naps in short steps instead.
 */
export function waitThread(
  tid: number,
  deadline: number,
  onIdle?: () => void,
  giveUp?: () => boolean,
): WaitEvent | undefined {
  let nap = 0.05;
  for (let first = true; ; first = false) {
    const now = performance.now();
    if (now >= deadline) return pollThread(tid);
    if (!first) {
      onIdle?.();
      if (giveUp?.()) return undefined;
    }
    if (alarm.available()) {
      const ev = blockingWait(tid, Math.min(SLICE_MS, deadline - now));
      if (ev) return ev;
      continue;
    }
    const ev = pollThread(tid);
    if (ev) return ev;
    sleepMs(Math.min(nap, deadline - now));
    nap = Math.min(nap * 2, 2);
  }
}
