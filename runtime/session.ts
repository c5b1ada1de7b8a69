/**
 * A tracer session over one process: every thread seized with PTRACE_SEIZE
 * (no stop, invisible to the program and to its parent), then either one
 * thread borrowed while the others run (staging) or all threads stopped (the
 * switch), and every thread detached on every path (`withSession`).
 *
 * All ptrace calls happen synchronously on the JS thread that opened the
 * session: the kernel only accepts requests from the attaching OS thread.
 */
import { PTRACE_O } from './sys/constants.js';
import { EPERM, ESRCH, SysError } from './sys/errno.js';
import * as pt from './sys/ptrace.js';
import { prepareWaits } from './sys/wait.js';
import type { Regs } from './sys/regs.js';
import { alreadyTraced, exited, notFound, permissionDenied, procError, zombie } from './errors.js';
import { RemoteMemory, poke, procMemWrite } from './memory.js';
import { PauseClock, type PauseRecord } from './pause.js';
import {
  listTasks,
  processAlive,
  processAliveSettled,
  readStatus,
  readWchan,
  threadState,
} from './procfs.js';
import { holdSignals, releaseSignals } from './signal-hold.js';
import { checkTarget } from './target.js';
import { Tracee } from './tracee.js';
import { remoteCall, type CallOptions } from './remote-call.js';
import {
  remoteSyscall,
  RemoteSyscalls,
  stubVia,
  SyscallSequence,
  syscallName,
  type RemoteArg,
  type SyscallOptions,
} from './remote-syscall.js';
import { createStub, findStub, type StubInfo } from './stub/stub.js';
import { claimSlot } from './stub/slots.js';
import type { InjectionHost, InjectionOp, InjectionStep } from './injection-host.js';

export interface SessionOptions {
  /** How long a thread may take to reach a stop, in ms (default 2000). */
  stopTimeoutMs?: number;
  /**
   * Hold SIGINT/SIGTERM/SIGHUP sent to this (tracer) process until the
   * session is closed, so Ctrl-C never leaves a thread mid-injection.
   * Default true; SIGKILL cannot be held, which is what the stub page is for.
   */
  deferSignals?: boolean;
  /**
   * Observer called at each step of an injection (diagnostics, and the tests
   * that kill the tracer at an exact step to exercise the stub's restore path).
   */
  onStep?: (step: InjectionStep, info: { tid: number; op: InjectionOp }) => void;
}

export type { InjectionStep } from './injection-host.js';

/**
 * PTRACE_O_TRACESYSGOOD is essential, not cosmetic: if the tracer dies while
 * a thread sits in a syscall-stop, the kernel resumes it with the stop's code
 * as a signal number; with TRACESYSGOOD that is SIGTRAP|0x80, an invalid
 * signal that is dropped, without it a SIGTRAP that kills the process.
 * No TRACECLONE: threads created while a thread is borrowed run untraced,
 * and stopAll() rescans /proc/PID/task until the set is stable.
 * Never PTRACE_O_EXITKILL: the target must outlive the tracer.
 */
const SEIZE_OPTIONS = PTRACE_O.TRACESYSGOOD;

export class Session implements InjectionHost {
  readonly memory: RemoteMemory;
  private readonly clock = new PauseClock();
  private readonly tracees = new Map<number, Tracee>();
  private readonly zombies = new Set<number>();
  private borrowedTid: number | undefined;
  private closed = false;
  private lastService = 0;
  private stubInfo: StubInfo | undefined;
  /** Stub slot claimed for each thread: only this session can claim slots while it is attached. */
  private readonly slots = new Map<number, number>();
  private readonly holdsSignals: boolean;
  /** Serves traced-but-running threads whenever the event loop is free (async callers awaiting I/O). */
  private serviceTimer: NodeJS.Timeout | undefined;
  readonly stopTimeoutMs: number;
  private readonly onStep: SessionOptions['onStep'];
  /** Inside syscalls(): remote system calls share one save and restore of their thread. */
  private batching = false;
  private sequence: SyscallSequence | undefined;

