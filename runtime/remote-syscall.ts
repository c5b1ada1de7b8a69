/**
 * System calls executed by a stopped thread of the target.
 *
 * The thread is pointed at the `syscall` instruction of its stub block with
 * the arguments in registers and resumed with PTRACE_SYSCALL; the tracer
 * takes the result at the syscall-exit stop and puts the thread back
 * (injection.ts). If the tracer dies at any point after the slot is written,
 * the thread runs on through the stub's restore path instead.
 */
import { F, F_SEAL, NR } from './sys/constants.js';
import { errnoName } from './sys/errno.js';
import * as pt from './sys/ptrace.js';
import { signed, type Regs } from './sys/regs.js';
import { procError } from './errors.js';
import {
  belowRedZone,
  InjectionContext,
  injectionRegs,
  INJECTION_SIGMASK,
  resumeRegs,
  saveThread,
  type SavedThread,
} from './injection.js';
import type { InjectionHost } from './injection-host.js';
import { ENTRY } from './stub/code.js';
import { SLOT_STATE } from './stub/layout.js';
import { blockAddress, releaseSlot, writeSlot } from './stub/slots.js';
import type { Tracee } from './tracee.js';
import { note } from './sys/tally.js';
import { u64 } from '../common/u64.js';

/** An argument: an integer, or bytes the runtime copies below the thread's stack and passes by address. */
export type RemoteArg = bigint | number | { bytes: Buffer };

export interface SyscallOptions {
  /** Give up after this many ms (default 5000); the thread is restored and PROC_CALL_TIMEOUT thrown. */
  timeoutMs?: number;
}

/** Where injected code starts and which stub slot (if any) protects the thread meanwhile. */
export interface Via {
  rip: bigint;
  stub?: { base: bigint; slot: number };
}

const SYSCALL_ARG_REGS = ['rdi', 'rsi', 'rdx', 'r10', 'r8', 'r9'] as const;

/**
 * Lays `{ bytes }` arguments out below the red zone (each 16-byte aligned)
 * and returns the integer arguments plus the lowest address used, below
 * which the injected code may use the stack.
 */
export function placeArgs(
  s: InjectionHost,
  saved: Regs,
  args: ReadonlyArray<RemoteArg>,
): { values: bigint[]; low: bigint } {
  let low = belowRedZone(saved.rsp, 256);
  const values = args.map((a) => {
    if (typeof a === 'object') {
      low = (low - BigInt(a.bytes.length)) & ~15n;
      s.memory.write(low, a.bytes);
      return low;
    }
    return u64(a);
  });
  return { values, low: low & ~15n };
}

/**
 * A thread lent to a run of remote system calls: its own state saved once
 * and its stub slot written once, at the first call, and put back once, at
 * the end (endSequence). Between two calls it waits at the syscall-exit
 * stop of the last one, inside its stub block: a tracer that dies there
 * leaves it on the stub's restore path, as after a single call.
 */
export class SyscallSequence {
  /** The thread's own mask is still in place: set to INJECTION_SIGMASK after the first redirect. */
  masked = false;
  private ctx: InjectionContext | undefined;
  readonly saved: SavedThread;

  constructor(
    readonly s: InjectionHost,
    readonly t: Tracee,
    readonly via: Via,
  ) {
    this.saved = saveThread(t.tid, false);
  }

  /** Runs one system call; on a fault or a timeout the sequence is ended (thread restored) and the error thrown. */
  run(nr: number, args: ReadonlyArray<RemoteArg>, opts: SyscallOptions = {}): bigint {
    if (args.length > 6) throw new Error('a system call takes at most 6 arguments');
    note(`syscall:${syscallName(nr)}`);
    const { s, t, via, saved } = this;
    const { values, low } = placeArgs(s, saved.regs, args);
    const deadline = performance.now() + (opts.timeoutMs ?? 5000);
    if (!this.ctx) {
      if (via.stub) {
        writeSlot(s.memory, via.stub.base, via.stub.slot, {
          state: SLOT_STATE.SYSCALL,
          tid: t.tid,
          tgid: s.pid,
          mask: saved.mask,
          regs: resumeRegs(saved.regs),
        });
      }
      this.ctx = new InjectionContext(s, t, deadline, 'syscall');
    } else this.ctx.deadline = deadline;
    const ctx = this.ctx;
    const regs = injectionRegs(saved.regs, { rip: via.rip, rax: BigInt(nr), rsp: low - 16n });
    values.forEach((v, i) => (regs[SYSCALL_ARG_REGS[i]!] = v));
    // Registers first, then the mask: a tracer dying in between leaves a thread that runs the stub with its own mask.
    pt.setRegs(t.tid, regs);
    if (!this.masked) {
      pt.setSigMask(t.tid, INJECTION_SIGMASK);
      this.masked = true;
    }
    s.step('redirected', t.tid, 'syscall');
    let result: bigint | undefined;
    let failure: Error | undefined;
    const at = via.rip + 2n;
    while (result === undefined && failure === undefined) {
      const ev = ctx.next();
      if (ev.kind === 'syscall-entry' && ev.rip === at) s.step('entered', t.tid, 'syscall');
      else if (ev.kind === 'syscall-exit' && ev.rip === at) {
        result = ev.rval;
        s.step('returned', t.tid, 'syscall');
      } else if (ev.kind === 'fault') {
        failure = procError(
          'PROC_CALL_FAULT',
          `remote ${syscallName(nr)} faulted with signal ${ev.signal} at 0x${ev.addr.toString(16)}; thread ${t.tid} was restored`,
          'The injected code is not executable in this process (W^X policy?).',
          { pid: s.pid, tid: t.tid },
        );
      } else if (ev.kind === 'timeout') {
        failure = procError(
          'PROC_CALL_TIMEOUT',
          `remote ${syscallName(nr)} did not complete within ${opts.timeoutMs ?? 5000} ms; thread ${t.tid} was restored`,
          'The call blocked inside the target; retry.',
          { pid: s.pid, tid: t.tid },
        );
        if (!ctx.interrupt()) throw s.threadGone(t, `a remote ${syscallName(nr)}`);
      } else if (ev.kind === 'gone') throw s.threadGone(t, `a remote ${syscallName(nr)}`);
    }
    if (failure) {
      this.end();
      throw failure;
    }
    return result!;
  }

