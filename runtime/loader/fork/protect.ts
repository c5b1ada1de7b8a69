/**
 * Fork protection of a patched process (docs/FORK.md): a child must not
 * share its parent's library globals, which the switch turns into a
 * MAP_SHARED mapping. The runtime installs three atfork handlers (code.ts)
 * once per process and keeps their table (table.ts) up to date with every
 * region that aliases a library's data. All of it happens while staging,
 * with one thread borrowed and the others running; none of it in the pause.
 */
import { UlpError } from '../../../common/errors.js';
import { PT_NOTE } from '../../../elf/index.js';
import type { RemoteMemory } from '../../memory.js';
import type { Session } from '../../session.js';
import { signed } from '../../sys/regs.js';
import { dataMemfdName } from '../../memfd-names.js';
import type { ProcessObject, Region } from '../model.js';
import { lookupIn } from '../scope.js';
import { LIB } from './layout.js';
import { createForkPage, findForkPage, handlers, type ForkPage } from './page.js';
import {
  markRegistered,
  publishAlias,
  publishLibrary,
  readTable,
  withdrawAliases,
  type ForkLibrary,
  type ForkTable,
} from './table.js';
import { onSafeThread, runtimeCall } from '../safe-thread.js';

export interface ForkProtection {
  page: ForkPage;
  table: ForkTable;
  lib: ForkLibrary;
  /** This run registered the handlers (false: an earlier run had). */
  registeredNow: boolean;
}

/** How long one thread may take to register the handlers before another is tried. */
const REGISTER_TIMEOUT_MS = 2000;

/**
 * glibc exports the registration as __register_atfork(prepare, parent,
 * child, dso_handle); pthread_atfork itself lives in libc_nonshared.a and
 * only passes the caller's __dso_handle. Our dso_handle is the page's own
 * address: no object's __cxa_finalize or dlclose ever unregisters it.
 */
function registerFunction(objects: readonly ProcessObject[], pid: number): bigint {
  const libc = objects.find((o) => o.source === 'linkmap' && o.soname === 'libc.so.6');
  const def =
    libc &&
    (lookupIn(libc, { name: '__register_atfork', version: 'GLIBC_2.3.2' }) ??
      lookupIn(libc, { name: '__register_atfork' }));
  if (!def) {
    throw new UlpError(
      'LOADER_FORK_UNSUPPORTED',
      `process ${pid} has no glibc __register_atfork: its children could not be given private copies of the patched library's data`,
      'Only glibc processes can be patched; see docs/FORK.md.',
      { pid },
    );
  }
  return def.addr;
}

function register(s: Session, objects: readonly ProcessObject[], page: ForkPage): void {
  const fn = registerFunction(objects, s.pid);
  const h = handlers(page.base);
  const r = onSafeThread(s, objects, 'register the fork handlers', (tid) =>
    s.call(fn, [h.prepare, h.parent, h.child, page.base], runtimeCall(tid, REGISTER_TIMEOUT_MS)),
  );
  if (signed(r) !== 0n) {
    throw new UlpError(
      'LOADER_FORK_REGISTER',
      `__register_atfork in process ${s.pid} returned ${signed(r)}`,
      'The process is out of memory; the patch was not applied.',
      { pid: s.pid, result: Number(signed(r)) },
    );
  }
  // Written after the call returned: a trigger killed during the call makes the next run register again, which the handlers tolerate.
  markRegistered(s.memory, page.base);
}

/**
 * 16 bytes that tell whether the loader's build is still mapped where it was
 * (a dlclose'd library must be skipped, not copied): its build-id as it lies
 * in memory, else the ELF header's section-table fields.
 */
export function identity(mem: RemoteMemory, obj: ProcessObject): { addr: bigint; bytes: Buffer } {
  const id = obj.elf.buildId ? Buffer.from(obj.elf.buildId, 'hex') : undefined;
  if (id && id.length >= LIB.ID_SIZE) {
    for (const ph of obj.elf.programHeaders) {
      if (ph.type !== PT_NOTE) continue;
      const notes = mem.tryRead(obj.bias + ph.vaddr, Number(ph.memsz));
      const at = notes?.indexOf(id) ?? -1;
      if (at >= 0) return { addr: obj.bias + ph.vaddr + BigInt(at), bytes: id.subarray(0, LIB.ID_SIZE) };
    }
  }
  const addr = obj.bias + 0x28n;
  return { addr, bytes: mem.read(addr, LIB.ID_SIZE) };
}

/**
 * Makes sure a child of the process gets private copies of `soname`'s
 * shared data: the fork page exists, its handlers are registered, and the
 * library is in the table with its loader build's region. Idempotent: later
 * runs, stacked patches and reverts find all of it in place. Call it while
 * staging, before the region is shared, with a thread borrowed.
 */
export function ensureForkProtection(
  s: Session,
  objects: readonly ProcessObject[],
  canonical: ProcessObject,
  region: Region,
): ForkProtection {
  const page = findForkPage(s.pid, s.memory) ?? createForkPage(s);
  const table = readTable(s.memory, page.base);
  let registeredNow = false;
  if (!table.registered) {
    register(s, objects, page);
    table.registered = registeredNow = true;
  }
  const name = dataMemfdName(canonical.soname ?? canonical.name);
  const canonicalRegion = canonical.bias + region.start;
  let lib = table.libs.find((l) => l.aliases[0] === canonicalRegion && l.name === name);
  if (!lib) {
    const id = identity(s.memory, canonical);
    const index = publishLibrary(s.memory, page.base, table, {
      name,
      len: region.end - region.start,
      idAddr: id.addr,
      id: id.bytes,
      canonical: canonicalRegion,
    });
    lib = table.libs[index]!;
  }
  return { page, table, lib, registeredNow };
}

/** Lists a staged build's region as an alias of the library's data (right after it is mapped). */
export function publishForkAlias(s: Session, protection: ForkProtection, addr: bigint): void {
  publishAlias(s.memory, protection.page.base, protection.lib, addr);
}

/** Withdraws the aliases inside a range the trigger is about to unmap, so no child maps a copy there. */
export function forgetForkAliases(s: Session, start: bigint, len: bigint): void {
  const page = findForkPage(s.pid, s.memory);
  if (!page) return;
  withdrawAliases(s.memory, page.base, readTable(s.memory, page.base), start, start + len);
}