  private constructor(
    readonly pid: number,
    opts: SessionOptions,
  ) {
    this.memory = new RemoteMemory(pid);
    this.stopTimeoutMs = opts.stopTimeoutMs ?? 2000;
    this.onStep = opts.onStep;
    this.holdsSignals = opts.deferSignals ?? true;
    if (this.holdsSignals) holdSignals();
    // The timer serves only a session still open when its opener yields to the event loop (an async caller): a
    // synchronous apply (each process of --all) opens and closes its session before any microtask runs, and
    // creating and unreferencing an interval for each cost about as much as the rest of a session's set-up.
    queueMicrotask(() => {
      if (this.closed) return;
      this.serviceTimer = setInterval(() => this.service(), 2);
      this.serviceTimer.unref();
    });
  }

  /** Seizes every thread of `pid`, rescanning until no new thread appears. Nothing is stopped. */
  static open(pid: number, opts: SessionOptions = {}): Session {
    checkTarget(pid);
    // Every later wait, the pause's included, finds its alarm ready.
    prepareWaits();
    const s = new Session(pid, opts);
    try {
      for (let round = 0; round < 100 && s.seizeNewThreads(); round++);
      if (s.tracees.size === 0) throw s.goneError('attaching');
    } catch (e) {
      detachAfterError(s, e);
      throw e;
    }
    return s;
  }

