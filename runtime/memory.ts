/**
 * Target memory access.
 *
 * - Reads use process_vm_readv: no stop needed, any readable page.
 * - `write` uses process_vm_writev: pages the target itself may write
 *   (stacks, heap, the runtime's own mappings). It fails on read-only pages.
 * - `poke` uses PTRACE_POKEDATA through a stopped thread: it writes through
 *   page protections (the kernel's FOLL_FORCE), which is what a full-RELRO
 *   GOT needs. Word-sized, so partial words are read, merged and written back.
 * - `openTargetFd` reopens a target's file descriptor from the tracer through
 *   /proc/PID/fd/N (needs ptrace access to the target), which fills a memfd
 *   at file speed without a single remote syscall.
 */
import { closeSync, ftruncateSync, openSync, writeSync } from 'node:fs';
import { EFAULT, EPERM, ESRCH, SysError, errnoName } from './sys/errno.js';
import { bufferAddress, lastErrno, processVmReadv, processVmWritev, syscall3 } from './sys/libc.js';
import { F, F_SEAL, NR } from './sys/constants.js';
import * as pt from './sys/ptrace.js';
import { note } from './sys/tally.js';
import { exited, permissionDenied, procError } from './errors.js';
import { liveTid, processAliveSettled } from './procfs.js';
import type { UlpError } from '../common/errors.js';
import { hex } from '../common/format.js';

function iovec(base: bigint, len: number): Buffer {
  const iov = Buffer.alloc(16);
  iov.writeBigUInt64LE(base, 0);
  iov.writeBigUInt64LE(BigInt(len), 8);
  return iov;
}

/** Copy `data` into memory koffi can hand to the kernel by address (small Buffers may live on the V8 heap). */
function offHeap(data: Buffer): Buffer {
  if (data.byteOffset === 0 && data.buffer.byteLength === data.length && data.length > 64) return data;
  const copy = Buffer.allocUnsafeSlow(data.length);
  data.copy(copy);
  return copy;
}

function memoryError(pid: number, op: string, addr: bigint, len: number, errno: number): UlpError {
  if (errno === ESRCH) return exited(pid, `a memory ${op}`);
  if (errno === EPERM) return permissionDenied(pid);
  return procError(
    'PROC_MEMORY',
    `cannot ${op} ${len} bytes at ${hex(addr)} in process ${pid}: ${errno === EFAULT ? 'not mapped or not ' + (op === 'read' ? 'readable' : 'writable') : errnoName(errno)}`,
    op === 'write'
      ? 'Read-only pages need poke() (PTRACE_POKEDATA) through a stopped thread.'
      : 'Check the address against /proc/PID/maps.',
    { pid, addr: hex(addr), len, errno: errnoName(errno) },
  );
}

export class RemoteMemory {
  /** The id handed to process_vm_readv/writev (see liveTid: the pid, unless the main thread has exited). */
  private via: number;

  constructor(readonly pid: number) {
    this.via = pid;
  }

  /**
   * Runs a transfer: bytes moved, or minus the errno, taken at once (finding
   * another thread below reads /proc and overwrites errno). On ESRCH it is
   * retried once through a live thread, in case the main thread has exited.
   */
  private transfer(run: (via: number) => number): number {
    const attempt = () => {
      const n = run(this.via);
      return n >= 0 ? n : -lastErrno();
    };
    const n = attempt();
    if (n !== -ESRCH) return n;
    let alt: number;
    try {
      alt = liveTid(this.pid);
    } catch {
      return n; // the whole process is gone
    }
    if (alt === this.via) return n;
    this.via = alt;
    return attempt();
  }

  /** Reads exactly `len` bytes or throws PROC_MEMORY. */
  read(addr: bigint, len: number): Buffer {
    const buf = Buffer.allocUnsafeSlow(len);
    let done = 0;
    while (done < len) {
      note('vm:read');
      const n = this.transfer((via) =>
        Number(
          processVmReadv(
            via,
            iovec(bufferAddress(buf) + BigInt(done), len - done),
            1,
            iovec(addr + BigInt(done), len - done),
            1,
            0,
          ),
        ),
      );
      if (n < 0) throw memoryError(this.pid, 'read', addr + BigInt(done), len - done, -n);
      if (n === 0) throw memoryError(this.pid, 'read', addr + BigInt(done), len - done, EFAULT);
      done += n;
    }
    return buf;
  }

  /** Like read, but undefined instead of an error for unmapped addresses. */
  tryRead(addr: bigint, len: number): Buffer | undefined {
    try {
      return this.read(addr, len);
    } catch (e) {
      if ((e as UlpError).code === 'PROC_MEMORY') return undefined;
      throw e;
    }
  }

  readU64(addr: bigint): bigint {
    return this.read(addr, 8).readBigUInt64LE(0);
  }

  readU32(addr: bigint): number {
    return this.read(addr, 4).readUInt32LE(0);
  }

  /** A NUL-terminated string, read in small chunks so it never runs into an unmapped page needlessly. */
  readCString(addr: bigint, max = 4096): string {
    const parts: Buffer[] = [];
    let total = 0;
    while (total < max) {
      const chunkLen = Math.min(256 - Number((addr + BigInt(total)) % 256n), max - total);
      const chunk = this.read(addr + BigInt(total), chunkLen);
      const nul = chunk.indexOf(0);
      if (nul >= 0) {
        parts.push(chunk.subarray(0, nul));
        break;
      }
      parts.push(chunk);
      total += chunkLen;
    }
    return Buffer.concat(parts).toString('utf8');
  }

