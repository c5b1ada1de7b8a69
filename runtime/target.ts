/**
 * Checks made before touching a process, so that the common refusals come
 * with a precise reason instead of a bare errno from ptrace.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { alreadyTraced, notFound, permissionDenied, procError, zombie } from './errors.js';
import { isKernelThread, liveTid, processAlive, readStatus } from './procfs.js';

export interface TargetInfo {
  pid: number;
  name: string;
}

const EM_X86_64 = 62;

/** Reads e_ident/e_machine of the running executable; undefined when it cannot be read (not root). */
function exeArch(pid: number, leaderExited: boolean): { elfClass: number; machine: number } | undefined {
  let fd: number;
  try {
    // An exited main thread has no exe link: a live thread's (liveTid reads /proc again, only then).
    fd = openSync(`/proc/${leaderExited ? liveTid(pid) : pid}/exe`, 'r');
  } catch {
    return undefined;
  }
  try {
    const h = Buffer.alloc(20);
    if (readSync(fd, h, 0, 20, 0) < 20 || h.readUInt32BE(0) !== 0x7f454c46) return undefined;
    return { elfClass: h[4]!, machine: h.readUInt16LE(18) };
  } finally {
    closeSync(fd);
  }
}

const MACHINES: Record<number, string> = {
  3: 'i386',
  40: 'ARM',
  62: 'x86-64',
  183: 'AArch64',
  243: 'RISC-V',
};

export interface CheckOptions {
  /**
   * Accept a process another tracer holds: for readers that never attach
   * (--status, --outdated read /proc and use process_vm_readv, which a
   * tracer does not block).
   */
  readOnly?: boolean;
}

export function checkTarget(pid: number, opts: CheckOptions = {}): TargetInfo {
  if (!Number.isInteger(pid) || pid <= 0) throw notFound(pid);
  const st = readStatus(pid);
  if (!st) throw notFound(pid);
  if (st.tgid !== pid) {
    throw procError(
      'PROC_NOT_FOUND',
      `${pid} is a thread of process ${st.tgid}, not a process`,
      `Use the process id ${st.tgid}.`,
      { pid, tgid: st.tgid },
    );
  }
  if (isKernelThread(pid)) throw permissionDenied(pid);
  // A zombie main thread with live threads (it called pthread_exit) is a running process.
  if ((st.state === 'Z' || st.state === 'X') && !processAlive(pid)) throw zombie(pid);
  if (st.tracerPid !== 0 && !opts.readOnly) throw alreadyTraced(pid, st.tracerPid);
  const arch = exeArch(pid, st.state === 'Z' || st.state === 'X');
  if (arch && (arch.elfClass !== 2 || arch.machine !== EM_X86_64)) {
    const what =
      arch.machine === EM_X86_64
        ? 'an x32 process'
        : `a ${arch.elfClass === 1 ? '32' : '64'}-bit ${MACHINES[arch.machine] ?? `machine ${arch.machine}`} process`;
    throw procError(
      'PROC_UNSUPPORTED_ARCH',
      `process ${pid} (${st.name}) is ${what}; only 64-bit x86-64 processes are supported`,
      'Patch it with a tool built for its architecture.',
      { pid, elfClass: arch.elfClass, machine: arch.machine },
    );
  }
  return { pid, name: st.name };
}