  /** Every pause of this session so far, in order. */
  get pauses(): readonly PauseRecord[] {
    return this.clock.records;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Live seized thread ids. */
  tids(): number[] {
    return [...this.tracees.values()].filter((t) => t.state !== 'gone').map((t) => t.tid);
  }

  isStopped(tid: number): boolean {
    return this.tracees.get(tid)?.state === 'stopped';
  }

  /** The borrowed thread, if any. */
  get borrowed(): number | undefined {
    return this.borrowedTid;
  }

  /** Stops every thread (for the switch) and returns how many are stopped. */
  stopAll(): number {
    return this.guard('stopping all threads', undefined, () => this.stopAllUnguarded());
  }

  private stopAllUnguarded(): number {
    this.ensureOpen();
    this.endSequence();
    this.clock.begin('all');
    const deadline = performance.now() + this.stopTimeoutMs;
    for (let round = 0; ; round++) {
      for (const t of this.tracees.values()) t.requestStop();
      for (const t of this.tracees.values()) this.awaitStop(t, deadline);
      // Stopped threads cannot create new ones, so once a scan finds none the set is complete.
      if (!this.seizeNewThreads() || round > 1000) break;
    }
    const n = this.tids().length;
    if (n === 0) throw this.goneError('stopping all threads');
    this.clock.holding(n);
    return n;
  }

  /**
   * Stops one thread (default: the main thread, else the first live one) and
   * leaves the others running. Remote syscalls and calls then use it.
   */
  borrow(tid?: number): number {
    return this.guard('borrowing a thread', undefined, () => this.borrowUnguarded(tid));
  }

  private borrowUnguarded(tid?: number): number {
    this.ensureOpen();
    this.endSequence();
    const t = tid === undefined ? this.pickThread() : this.tracees.get(tid);
    if (!t || t.state === 'gone')
      throw procError(
        'PROC_NO_THREAD',
        `thread ${tid} of process ${this.pid} is not available`,
        'The thread has exited or is not part of this process; list the threads with tids().',
        { pid: this.pid, tid },
      );
    this.clock.begin('borrow');
    t.requestStop();
    this.awaitStop(t, performance.now() + this.stopTimeoutMs);
    if (t.state !== 'stopped') throw this.threadGone(t, 'borrowing a thread');
    this.borrowedTid = t.tid;
    return t.tid;
  }

  /** Resumes every stopped thread and closes the current pause, which it returns. */
  resume(): PauseRecord | undefined {
    this.ensureOpen();
    this.endSequence();
    const deadline = performance.now() + this.stopTimeoutMs;
    this.guard('resuming', undefined, () => {
      for (const t of this.tracees.values()) t.resume(deadline);
    });
    this.borrowedTid = undefined;
    return this.clock.end();
  }

  /**
   * Detaches from every thread (stopping running ones first, as the kernel
   * requires). Never throws for threads that are gone; safe to call twice.
   */
  detach(): void {
    if (this.closed) return;
    let first: unknown;
    try {
      this.endSequence();
    } catch (e) {
      first = e;
    }
    this.closed = true;
    clearInterval(this.serviceTimer);
    // PTRACE_DETACH needs a stopped tracee: stop the running ones all at once, not one after another.
    const deadline = performance.now() + Math.max(this.stopTimeoutMs, 10_000);
    for (const t of this.tracees.values()) {
      try {
        if (t.state === 'running') t.requestStop();
      } catch (e) {
        first ??= e;
      }
    }
    const stuck: number[] = [];
    // Stopped threads first: that ends the pause as early as possible. The leader last: a traced leader's
    // exit is only reported once its other threads are reaped, so waiting on it first would wait for nothing.
    const rank = (t: Tracee) => (t.tid === this.pid ? 2 : t.state === 'stopped' ? 0 : 1);
    const order = [...this.tracees.values()].sort((a, b) => rank(a) - rank(b));
    for (const t of order) {
      try {
        if (!t.detach(deadline)) stuck.push(t.tid);
      } catch (e) {
        first ??= e;
      }
    }
    this.clock.end();
    this.borrowedTid = undefined;
    if (this.holdsSignals) releaseSignals();
    if (stuck.length > 0 && first === undefined && !processAliveSettled(this.pid))
      first = exited(this.pid, 'detaching');
    if (stuck.length > 0 && first === undefined) {
      first = procError(
        'PROC_STOP_TIMEOUT',
        `threads ${stuck.join(', ')} of process ${this.pid} did not stop to be detached; they stay traced until this process exits`,
        'Exit this process to release them.',
        { pid: this.pid, tids: stuck },
      );
    }
    if (first !== undefined)
      throw first instanceof SysError ? this.guardError('detaching', undefined, first) : first;
  }

  /** Registers of a stopped thread. */
  regs(tid: number): Regs {
    this.endSequence();
    const t = this.stoppedTracee(tid);
    return this.guard('reading registers', t, () => pt.getRegs(t.tid));
  }

  /**
   * Writes through page protections (a read-only GOT): one /proc/PID/mem
   * write where the kernel allows it, else PTRACE_POKEDATA word by word via a
   * stopped thread.
   */
  poke(addr: bigint, data: Buffer, tid?: number): void {
    const t = this.workerTracee(tid);
    if (!procMemWrite(this.pid, addr, data)) poke(this.pid, t.tid, addr, data);
  }

  /** A raw remote system call; returns rax (negative errno on failure, as bigint). */
  syscall(
    nr: number,
    args: ReadonlyArray<RemoteArg> = [],
    opts: SyscallOptions & { tid?: number } = {},
  ): bigint {
    const t = this.workerTracee(opts.tid);
    if (!this.batching)
      return this.guard(`a remote ${syscallName(nr)}`, t, () => remoteSyscall(this, t, nr, args, opts));
    if (this.sequence && this.sequence.t !== t) this.endSequence();
    return this.guard(`a remote ${syscallName(nr)}`, t, () => {
      this.sequence ??= new SyscallSequence(this, t, stubVia(this, t));
      try {
        return this.sequence.run(nr, args, opts);
      } catch (e) {
        // A failed call has restored the thread already; anything else (a thread gone, a bad argument) ends it here.
        const seq = this.sequence;
        this.sequence = undefined;
        try {
          seq?.end();
        } catch {
          /* the thread is gone */
        }
        throw e;
      }
    });
  }

  /**
   * Runs `fn` with every remote system call it makes on one thread sharing
   * one save and restore of that thread's registers, mask and stub slot
   * (SyscallSequence): four ptrace requests and a slot write less per call.
   * The thread's own state is back when `fn` returns or throws, and before
   * anything else uses the thread (a remote call, reading its registers,
   * resuming, borrowing another, detaching).
   */
  syscalls<T>(fn: () => T): T {
    const outer = this.batching;
    this.batching = true;
    let ok = false;
    try {
      const r = fn();
      ok = true;
      return r;
    } finally {
      this.batching = outer;
      if (!outer && ok) this.endSequence();
      else if (!outer) endQuietly(() => this.endSequence()); // the error at hand matters more
    }
  }

  /** Puts back the thread of an open sequence of system calls, if any. */
  private endSequence(): void {
    const seq = this.sequence;
    if (!seq) return;
    this.sequence = undefined;
    this.guard('restoring a thread after remote system calls', seq.t, () => seq.end());
  }

  /** Checked wrappers (mmap, memfd_create, ...) that throw PROC_SYSCALL_FAILED. */
  get sys(): RemoteSyscalls {
    return new RemoteSyscalls(this);
  }

  /** Calls `fn(args...)` in the target on a stopped thread (System V ABI, integer or by-address arguments); returns rax. */
  call(fn: bigint, args: ReadonlyArray<RemoteArg> = [], opts: CallOptions & { tid?: number } = {}): bigint {
    this.endSequence();
    const t = this.workerTracee(opts.tid);
    return this.guard('a remote call', t, () => remoteCall(this, t, fn, args, opts));
  }

  /**
   * The stub page: found (no stop needed), or created on a stopped thread.
   * Call it while staging so that the switch does not spend its pause on it.
   */
  stub(tid?: number): StubInfo {
    this.ensureOpen();
    this.stubInfo ??= findStub(this.pid, this.memory);
    if (this.stubInfo) return this.stubInfo;
    const t = this.workerTracee(tid);
    this.stubInfo = this.guard('setting up the stub page', t, () => createStub(this, t));
    return this.stubInfo;
  }

  /**
   * Serves events of threads that should be running (a signal arriving at
   * one of them stops it until the tracer lets it through). Runs from a 2 ms
   * timer whenever the event loop is free, while waiting for remote calls,
   * and after operations; call it yourself during long synchronous work.
   */
  service(): void {
    if (this.closed) return;
    this.lastService = performance.now();
    for (const t of this.tracees.values()) {
      if (t.state !== 'running' || t.stopRequested) continue;
      let ev;
      try {
        ev = t.wait(0);
      } catch {
        continue;
      }
      if (ev) t.absorbWhileRunning(ev);
    }
  }

  /** service() at most once a millisecond; cheap enough to call after every operation. */
  serviceSoon(): void {
    if (performance.now() - this.lastService > 1) this.service();
  }

  /** @internal The tracee for an injection: `tid` if given, else the borrowed thread, else a stopped one. */
  workerTracee(tid?: number): Tracee {
    this.ensureOpen();
    if (tid !== undefined) return this.stoppedTracee(tid);
    if (this.borrowedTid !== undefined && this.isStopped(this.borrowedTid))
      return this.tracees.get(this.borrowedTid)!;
    const leader = this.tracees.get(this.pid);
    if (leader?.state === 'stopped') return leader;
    for (const t of this.tracees.values()) if (t.state === 'stopped') return t;
    // No stopped thread left: the process died under us (every thread gone), or the caller forgot to stop one.
    if ([...this.tracees.values()].every((t) => t.state === 'gone') || !processAliveSettled(this.pid))
      throw exited(this.pid, 'the remote operation');
    throw new Error('no stopped thread: call borrow() or stopAll() first');
  }

  /** @internal The stub slot thread `t` uses; claimed on first use (see stub/slots.ts). */
  slotFor(t: Tracee): { base: bigint; slot: number } {
    const { base } = this.stub(t.tid);
    let slot = this.slots.get(t.tid);
    if (slot === undefined) {
      slot = claimSlot(this.memory, base, this.pid, t.tid, pt.getRegs(t.tid).rip);
      this.slots.set(t.tid, slot);
    }
    return { base, slot };
  }

  /** @internal */
  step(step: InjectionStep, tid: number, op: InjectionOp): void {
    this.onStep?.(step, { tid, op });
  }

  /** @internal Runs ptrace work, turning a raw errno failure into a PROC_ error. */
  guard<T>(what: string, t: Tracee | undefined, fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      throw e instanceof SysError ? this.guardError(what, t, e) : e;
    }
  }

