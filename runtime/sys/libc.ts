/**
 * The one place that loads libc through koffi. Everything else calls the
 * typed wrappers in ptrace.ts, wait.ts and memory.ts.
 *
 * All calls are synchronous on purpose: ptrace requests must come from the OS
 * thread that attached, and koffi's `.async` runs calls on a worker thread.
 */
import koffi from 'koffi';

const libc = koffi.load('libc.so.6');

/** Signature with integer addr/data (PEEKDATA, POKEDATA, CONT, SEIZE...). */
export const ptraceInt = libc.func('long ptrace(int request, int pid, uintptr_t addr, uintptr_t data)') as (
  request: number,
  pid: number,
  addr: bigint | number,
  data: bigint | number,
) => number | bigint;

/** Same function, with `data` pointing at a local buffer (GETREGS, GETREGSET, GETSIGMASK...). */
export const ptraceBuf = libc.func('long ptrace(int request, int pid, uintptr_t addr, void *data)') as (
  request: number,
  pid: number,
  addr: bigint | number,
  data: Buffer,
) => number | bigint;

export const waitpid = libc.func('int waitpid(int pid, void *status, int options)') as (
  pid: number,
  status: Buffer,
  options: number,
) => number;

/** iovec arrays are built by the caller (see memory.ts) because the local side needs raw addresses. */
export const processVmReadv = libc.func(
  'long process_vm_readv(int pid, void *local, unsigned long liovcnt, void *remote, unsigned long riovcnt, unsigned long flags)',
) as (
  pid: number,
  local: Buffer,
  liovcnt: number,
  remote: Buffer,
  riovcnt: number,
  flags: number,
) => number | bigint;

export const processVmWritev = libc.func(
  'long process_vm_writev(int pid, void *local, unsigned long liovcnt, void *remote, unsigned long riovcnt, unsigned long flags)',
) as (
  pid: number,
  local: Buffer,
  liovcnt: number,
  remote: Buffer,
  riovcnt: number,
  flags: number,
) => number | bigint;

export const tgkill = libc.func('int tgkill(int tgid, int tid, int sig)') as (
  tgid: number,
  tid: number,
  sig: number,
) => number;

/** The address of a libc symbol (RTLD_DEFAULT lookup); 0n when absent. */
export const dlsymDefault = (
  (f) => (name: string) =>
    BigInt.asUintN(64, BigInt(f(0, name)))
)(
  libc.func('uintptr_t dlsym(uintptr_t handle, const char *name)') as (
    h: number,
    name: string,
  ) => number | bigint,
);

/** glibc's struct sigaction (handler, 128-byte mask, flags, restorer): 152 bytes. */
export const sigaction = libc.func('int sigaction(int sig, void *act, void *old)') as (
  sig: number,
  act: Buffer | null,
  old: Buffer | null,
) => number;

export const sigrtmax = libc.func('int __libc_current_sigrtmax()') as () => number;

/** Raw syscalls with the argument shapes the wait alarm needs (gettid, timer_create, timer_settime). */
export const syscall0 = libc.func('long syscall(long nr)') as (nr: number) => number | bigint;
export const syscallIPP = libc.func('long syscall(long nr, long a, void *b, void *c)') as (
  nr: number,
  a: number,
  b: Buffer,
  c: Buffer | null,
) => number | bigint;
export const syscallIIPP = libc.func('long syscall(long nr, long a, long b, void *c, void *d)') as (
  nr: number,
  a: number,
  b: number,
  c: Buffer,
  d: Buffer | null,
) => number | bigint;

/** A raw syscall with three integer arguments (fcntl on the tracer's own descriptors). */
export const syscall3 = libc.func('long syscall(long nr, long a, long b, long c)') as (
  nr: number,
  a: number,
  b: number,
  c: number,
) => number | bigint;

export const geteuid = libc.func('uint32_t geteuid()') as () => number;

/** errno of the last call made through koffi on this thread. */
export function lastErrno(): number {
  return koffi.errno();
}

/** Address of a Buffer's bytes, for iovecs. The Buffer must stay referenced while the address is used. */
export function bufferAddress(buf: Buffer): bigint {
  return BigInt.asUintN(64, BigInt(koffi.address(buf)));
}

/** The calling thread's scheduling policy (pid 0: this thread; sched.ts). */
export const schedGetscheduler = libc.func('int sched_getscheduler(int pid)') as (pid: number) => number;
export const schedGetparam = libc.func('int sched_getparam(int pid, void *param)') as (
  pid: number,
  param: Buffer,
) => number;
export const schedSetscheduler = libc.func('int sched_setscheduler(int pid, int policy, void *param)') as (
  pid: number,
  policy: number,
  param: Buffer,
) => number;
