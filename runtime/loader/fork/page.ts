/**
 * Finding or creating the fork page of a process (layout.ts, code.ts), the
 * way the stub page is found and made: an anonymous mapping for code and
 * table, a sealed memfd named `ulp:fork` mapped read-only over its first page
 * (how later runs find it in /proc/PID/maps), the code made r-x. Everything
 * goes through the stub (s.sys), so a killed trigger leaves at worst an
 * unused mapping that later runs ignore.
 */
import { closeSync, ftruncateSync, writeSync } from 'node:fs';
import { findMapping, readMaps, type Mapping } from '../../maps.js';
import { openTargetFd, type RemoteMemory } from '../../memory.js';
import type { Session } from '../../session.js';
import { MAP, MFD, PROT } from '../../sys/constants.js';
import { ENTRY, FORK_CODE } from './code.js';
import { CODE_OFF, CODE_SIZE, encodeHeader, FORK_MAPS_NAME, FORK_NAME, FORK_PAGE_SIZE, HEADER, TABLE_OFF } from './layout.js';

export interface ForkPage {
  /** Address of the header page; code and table follow (layout.ts). */
  base: bigint;
  created: boolean;
}

export interface Handlers {
  prepare: bigint;
  parent: bigint;
  child: bigint;
}

const HEADER_BYTES = encodeHeader({ prepare: ENTRY.PREPARE, parent: ENTRY.PARENT, child: ENTRY.CHILD });

function codeImage(): Buffer {
  const img = Buffer.alloc(CODE_SIZE);
  FORK_CODE.copy(img);
  return img;
}

export function handlers(base: bigint): Handlers {
  const code = base + BigInt(CODE_OFF);
  return { prepare: code + BigInt(ENTRY.PREPARE), parent: code + BigInt(ENTRY.PARENT), child: code + BigInt(ENTRY.CHILD) };
}

export function tableAddress(base: bigint): bigint {
  return base + BigInt(TABLE_OFF);
}

/** The process's fork page, when a valid one exists (no stop needed). */
export function findForkPage(pid: number, mem: RemoteMemory, maps: readonly Mapping[] = readMaps(pid)): ForkPage | undefined {
  for (const m of maps) {
    if (m.path !== FORK_MAPS_NAME || m.offset !== 0n) continue;
    const header = mem.tryRead(m.start, HEADER.SIZE);
    if (!header?.equals(HEADER_BYTES.subarray(0, HEADER.SIZE))) continue;
    const code = findMapping(maps, m.start + BigInt(CODE_OFF));
    const table = findMapping(maps, tableAddress(m.start));
    // A page whose creation was interrupted (code still writable) was never registered: ignore it.
    if (!code?.exec || code.write || !table?.write || table.shared) continue;
    if (!mem.tryRead(m.start + BigInt(CODE_OFF), CODE_SIZE)?.equals(codeImage())) continue;
    return { base: m.start, created: false };
  }
  return undefined;
}

/** Maps and fills a new fork page, through the stub (a thread must be borrowed). */
export function createForkPage(s: Session): ForkPage {
  const sys = s.sys;
  const base = sys.mmap(0n, FORK_PAGE_SIZE, PROT.READ | PROT.WRITE, MAP.PRIVATE | MAP.ANONYMOUS);
  s.memory.write(base + BigInt(CODE_OFF), codeImage());
  const fd = sys.memfdCreate(FORK_NAME, MFD.CLOEXEC | MFD.ALLOW_SEALING);
  try {
    const f = openTargetFd(s.pid, fd);
    try {
      ftruncateSync(f, 4096);
      writeSync(f, HEADER_BYTES, 0, HEADER_BYTES.length, 0);
    } finally {
      closeSync(f);
    }
    sys.addSeals(fd);
    sys.mmap(base, 4096, PROT.READ, MAP.SHARED | MAP.FIXED, fd, 0);
  } finally {
    sys.close(fd);
  }
  sys.mprotect(base + BigInt(CODE_OFF), CODE_SIZE, PROT.READ | PROT.EXEC);
  return { base, created: true };
}
