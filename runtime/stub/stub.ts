/**
 * Finding or creating the stub page of a process (layout.ts, code.ts).
 *
 * Creation needs exactly one unprotected system call: the mmap of the page
 * itself, executed at a `syscall` instruction found in the vDSO (or libc)
 * with the thread's registers saved only in the tracer. A tracer killed
 * during those few microseconds leaves that thread with foreign registers;
 * this is the one window the stub cannot cover, once per process lifetime.
 * Everything after it already runs through the stub (injected-page.ts, as
 * for the fork page): memfd_create("ulp:stub"), header written from the
 * tracer through /proc/PID/fd/N, sealed, mapped read-only over the header
 * page (that is how later runs find it in /proc/PID/maps), code made r-x
 * (W^X), close.
 */
import { MAP, NR, PROT } from '../sys/constants.js';
import { signed } from '../sys/regs.js';
import * as pt from '../sys/ptrace.js';
import { procError } from '../errors.js';
import { findMapping, readMaps, type Mapping } from '../maps.js';
import type { RemoteMemory } from '../memory.js';
import { completeInjectedPage, findInjectedPages, type InjectedPage } from '../injected-page.js';
import { checkSyscall, RemoteSyscalls, runSyscall, SyscallSequence } from '../remote-syscall.js';
import type { InjectionHost } from '../injection-host.js';
import type { Tracee } from '../tracee.js';
import { ENTRY, STUB_CODE } from './code.js';
import {
  BLOCK_STRIDE,
  CODE_OFF,
  CODE_SIZE,
  encodeHeader,
  HEADER_CHECK,
  NSLOTS,
  SLOTS_OFF,
  STUB_NAME,
  STUB_SIZE,
} from './layout.js';
import { blockAddress, claimSlot } from './slots.js';
import { u64 } from '../../common/u64.js';

export interface StubInfo {
  /** Address of the header page; the code, slots and XSAVE areas follow (layout.ts). */
  base: bigint;
  /** True when this session created it. */
  created: boolean;
}

/** The code region as it must read in the target: NSLOTS copies of the block. */
export function stubCodeImage(): Buffer {
  const img = Buffer.alloc(CODE_SIZE);
  for (let i = 0; i < NSLOTS; i++) STUB_CODE.copy(img, i * BLOCK_STRIDE);
  return img;
}

/** The stub as an injected page: the header's magic and layout identify it. */
const STUB_PAGE: InjectedPage = {
  name: STUB_NAME,
  header: encodeHeader(),
  headerCheck: HEADER_CHECK,
  codeOff: CODE_OFF,
  code: stubCodeImage(),
};

/** Looks for a valid stub in the process (no stop needed). */
export function findStub(
  pid: number,
  mem: RemoteMemory,
  maps: readonly Mapping[] = readMaps(pid),
): StubInfo | undefined {
  const base = findInjectedPages(maps, mem, STUB_PAGE).find(
    (b) => findMapping(maps, b + BigInt(SLOTS_OFF))?.write,
  );
  return base === undefined ? undefined : { base, created: false };
}

/** Any `0f 05` pair in executable memory will do; the vDSO has some and is tiny. */
export function findSyscallInstruction(pid: number, mem: RemoteMemory, maps: readonly Mapping[]): bigint {
  const candidates = [
    ...maps.filter((m) => m.path === '[vdso]'),
    ...maps.filter((m) => m.exec && m.path.includes('/libc.so')),
  ];
  for (const m of candidates) {
    const len = Number(m.end - m.start);
    for (let off = 0; off < len; off += 65536) {
      const chunk = mem.tryRead(m.start + BigInt(off), Math.min(65536 + 1, len - off));
      if (!chunk) break;
      for (let i = chunk.indexOf(0x0f); i >= 0 && i + 1 < chunk.length; i = chunk.indexOf(0x0f, i + 1)) {
        if (chunk[i + 1] === 0x05) return m.start + BigInt(off + i);
      }
    }
  }
  throw procError(
    'PROC_STUB',
    `no syscall instruction found in the vDSO or libc of process ${pid}`,
    'Without either the stub page cannot be created.',
    { pid },
  );
}

/** Maps and fills a new stub page in the target, using the stopped thread `t`. */
export function createStub(s: InjectionHost, t: Tracee): StubInfo {
  const maps = readMaps(s.pid);
  const insn = findSyscallInstruction(s.pid, s.memory, maps);
  const r = runSyscall(
    s,
    t,
    NR.mmap,
    [0, STUB_SIZE, PROT.READ | PROT.WRITE | PROT.EXEC, MAP.PRIVATE | MAP.ANONYMOUS, -1, 0],
    { rip: insn },
  );
  if (signed(r) < 0n && signed(r) > -4096n) {
    checkSyscall(s.pid, NR.mmap, r); // throws with the errno
  }
  const base = u64(r);
  // completeInjectedPage writes the code before its first system call, which runs through that code.
  const slot = claimSlot(s.memory, base, s.pid, t.tid, pt.getRegs(t.tid).rip);
  const via = { rip: blockAddress(base, slot) + BigInt(ENTRY.SYSCALL), stub: { base, slot } };
  // The page's system calls share one save and restore of the thread (SyscallSequence).
  const seq = new SyscallSequence(s, t, via);
  const sys = new RemoteSyscalls({ pid: s.pid, syscall: (nr, args) => seq.run(nr, args) });
  try {
    completeInjectedPage(s.pid, s.memory, sys, base, STUB_PAGE);
  } catch (e) {
    try {
      seq.end();
    } catch {
      /* the thread is gone: the error at hand says so */
    }
    throw e;
  }
  seq.end();
  return { base, created: true };
}
