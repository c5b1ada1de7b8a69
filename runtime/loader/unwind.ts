/**
 * Unwinding through a staged build. The unwinder finds a frame's unwind
 * table through the dynamic loader (_dl_find_object, dl_iterate_phdr),
 * which never heard of a build ulp mapped: a C++ exception or a
 * pthread_cancel that unwinds through a new-version frame would stop there
 * and abort the process (or skip the cleanups above it). libgcc's unwinder,
 * which both libstdc++ and glibc's cancellation use, first searches the
 * tables registered with __register_frame, so each staged build's .eh_frame
 * is registered there while staging, with the other threads running.
 *
 * A process that has not loaded libgcc_s.so.1 yet (a C program that never
 * cancelled a thread) gets it loaded now with dlopen, exactly as glibc
 * itself would load it on its first pthread_cancel: registered tables live
 * in that one copy of the unwinder.
 */
import { ehFrameEnd, ehFrameStart, PT_DYNAMIC, type ElfObject } from '../../elf/index.js';
import { headerAddrOf } from '../linkmap.js';
import { findMapping, readMaps } from '../maps.js';
import { ElfCache } from './elf-cache.js';
import type { Session } from '../session.js';
import type { ProcessObject } from './model.js';
import { onSafeThread, runtimeCall } from './safe-thread.js';
import { isDefinition, lookupIn } from './scope.js';

export const UNWINDER = 'libgcc_s.so.1';
const RTLD_NOW = 2;
const CALL_TIMEOUT_MS = 5000;

export interface UnwindReport {
  /** The build's .eh_frame is registered with the process's unwinder. */
  registered: boolean;
  /** ulp loaded libgcc_s.so.1 into the process to register with it (would load, in a dry run). */
  loadedUnwinder: boolean;
  /** Why nothing was registered: unwinding through the new build's frames will fail. */
  reason?: string;
  /** Runtime address of the registered table (what __deregister_frame takes back). */
  ehFrame?: bigint;
}

interface Plan {
  ehFrame?: bigint;
  unwinder?: ProcessObject;
  reason?: string;
}

/** Pure: what registering `elf` (to be mapped at `bias`) involves in a process with these objects. */
function plan(objects: readonly ProcessObject[], elf: ElfObject, bias: bigint): Plan {
  const start = ehFrameStart(elf);
  if (start === undefined) return { reason: 'the build has no unwind table (.eh_frame_hdr)' };
  if (ehFrameEnd(elf, start) === undefined) return { reason: "the build's .eh_frame has no terminator" };
  const unwinder = objects.find((o) => o.source === 'linkmap' && o.soname === UNWINDER);
  return { ehFrame: bias + start, ...(unwinder ? { unwinder } : {}) };
}

/** What registration would do, for a dry run. */
export function unwindDryRun(objects: readonly ProcessObject[], elf: ElfObject, bias: bigint): UnwindReport {
  const p = plan(objects, elf, bias);
  return p.reason
    ? { registered: false, loadedUnwinder: false, reason: p.reason }
    : { registered: true, loadedUnwinder: !p.unwinder };
}

function cString(s: string): { bytes: Buffer } {
  return { bytes: Buffer.from(s + '\0', 'latin1') };
}

interface Entry {
  register: bigint;
  deregister: bigint;
}

/** The unwinder's registration functions, from the link map. */
function entryIn(unwinder: ProcessObject): Entry | undefined {
  const register = lookupIn(unwinder, { name: '__register_frame' })?.addr;
  const deregister = lookupIn(unwinder, { name: '__deregister_frame' })?.addr;
  return register !== undefined && deregister !== undefined ? { register, deregister } : undefined;
}

/**
 * The registration functions of the unwinder dlopen just loaded, found the
 * way ld.so's dlsym would find them but without a call into the process:
 * glibc's dlopen returns the object's struct link_map (l_addr, l_name,
 * l_ld), so one read gives the bias and the dynamic section, the mappings
 * the file, and its dynamic symbol table the symbols (parsed once per
 * `--all` run through the cache). Undefined when the handle is not the link
 * map entry of libgcc_s.so.1 (its l_ld not that object's own dynamic
 * section: another libc), for dlsym to answer instead.
 */