  /** Writes into pages the target can write itself; throws PROC_MEMORY otherwise. */
  write(addr: bigint, data: Buffer): void {
    const src = offHeap(data);
    let done = 0;
    while (done < src.length) {
      note('vm:write');
      const n = this.transfer((via) =>
        Number(
          processVmWritev(
            via,
            iovec(bufferAddress(src) + BigInt(done), src.length - done),
            1,
            iovec(addr + BigInt(done), src.length - done),
            1,
            0,
          ),
        ),
      );
      if (n < 0) throw memoryError(this.pid, 'write', addr + BigInt(done), src.length - done, -n);
      if (n === 0) throw memoryError(this.pid, 'write', addr + BigInt(done), src.length - done, EFAULT);
      done += n;
    }
  }
}

/**
 * Writes through page protections with one write to /proc/PID/mem. The
 * kernel allows it (FOLL_FORCE) under proc_mem.force_override=always, the
 * usual default, or for the tracer under =ptrace; returns false where it
 * refuses, so the caller can fall back to PTRACE_POKEDATA. A run of GOT slots
 * then costs one system call instead of one per word.
 */
export function procMemWrite(pid: number, addr: bigint, data: Buffer): boolean {
  note('mem:write');
  let fd: number;
  try {
    fd = openSync(`/proc/${pid}/mem`, 'r+');
  } catch {
    return false;
  }
  try {
    return writeSync(fd, data, 0, data.length, Number(addr)) === data.length;
  } catch {
    return false;
  } finally {
    closeSync(fd);
  }
}

/**
 * Writes `data` at `addr` word by word with PTRACE_POKEDATA through the
 * stopped thread `tid`, including into read-only pages. Bytes around an
 * unaligned start or end are preserved.
 */
export function poke(pid: number, tid: number, addr: bigint, data: Buffer): void {
  const start = addr & ~7n;
  const end = (addr + BigInt(data.length) + 7n) & ~7n;
  const span = Number(end - start);
  const words = Buffer.alloc(span);
  const head = Number(addr - start);
  try {
    if (head !== 0 || data.length % 8 !== 0) {
      words.writeBigUInt64LE(pt.peekData(tid, start), 0);
      if (span > 8) words.writeBigUInt64LE(pt.peekData(tid, end - 8n), span - 8);
    }
    data.copy(words, head);
    for (let off = 0; off < span; off += 8) pt.pokeData(tid, start + BigInt(off), words.readBigUInt64LE(off));
  } catch (e) {
    if (e instanceof SysError) {
      // ESRCH: the thread is not stopped for us, or it is gone; a process that died is reported as such.
      if (e.errno === ESRCH && !processAliveSettled(pid)) throw exited(pid, 'a write into its memory');
      if (e.errno === ESRCH)
        throw procError(
          'PROC_PTRACE',
          `thread ${tid} is not stopped (or gone); poke needs a stopped thread`,
          'Borrow or stop a thread of the session first.',
          { pid, tid },
          e,
        );
      throw memoryError(pid, 'write', addr, data.length, e.errno === 5 /* EIO */ ? EFAULT : e.errno);
    }
    throw e;
  }
}

/**
 * /proc/PID/fd/N; through a live thread's id only when that fails (a main
 * thread that has exited shows no descriptors), so that the usual case does
 * not read /proc/PID/status first (liveTid), which costs more than the open.
 */
function openFdOf(pid: number, fd: number, flags: 'r' | 'r+'): number {
  try {
    return openSync(`/proc/${pid}/fd/${fd}`, flags);
  } catch (e) {
    const tid = liveTid(pid);
    if (tid === pid) throw e;
    return openSync(`/proc/${tid}/fd/${fd}`, flags);
  }
}

/**
 * Opens the target's file descriptor `fd` from the tracer side (read-write)
 * and returns a Node file descriptor. Used to fill a memfd created in the
 * target at file-write speed. Positions passed to fs.writeSync must be Numbers.
 */
export function openTargetFd(pid: number, fd: number, flags: 'r' | 'r+' = 'r+'): number {
  try {
    return openFdOf(pid, fd, flags);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw procError(
        'PROC_MEMORY',
        `process ${pid} has no file descriptor ${fd}`,
        'The descriptor was closed or never opened; check /proc/PID/fd.',
        { pid, fd },
        e,
      );
    }
    if (code === 'EACCES' || code === 'EPERM') throw permissionDenied(pid);
    throw e;
  }
}

/** Every seal: no more writes, growth, shrinking or sealing (RemoteSyscalls.addSeals' default). */
export const ALL_SEALS = F_SEAL.WRITE | F_SEAL.GROW | F_SEAL.SHRINK | F_SEAL.SEAL;

/**
 * Seals a target's memfd through a descriptor the tracer opened on it
 * (openTargetFd, read-write): seals belong to the file, not to a
 * descriptor, so this spares the remote fcntl and its two target stops.
 * False when the kernel refuses here, for the caller to seal it remotely.
 */
export function sealFromTracer(tfd: number, seals: number = ALL_SEALS): boolean {
  note('tracer:seal');
  return Number(syscall3(NR.fcntl, tfd, F.ADD_SEALS, seals)) === 0;
}

/** Sets the size of a target's memfd from the tracer (openTargetFd): the remote ftruncate, without its two target stops. */
export function sizeMemfd(pid: number, fd: number, size: number | bigint): void {
  const tfd = openTargetFd(pid, fd, 'r+');
  try {
    ftruncateSync(tfd, Number(size));
  } finally {
    closeSync(tfd);
  }
}
