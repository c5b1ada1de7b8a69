/**
 * Linux x86-64 numbers the runtime needs. They are ABI, so they are spelled
 * out here once instead of being looked up at run time.
 */

/** ptrace requests (include/uapi/linux/ptrace.h). */
export const PTRACE = {
  PEEKDATA: 2,
  POKEDATA: 5,
  CONT: 7,
  GETREGS: 12,
  SETREGS: 13,
  DETACH: 17,
  SYSCALL: 24,
  SETOPTIONS: 0x4200,
  GETEVENTMSG: 0x4201,
  GETSIGINFO: 0x4202,
  GETREGSET: 0x4204,
  SETREGSET: 0x4205,
  SEIZE: 0x4206,
  INTERRUPT: 0x4207,
  LISTEN: 0x4208,
  GETSIGMASK: 0x420a,
  SETSIGMASK: 0x420b,
  GET_SYSCALL_INFO: 0x420e,
} as const;

/** PTRACE_O_* options. */
export const PTRACE_O = {
  TRACESYSGOOD: 0x1,
  TRACECLONE: 0x8,
  TRACEEXEC: 0x10,
  TRACEEXIT: 0x40,
  EXITKILL: 0x100000,
} as const;

/** PTRACE_EVENT_* (bits 16..23 of a wait status). */
export const PTRACE_EVENT = {
  CLONE: 3,
  EXEC: 4,
  EXIT: 6,
  STOP: 128,
} as const;

/** PTRACE_SYSCALL_INFO_* (the `op` byte of struct ptrace_syscall_info). */
export const SYSCALL_INFO_OP = { NONE: 0, ENTRY: 1, EXIT: 2, SECCOMP: 3 } as const;

/** Regset note types for PTRACE_GETREGSET. */
export const NT = { PRSTATUS: 1, X86_XSTATE: 0x202 } as const;

/** waitpid flags. */
export const WNOHANG = 1;
export const __WALL = 0x40000000;

/** Signals (x86-64 numbering). */
export const SIG = {
  SIGHUP: 1,
  SIGINT: 2,
  SIGQUIT: 3,
  SIGILL: 4,
  SIGTRAP: 5,
  SIGABRT: 6,
  SIGBUS: 7,
  SIGFPE: 8,
  SIGKILL: 9,
  SIGUSR1: 10,
  SIGSEGV: 11,
  SIGUSR2: 12,
  SIGPIPE: 13,
  SIGALRM: 14,
  SIGTERM: 15,
  SIGCHLD: 17,
  SIGCONT: 18,
  SIGSTOP: 19,
  SIGTSTP: 20,
  SIGTTIN: 21,
  SIGTTOU: 22,
  SIGSYS: 31,
} as const;

/** Signals a fault raises synchronously; never blocked while a thread is borrowed (see remote-call.ts). */
export const FAULT_SIGNALS: readonly number[] = [
  SIG.SIGILL,
  SIG.SIGTRAP,
  SIG.SIGBUS,
  SIG.SIGFPE,
  SIG.SIGSEGV,
  SIG.SIGSYS,
];

/** x86-64 system call numbers used by the runtime. */
export const NR = {
  read: 0,
  write: 1,
  close: 3,
  mmap: 9,
  mprotect: 10,
  munmap: 11,
  rt_sigprocmask: 14,
  rt_sigreturn: 15,
  pwrite64: 18,
  mremap: 25,
  madvise: 28,
  getpid: 39,
  fcntl: 72,
  ftruncate: 77,
  gettid: 186,
  restart_syscall: 219,
  memfd_create: 319,
} as const;

/** Kernel-internal restart codes a thread interrupted inside a system call carries in rax. */
export const ERESTARTSYS = 512;
export const ERESTARTNOINTR = 513;
export const ERESTARTNOHAND = 514;
export const ERESTART_RESTARTBLOCK = 516;

/** mmap/mprotect/memfd/fcntl flags. */
export const PROT = { NONE: 0, READ: 1, WRITE: 2, EXEC: 4 } as const;
export const MAP = {
  SHARED: 0x01,
  PRIVATE: 0x02,
  FIXED: 0x10,
  ANONYMOUS: 0x20,
  FIXED_NOREPLACE: 0x100000,
} as const;
export const MFD = { CLOEXEC: 1, ALLOW_SEALING: 2 } as const;
export const F = { ADD_SEALS: 1033, GET_SEALS: 1034 } as const;
export const F_SEAL = { SEAL: 1, SHRINK: 2, GROW: 4, WRITE: 8, FUTURE_WRITE: 16 } as const;

/** Auxiliary vector tags (include/uapi/linux/auxvec.h). */
export const AT = {
  NULL: 0,
  PHDR: 3,
  PHENT: 4,
  PHNUM: 5,
  PAGESZ: 6,
  BASE: 7,
  FLAGS: 8,
  ENTRY: 9,
  UID: 11,
  EUID: 12,
  GID: 13,
  EGID: 14,
  PLATFORM: 15,
  HWCAP: 16,
  CLKTCK: 17,
  SECURE: 23,
  BASE_PLATFORM: 24,
  RANDOM: 25,
  HWCAP2: 26,
  EXECFN: 31,
  SYSINFO_EHDR: 33,
  MINSIGSTKSZ: 51,
} as const;