function entryFromLinkMap(s: Session, handle: bigint, cache: ElfCache): Entry | undefined {
  try {
    const l = s.memory.read(handle, 24);
    const bias = l.readBigUInt64LE(0);
    const ld = l.readBigUInt64LE(16);
    const maps = readMaps(s.pid);
    const { headerAddr, mapping } = headerAddrOf(maps, ld, bias);
    if (!mapping || mapping.inode === 0) return undefined;
    const first = findMapping(maps, headerAddr);
    const elf = cache.object((a, n) => s.memory.read(a, n), bias, headerAddr, first);
    const dyn = elf.programHeaders.find((p) => p.type === PT_DYNAMIC);
    if (elf.soname !== UNWINDER || !dyn || bias + dyn.vaddr !== ld) return undefined;
    const at = (name: string) => {
      const sym = elf.lookup(name);
      return sym && isDefinition(sym) ? bias + sym.value : undefined;
    };
    const register = at('__register_frame');
    const deregister = at('__deregister_frame');
    return register !== undefined && deregister !== undefined ? { register, deregister } : undefined;
  } catch {
    return undefined; // not readable as a link map entry: dlsym still can answer
  }
}

/** Loads libgcc_s.so.1 with the process's own dlopen and finds its registration functions (link map, else dlsym). */
function loadUnwinder(s: Session, objects: readonly ProcessObject[], cache: ElfCache): Entry | string {
  const libc = objects.find((o) => o.source === 'linkmap' && o.soname === 'libc.so.6');
  const dlopen = libc && lookupIn(libc, { name: 'dlopen' });
  const dlsym = libc && lookupIn(libc, { name: 'dlsym' });
  if (!dlopen || !dlsym) return `${UNWINDER} is not loaded and this libc has no dlopen to load it`;
  const call = (what: string, fn: bigint, args: Parameters<Session['call']>[1]) =>
    onSafeThread(s, objects, what, (tid) => s.call(fn, args, runtimeCall(tid, CALL_TIMEOUT_MS)));
  const handle = call(`load ${UNWINDER}`, dlopen.addr, [cString(UNWINDER), RTLD_NOW]);
  if (handle === 0n) return `${UNWINDER} is not loaded and dlopen could not load it`;
  const fromLinkMap = entryFromLinkMap(s, handle, cache);
  if (fromLinkMap) return fromLinkMap;
  const register = call('look up __register_frame', dlsym.addr, [handle, cString('__register_frame')]);
  const deregister = call('look up __deregister_frame', dlsym.addr, [handle, cString('__deregister_frame')]);
  return register && deregister ? { register, deregister } : `${UNWINDER} has no __register_frame`;
}

export interface Registration {
  report: UnwindReport;
  /** Takes the registration back (deregisterUnwindTables); absent when nothing was registered. */
  deregister?: bigint;
}

/**
 * Registers the staged build's unwind table. Call it while staging, with a
 * thread borrowed and the build relocated. A build that cannot be registered
 * is still staged: only unwinding through its frames is affected, and the
 * report says why.
 */
export function registerUnwindTables(
  s: Session,
  objects: readonly ProcessObject[],
  elf: ElfObject,
  bias: bigint,
  cache: ElfCache = new ElfCache(),
): Registration {
  const p = plan(objects, elf, bias);
  if (p.ehFrame === undefined)
    return { report: { registered: false, loadedUnwinder: false, reason: p.reason! } };
  const found = p.unwinder
    ? (entryIn(p.unwinder) ?? `${UNWINDER} has no __register_frame`)
    : loadUnwinder(s, objects, cache);
  const loadedUnwinder = !p.unwinder && typeof found !== 'string';
  if (typeof found === 'string')
    return { report: { registered: false, loadedUnwinder: false, reason: found } };
  const ehFrame = p.ehFrame;
  onSafeThread(s, objects, "register the new build's unwind tables", (tid) =>
    s.call(found.register, [ehFrame], runtimeCall(tid, CALL_TIMEOUT_MS)),
  );
  return { report: { registered: true, loadedUnwinder, ehFrame }, deregister: found.deregister };
}

/**
 * Takes a registration back before its build is unmapped (a staging or a
 * switch that failed later). libgcc aborts the process on a table it does
 * not know, so this is only ever given what registerUnwindTables returned.
 */
export function deregisterUnwindTables(
  s: Session,
  objects: readonly ProcessObject[],
  reg: Registration,
): void {
  const { deregister } = reg;
  const ehFrame = reg.report.ehFrame;
  if (deregister === undefined || ehFrame === undefined) return;
  onSafeThread(s, objects, "take back the new build's unwind tables", (tid) =>
    s.call(deregister, [ehFrame], runtimeCall(tid, CALL_TIMEOUT_MS)),
  );
}