  private guardError(what: string, t: Tracee | undefined, e: SysError): Error {
    if (e.errno === ESRCH) return t ? this.threadGone(t, what) : this.goneError(what);
    return procError(
      'PROC_PTRACE',
      `${what} in process ${this.pid} failed: ${e.message}`,
      'This is unexpected; please report it with this message.',
      { pid: this.pid, tid: t?.tid },
      e,
    );
  }

  /** @internal */
  threadGone(t: Tracee, what: string): Error {
    return processAliveSettled(this.pid)
      ? procError(
          'PROC_THREAD_EXITED',
          `thread ${t.tid} of process ${this.pid} exited during ${what}`,
          'Retry; another thread will be used.',
          { pid: this.pid, tid: t.tid },
        )
      : exited(this.pid, what);
  }

  private stoppedTracee(tid: number): Tracee {
    const t = this.tracees.get(tid);
    if (!t || t.state !== 'stopped') throw new Error(`thread ${tid} is not stopped by this session`);
    return t;
  }

  private pickThread(): Tracee | undefined {
    const leader = this.tracees.get(this.pid);
    if (leader && leader.state !== 'gone') return leader;
    return [...this.tracees.values()].find((t) => t.state !== 'gone');
  }

  private awaitStop(t: Tracee, deadline: number): void {
    if (t.state !== 'running') return;
    const r = t.awaitStop(deadline, () => this.service());
    if (r === undefined) {
      const state = threadState(this.pid, t.tid) ?? '?';
      const wchan = readWchan(this.pid, t.tid) ?? '?';
      throw procError(
        'PROC_STOP_TIMEOUT',
        `thread ${t.tid} of process ${this.pid} did not stop within ${this.stopTimeoutMs} ms (state ${state}, in ${wchan})`,
        state === 'D'
          ? 'The thread is in uninterruptible sleep (I/O); retry when the I/O completes.'
          : 'Retry; raise the stop timeout if the machine is overloaded.',
        { pid: this.pid, tid: t.tid, state, wchan },
      );
    }
  }