  /** Puts the thread's own state back and frees its slot; nothing to do when no call ran. */
  end(): void {
    const ctx = this.ctx;
    if (!ctx) return;
    this.ctx = undefined;
    ctx.restore(this.saved);
    ctx.done();
    if (this.via.stub) releaseSlot(this.s.memory, this.via.stub.base, this.via.stub.slot);
    this.s.serviceSoon();
  }
}

/** One remote system call with its own save and restore; also used unprotected (no stub) to create the stub itself. */
export function runSyscall(
  s: InjectionHost,
  t: Tracee,
  nr: number,
  args: ReadonlyArray<RemoteArg>,
  via: Via,
  opts: SyscallOptions = {},
): bigint {
  if (args.length > 6) throw new Error('a system call takes at most 6 arguments');
  const seq = new SyscallSequence(s, t, via);
  const r = seq.run(nr, args, opts);
  seq.end();
  return r;
}

/** Where thread `t` makes remote system calls: its block of the stub page. */
export function stubVia(s: InjectionHost, t: Tracee): Via {
  const stub = s.slotFor(t);
  return { rip: blockAddress(stub.base, stub.slot) + BigInt(ENTRY.SYSCALL), stub };
}

/** A remote system call through the stub page; returns rax as a signed value (-errno on failure). */
export function remoteSyscall(
  s: InjectionHost,
  t: Tracee,
  nr: number,
  args: ReadonlyArray<RemoteArg>,
  opts: SyscallOptions = {},
): bigint {
  return runSyscall(s, t, nr, args, stubVia(s, t), opts);
}

const NAMES = new Map(Object.entries(NR).map(([k, v]) => [v, k]));

export function syscallName(nr: number): string {
  return NAMES.get(nr as never) ?? `syscall ${nr}`;
}

/** Throws PROC_SYSCALL_FAILED for a negative result. */
export function checkSyscall(pid: number, nr: number, r: bigint): bigint {
  const v = signed(r);
  if (v < 0n && v > -4096n) {
    const errno = errnoName(Number(-v));
    const hint =
      errno === 'EACCES' || errno === 'EPERM'
        ? 'A security policy of the target (W^X, seccomp, SELinux, memfd seals) may forbid it.'
        : errno === 'ENOMEM' || errno === 'EMFILE'
          ? 'The target is out of memory or file descriptors (see its limits).'
          : 'The arguments do not fit the target process; check them against /proc/PID/maps and /proc/PID/fd.';
    throw procError('PROC_SYSCALL_FAILED', `${syscallName(nr)} in process ${pid} failed: ${errno}`, hint, {
      pid,
      syscall: syscallName(nr),
      errno,
    });
  }
  return r;
}

/** What RemoteSyscalls runs its calls through (a Session). */
export interface SyscallRunner {
  readonly pid: number;
  syscall(nr: number, args: ReadonlyArray<RemoteArg>): bigint;
}

/** The system calls the loader needs, with errors turned into PROC_SYSCALL_FAILED. */
export class RemoteSyscalls {
  constructor(private readonly s: SyscallRunner) {}

  private run(nr: number, args: RemoteArg[]): bigint {
    return checkSyscall(this.s.pid, nr, this.s.syscall(nr, args));
  }

  mmap(
    addr: bigint,
    length: number | bigint,
    prot: number,
    flags: number,
    fd = -1,
    offset: number | bigint = 0,
  ): bigint {
    return u64(this.run(NR.mmap, [addr, length, prot, flags, fd, offset]));
  }

  munmap(addr: bigint, length: number | bigint): void {
    this.run(NR.munmap, [addr, length]);
  }

  mprotect(addr: bigint, length: number | bigint, prot: number): void {
    this.run(NR.mprotect, [addr, length, prot]);
  }

  memfdCreate(name: string, flags: number): number {
    return Number(this.run(NR.memfd_create, [{ bytes: Buffer.from(name + '\0') }, flags]));
  }

  ftruncate(fd: number, length: number | bigint): void {
    this.run(NR.ftruncate, [fd, length]);
  }

  /** Small writes only (the bytes travel below the thread's stack); fill big memfds with openTargetFd. */
  pwrite64(fd: number, data: Buffer, offset: number | bigint): number {
    return Number(this.run(NR.pwrite64, [fd, { bytes: data }, data.length, offset]));
  }

  fcntl(fd: number, cmd: number, arg: number | bigint = 0): bigint {
    return this.run(NR.fcntl, [fd, cmd, arg]);
  }

  /** Seals a memfd (F_SEAL_* bits; default: no more writes, growth, shrinking or sealing). */
  addSeals(fd: number, seals = F_SEAL.WRITE | F_SEAL.GROW | F_SEAL.SHRINK | F_SEAL.SEAL): void {
    this.fcntl(fd, F.ADD_SEALS, seals);
  }

  close(fd: number): void {
    this.run(NR.close, [fd]);
  }
}
