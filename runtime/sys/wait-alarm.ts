/**
 * A timer that interrupts a blocking waitpid on this OS thread, so that the
 * tracer can block until a tracee stops (the CPU goes to the tracee, not to
 * a poll loop: on 2 cores a spinning tracer takes the core the stopped
 * thread needs) and still regain control at a deadline.
 *
 * Node's own signal handlers are installed with SA_RESTART, which restarts
 * waitpid instead of failing it with EINTR, so the timer uses a real-time
 * signal of its own whose handler (libc's getpid: it ignores its argument
 * and returns) is installed without SA_RESTART. The timer is a POSIX timer
 * aimed at this thread only (SIGEV_THREAD_ID): libuv's threads never see it.
 * After its first expiry it fires again every few milliseconds until it is
 * disarmed, which closes the race of an expiry just before waitpid is
 * entered (that signal would be handled without interrupting anything).
 *
 * When any step is refused (a seccomp filter, the signal already in use),
 * `available()` is false and callers wait in short naps instead.
 */
import { dlsymDefault, lastErrno, sigaction, sigrtmax, syscall0, syscallIIPP, syscallIPP } from './libc.js';

const SYS_gettid = 186;
const SYS_timer_create = 222;
const SYS_timer_settime = 223;
const CLOCK_MONOTONIC = 1;
const SIGEV_THREAD_ID = 4;
/** After the first expiry: how often the signal repeats until disarmed. */
const REPEAT_NS = 5_000_000n;

let state: { timerId: number; spec: Buffer } | null | undefined;

function setup(): { timerId: number; spec: Buffer } | null {
  const sig = sigrtmax() - 2;
  const handler = dlsymDefault('getpid');
  if (handler === 0n) return null;
  const old = Buffer.alloc(152);
  if (sigaction(sig, null, old) !== 0) return null;
  const current = old.readBigUInt64LE(0);
  // SIG_DFL, or our handler installed by another isolate of this process: anything else belongs to someone.
  if (current !== 0n && current !== handler) return null;
  const act = Buffer.alloc(152);
  act.writeBigUInt64LE(handler, 0);
  act.writeInt32LE(0, 136); // no SA_RESTART: waitpid fails with EINTR
  if (sigaction(sig, act, null) !== 0) return null;
  const sev = Buffer.alloc(64); // struct sigevent: value, signo, notify, tid
  sev.writeInt32LE(sig, 8);
  sev.writeInt32LE(SIGEV_THREAD_ID, 12);
  sev.writeInt32LE(Number(syscall0(SYS_gettid)), 16);
  const id = Buffer.alloc(4);
  if (Number(syscallIPP(SYS_timer_create, CLOCK_MONOTONIC, sev, id)) !== 0) return null;
  return { timerId: id.readInt32LE(0), spec: Buffer.alloc(32) };
}

/** Whether blocking waits can be interrupted on this thread (set up on first use). */
export function available(): boolean {
  if (state === undefined) state = setup();
  return state !== null;
}

/** Arms the alarm to interrupt a blocking call `ms` from now (and every few ms after). */
export function arm(ms: number): void {
  const s = state!;
  const ns = BigInt(Math.max(1, Math.round(ms * 1e6)));
  s.spec.writeBigInt64LE(0n, 0); // it_interval
  s.spec.writeBigInt64LE(REPEAT_NS, 8);
  s.spec.writeBigInt64LE(ns / 1_000_000_000n, 16); // it_value
  s.spec.writeBigInt64LE(ns % 1_000_000_000n, 24);
  if (Number(syscallIIPP(SYS_timer_settime, s.timerId, 0, s.spec, null)) !== 0)
    throw new Error(`timer_settime failed: errno ${lastErrno()}`);
}

export function disarm(): void {
  const s = state!;
  s.spec.fill(0);
  syscallIIPP(SYS_timer_settime, s.timerId, 0, s.spec, null);
}
