/**
 * Finding or creating the fork page of a process (layout.ts, code.ts), with
 * the mechanism of the stub page (runtime/injected-page.ts): an anonymous mapping for code and
 * table, a sealed memfd named `ulp:fork` mapped read-only over its first page
 * (how later runs find it in /proc/PID/maps), the code made r-x. Everything
 * goes through the stub (s.sys), so a killed trigger leaves at worst an
 * unused mapping that later runs ignore.
 */
import { findMapping, readMaps, type Mapping } from '../../maps.js';
import type { RemoteMemory } from '../../memory.js';
import { completeInjectedPage, findInjectedPages, type InjectedPage } from '../../injected-page.js';
import type { Session } from '../../session.js';
import { MAP, PROT } from '../../sys/constants.js';
import { ENTRY, FORK_CODE } from './code.js';
import { CODE_OFF, CODE_SIZE, encodeHeader, FORK_NAME, FORK_PAGE_SIZE, HEADER, TABLE_OFF } from './layout.js';

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
  return {
    prepare: code + BigInt(ENTRY.PREPARE),
    parent: code + BigInt(ENTRY.PARENT),
    child: code + BigInt(ENTRY.CHILD),
  };
}

export function tableAddress(base: bigint): bigint {
  return base + BigInt(TABLE_OFF);
}

const FORK_INJECTED: InjectedPage = {
  name: FORK_NAME,
  header: HEADER_BYTES,
  headerCheck: HEADER.SIZE,
  codeOff: CODE_OFF,
  code: codeImage(),
};

/** The process's fork page, when a valid one exists (no stop needed). */
export function findForkPage(
  pid: number,
  mem: RemoteMemory,
  maps: readonly Mapping[] = readMaps(pid),
): ForkPage | undefined {
  const base = findInjectedPages(maps, mem, FORK_INJECTED).find((b) => {
    const code = findMapping(maps, b + BigInt(CODE_OFF));
    const table = findMapping(maps, tableAddress(b));
    // A page whose creation was interrupted (code still writable) was never registered: ignore it.
    return !code?.write && table?.write && !table.shared;
  });
  return base === undefined ? undefined : { base, created: false };
}

/** Maps and fills a new fork page, through the stub (a thread must be borrowed). */
export function createForkPage(s: Session): ForkPage {
  const sys = s.sys;
  const base = sys.mmap(0n, FORK_PAGE_SIZE, PROT.READ | PROT.WRITE, MAP.PRIVATE | MAP.ANONYMOUS);
  completeInjectedPage(s.pid, s.memory, sys, base, FORK_INJECTED);
  return { base, created: true };
}
