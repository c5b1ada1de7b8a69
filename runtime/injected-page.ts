/**
 * The one mechanism behind the stub page (stub/) and the fork page
 * (loader/fork/): an anonymous mapping in the target holding code (and
 * whatever else the page needs), whose first page is replaced by a sealed,
 * read-only memfd holding a header. The memfd's name is how later runs find
 * the page in /proc/PID/maps (memfd-names.ts), the header how they tell it
 * is complete and of this layout; the code is made r-x last (W^X).
 */
import { closeSync, ftruncateSync, writeSync } from 'node:fs';
import { findMapping, type Mapping } from './maps.js';
import { openTargetFd, sealFromTracer, type RemoteMemory } from './memory.js';
import { memfdMapsPath } from './memfd-names.js';
import type { RemoteSyscalls } from './remote-syscall.js';
import { MAP, MFD, PROT } from './sys/constants.js';

export interface InjectedPage {
  /** The header memfd's name. */
  name: string;
  /** The header page: 4096 bytes, sealed once written. */
  header: Buffer;
  /** How many leading bytes of the header identify a valid page (the rest may change between versions). */
  headerCheck: number;
  /** Offset of the code from the page's base, and its bytes. */
  codeOff: number;
  code: Buffer;
}

const HEADER_PAGE = 4096;

/** The system calls the page needs, made through a borrowed thread. */
export type PageSyscalls = Pick<RemoteSyscalls, 'memfdCreate' | 'addSeals' | 'mmap' | 'mprotect' | 'close'>;

/**
 * Completes the page at `base`, an anonymous mapping the caller made:
 * writes the code, maps the sealed header over the first page, and makes the
 * code r-x. Until the header is mapped nothing names the page, so a tracer
 * killed before that leaves an unused anonymous mapping that later runs
 * ignore.
 */
export function completeInjectedPage(
  pid: number,
  mem: RemoteMemory,
  sys: PageSyscalls,
  base: bigint,
  page: InjectedPage,
): void {
  mem.write(base + BigInt(page.codeOff), page.code);
  const fd = sys.memfdCreate(page.name, MFD.CLOEXEC | MFD.ALLOW_SEALING);
  try {
    // Written from the tracer through /proc/PID/fd/N: no bytes travel through the target's stack.
    // Sized, filled and sealed from the tracer (sealFromTracer): no remote fcntl.
    const f = openTargetFd(pid, fd);
    let sealed: boolean;
    try {
      ftruncateSync(f, HEADER_PAGE);
      writeSync(f, page.header, 0, HEADER_PAGE, 0);
      sealed = sealFromTracer(f);
    } finally {
      closeSync(f);
    }
    if (!sealed) sys.addSeals(fd);
    sys.mmap(base, HEADER_PAGE, PROT.READ, MAP.SHARED | MAP.FIXED, fd, 0);
    sys.mprotect(base + BigInt(page.codeOff), page.code.length, PROT.READ | PROT.EXEC);
  } finally {
    sys.close(fd);
  }
}

/**
 * The bases of the pages named `page.name` whose header and code read as
 * `page`'s and whose code is executable. No stop is needed: /proc and
 * process_vm_readv only. The caller checks what else its page needs.
 */
export function findInjectedPages(maps: readonly Mapping[], mem: RemoteMemory, page: InjectedPage): bigint[] {
  const path = memfdMapsPath(page.name);
  const out: bigint[] = [];
  for (const m of maps) {
    if (m.path !== path || m.offset !== 0n) continue;
    const header = mem.tryRead(m.start, page.headerCheck);
    if (!header?.equals(page.header.subarray(0, page.headerCheck))) continue;
    const codeAt = m.start + BigInt(page.codeOff);
    if (!findMapping(maps, codeAt)?.exec) continue;
    if (!mem.tryRead(codeAt, page.code.length)?.equals(page.code)) continue;
    out.push(m.start);
  }
  return out;
}
