/**
 * The auxiliary vector the kernel gave the process at exec
 * (/proc/PID/auxv): where the executable's program headers are (AT_PHDR),
 * where ld.so was loaded (AT_BASE, 0 for static binaries), the vDSO
 * (AT_SYSINFO_EHDR), the entry point, page size and hardware capabilities.
 */
import { readFileSync } from 'node:fs';
import { AT } from './sys/constants.js';
import { exited, notFound, permissionDenied } from './errors.js';
import { liveTid } from './procfs.js';

export type Auxv = Map<number, bigint>;

export function parseAuxv(buf: Buffer): Auxv {
  const out: Auxv = new Map();
  for (let off = 0; off + 16 <= buf.length; off += 16) {
    const tag = Number(buf.readBigUInt64LE(off));
    if (tag === AT.NULL) break;
    out.set(tag, buf.readBigUInt64LE(off + 8));
  }
  return out;
}

export function readAuxv(pid: number): Auxv {
  let buf: Buffer;
  try {
    buf = readFileSync(`/proc/${pid}/auxv`);
    // A main thread that exited (pthread_exit) shows no memory while the others run on: read through one of them.
    if (buf.length === 0) {
      const via = liveTid(pid);
      if (via !== pid) buf = readFileSync(`/proc/${via}/auxv`);
    }
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ESRCH') throw notFound(pid);
    // auxv is readable only with ptrace access to the process: the same reason ptrace would give.
    if (code === 'EACCES' || code === 'EPERM') throw permissionDenied(pid);
    throw e;
  }
  if (buf.length === 0) throw exited(pid, 'reading its auxiliary vector');
  return parseAuxv(buf);
}

/** The fields the runtime uses, named. 0n when absent. */
export interface AuxvInfo {
  phdr: bigint;
  phent: number;
  phnum: number;
  /** Load address of the dynamic loader; 0n for a static executable. */
  base: bigint;
  entry: bigint;
  sysinfoEhdr: bigint;
  pageSize: number;
  hwcap: bigint;
  hwcap2: bigint;
  secure: boolean;
}

export function auxvInfo(a: Auxv): AuxvInfo {
  const g = (t: number) => a.get(t) ?? 0n;
  return {
    phdr: g(AT.PHDR),
    phent: Number(g(AT.PHENT)),
    phnum: Number(g(AT.PHNUM)),
    base: g(AT.BASE),
    entry: g(AT.ENTRY),
    sysinfoEhdr: g(AT.SYSINFO_EHDR),
    pageSize: Number(g(AT.PAGESZ)) || 4096,
    hwcap: g(AT.HWCAP),
    hwcap2: g(AT.HWCAP2),
    secure: g(AT.SECURE) !== 0n,
  };
}