  /** Seizes threads not seen before; returns whether any was added. */
  private seizeNewThreads(): boolean {
    const tids = listTasks(this.pid);
    if (tids === undefined) throw this.goneError('attaching');
    let added = false;
    for (const tid of tids) {
      if (this.tracees.has(tid) || this.zombies.has(tid)) continue;
      try {
        pt.seize(tid, SEIZE_OPTIONS);
      } catch (e) {
        if (!(e instanceof SysError)) throw e;
        if (e.errno === ESRCH) continue;
        if (e.errno === EPERM) {
          const now = threadState(this.pid, tid);
          if (now === undefined) continue;
          if (now === 'Z' || now === 'X') {
            this.zombies.add(tid); // a main thread that called pthread_exit: PTRACE_SEIZE refuses zombies
            continue;
          }
          const tracer = readStatus(this.pid, tid)?.tracerPid ?? 0;
          if (tracer !== 0) throw alreadyTraced(this.pid, tracer);
          throw permissionDenied(this.pid);
        }
        throw procError(
          'PROC_PTRACE',
          `PTRACE_SEIZE of thread ${tid} failed: ${e.message}`,
          'This is unexpected; please report it with this message.',
          { pid: this.pid, tid },
          e,
        );
      }
      this.tracees.set(tid, new Tracee(tid));
      added = true;
    }
    return added;
  }

  private goneError(what: string): Error {
    const st = readStatus(this.pid);
    if (!st) return this.tracees.size === 0 ? notFound(this.pid) : exited(this.pid, what);
    if (this.tracees.size === 0 && !processAlive(this.pid)) return zombie(this.pid);
    return exited(this.pid, what);
  }

  private ensureOpen(): void {
    if (this.closed) throw new Error('session is closed');
  }
}

/**
 * Opens a session, runs `fn`, and detaches from every thread whatever
 * happens (errors included). Works with synchronous and async `fn`.
 */
export function withSession<T>(
  pid: number,
  fn: (s: Session) => Promise<T>,
  opts?: SessionOptions,
): Promise<T>;
export function withSession<T>(pid: number, fn: (s: Session) => T, opts?: SessionOptions): T;
export function withSession<T>(
  pid: number,
  fn: (s: Session) => T | Promise<T>,
  opts: SessionOptions = {},
): T | Promise<T> {
  const s = Session.open(pid, opts);
  let result: T | Promise<T>;
  try {
    result = fn(s);
  } catch (e) {
    detachAfterError(s, e);
    throw e;
  }
  if (result instanceof Promise) {
    return result.then(
      (v) => {
        s.detach();
        return v;
      },
      (e) => {
        detachAfterError(s, e);
        throw e;
      },
    );
  }
  s.detach();
  return result;
}

function endQuietly(fn: () => void): void {
  try {
    fn();
  } catch {
    /* reported by the caller's own error */
  }
}

/** The original error matters more than a failure to detach after it. */
function detachAfterError(s: Session, original: unknown): void {
  try {
    s.detach();
  } catch (e) {
    if (original instanceof Error && !original.cause) Object.assign(original, { detachError: e });
  }
}
