/**
 * The helpers that build the runtime's PROC_ errors with a reason and a
 * hint. The codes live in common/error-codes.ts (docs/RUNTIME.md lists them);
 * all of them exit 4 ("target process").
 */
import { readFileSync } from 'node:fs';
import { geteuid } from './sys/libc.js';
import { isKernelThread, readComm, readStatus } from './procfs.js';
import { ERROR_CODES, type ErrorCode } from '../common/error-codes.js';
import { UlpError } from '../common/errors.js';

/** The process codes of the registry, with their meaning (docs/RUNTIME.md lists them). */
export type ProcCode = Extract<ErrorCode, `PROC_${string}`>;

export const PROC_CODES = Object.fromEntries(
  Object.entries(ERROR_CODES)
    .filter(([code]) => code.startsWith('PROC_'))
    .map(([code, spec]) => [code, spec.meaning]),
) as Record<ProcCode, string>;

export function procError(
  code: ProcCode,
  message: string,
  hint?: string,
  details?: Record<string, unknown>,
  cause?: unknown,
): UlpError {
  return new UlpError(code, message, hint, details, cause === undefined ? undefined : { cause });
}

export function notFound(pid: number): UlpError {
  return procError(
    'PROC_NOT_FOUND',
    `no process with pid ${pid}`,
    'Check the pid (ps -p PID); the process may have exited.',
    { pid },
  );
}

export function exited(pid: number, what = 'the process'): UlpError {
  return procError(
    'PROC_EXITED',
    `process ${pid} exited while ${what} was in progress`,
    'Nothing is left to patch; restart the program and retry if needed.',
    { pid },
  );
}

export function alreadyTraced(pid: number, tracerPid: number): UlpError {
  const who =
    tracerPid === process.pid
      ? 'this very process (a session is already open on it)'
      : `pid ${tracerPid} (${readComm(tracerPid) ?? 'unknown'})`;
  return procError(
    'PROC_ALREADY_TRACED',
    `process ${pid} is already traced by ${who}`,
    `Detach the other tracer (e.g. quit gdb/strace, pid ${tracerPid}) and retry; only one tracer can attach at a time.`,
    { pid, tracerPid },
  );
}

/** Explains an EPERM from PTRACE_SEIZE with the most likely reason found on this machine. */
export function permissionDenied(pid: number): UlpError {
  const euid = geteuid();
  const st = readStatus(pid);
  const yama = readYama();
  let reason: string;
  let hint: string;
  if (isKernelThread(pid)) {
    reason = `pid ${pid} is a kernel thread, which cannot be traced`;
    hint = 'Pick a user-space process.';
  } else if (yama === 3) {
    reason = 'ptrace is disabled on this machine (kernel.yama.ptrace_scope = 3)';
    hint = 'Reboot with a lower kernel.yama.ptrace_scope; scope 3 cannot be lowered at run time.';
  } else if (yama === 2 && euid !== 0) {
    reason = 'kernel.yama.ptrace_scope = 2 allows only CAP_SYS_PTRACE to attach';
    hint = 'Run as root (or with CAP_SYS_PTRACE).';
  } else if (euid !== 0 && st && st.uids.some((u) => u !== euid)) {
    reason = `the process runs as uid ${st.uids.join('/')} and this user is uid ${euid}`;
    hint = 'Run as the same user as the target, or as root.';
  } else if (yama === 1 && euid !== 0) {
    reason = 'kernel.yama.ptrace_scope = 1 lets a user trace only its own descendants';
    hint = 'Run as root, grant CAP_SYS_PTRACE, or set kernel.yama.ptrace_scope = 0.';
  } else if (euid !== 0) {
    reason =
      'the process is not dumpable (setuid/setgid program or prctl(PR_SET_DUMPABLE, 0)) or a security module denied it';
    hint = 'Run as root.';
  } else {
    reason = 'a security module (SELinux, AppArmor, lockdown) or a protected process denied it';
    hint = 'Check the audit log for a denial of ptrace on this pid.';
  }
  return procError('PROC_PERMISSION_DENIED', `permission denied tracing process ${pid}: ${reason}`, hint, {
    pid,
    euid,
    reason,
  });
}

/** kernel.yama.ptrace_scope, or undefined when Yama is not built in. */
function readYama(): number | undefined {
  try {
    return Number(readFileSync('/proc/sys/kernel/yama/ptrace_scope', 'utf8').trim());
  } catch {
    return undefined;
  }
}

export function zombie(pid: number): UlpError {
  return procError(
    'PROC_ZOMBIE',
    `process ${pid} is a zombie: it has exited and waits for its parent to reap it`,
    'Nothing runs in it; there is nothing to patch.',
    { pid },
  );
}
