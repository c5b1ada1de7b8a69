/**
 * The objects the dynamic loader has loaded, read from the target's memory
 * the way a debugger does: the executable's DT_DEBUG entry points at
 * ld.so's `struct r_debug` (fallback: ld.so's `_r_debug` symbol), whose
 * r_map heads the list of `struct link_map` (l_addr, l_name, l_ld, l_next).
 * glibc 2.35+ chains further namespaces (dlmopen) through r_next.
 *
 * Each object's build-id comes from its notes in memory (elf/), so it names
 * the build that is really mapped, whatever the file on disk is now.
 */
import { parseElfFromMemory, type ElfObject } from '../elf/index.js';
import { auxvInfo, readAuxv } from './auxv.js';
import { procError } from './errors.js';
import { findMapping, readMaps, type Mapping } from './maps.js';
import { RemoteMemory } from './memory.js';
import { readExeLink } from './procfs.js';

const PT_LOAD = 1;
const PT_DYNAMIC = 2;
const PT_INTERP = 3;
const PT_PHDR = 6;
const DT_NULL = 0n;
const DT_DEBUG = 21n;

/** r_state: the list is being changed by dlopen/dlclose while it is not RT_CONSISTENT. */
const RT_CONSISTENT = 0;

export interface LoadedObject {
  /** Address of its struct link_map in the target. */
  linkMap: bigint;
  /** l_addr: load bias (runtime address = bias + link-time vaddr). */
  bias: bigint;
  /** l_name as the loader stored it ('' for the executable, 'linux-vdso.so.1' for the vDSO). */
  name: string;
  /** Best path for the object: l_name, the executable's /proc/PID/exe, or the mapping's path. */
  path: string;
  /** l_ld: runtime address of its dynamic section. */
  ld: bigint;
  /** Runtime address of its ELF header (start of the mapping of file offset 0). */
  headerAddr: bigint;
  /** Lower-case hex NT_GNU_BUILD_ID read from memory, if the object has one. */
  buildId: string | undefined;
  /** Link-map namespace (0 = the main one; dlmopen creates others). */
  namespace: number;
  isMain: boolean;
  isVdso: boolean;
}

export interface LinkMap {
  /** Address of struct r_debug. */
  rDebug: bigint;
  /** False when the loader was in the middle of dlopen/dlclose (retried a few times first). */
  consistent: boolean;
  objects: LoadedObject[];
  /** /proc/PID/maps as the walk that produced `objects` read it (callers need not read it again). */
  maps: Mapping[];
}

interface ExeInfo {
  bias: bigint;
  dynamic: bigint | undefined;
  interp: boolean;
}

function readExe(mem: RemoteMemory, phdr: bigint, phnum: number): ExeInfo {
  const ph = mem.read(phdr, phnum * 56);
  let bias: bigint | undefined;
  let dynamic: bigint | undefined;
  let interp = false;
  let firstLoad: bigint | undefined;
  for (let i = 0; i < phnum; i++) {
    const o = i * 56;
    const type = ph.readUInt32LE(o);
    const offset = ph.readBigUInt64LE(o + 8);
    const vaddr = ph.readBigUInt64LE(o + 16);
    if (type === PT_PHDR) bias = phdr - vaddr;
    if (type === PT_DYNAMIC) dynamic = vaddr;
    if (type === PT_INTERP) interp = true;
    if (type === PT_LOAD && offset === 0n && firstLoad === undefined) firstLoad = vaddr;
  }
  // Without PT_PHDR the program headers sit right after the ELF header in the first PT_LOAD.
  bias ??= firstLoad !== undefined ? phdr - 64n - firstLoad : 0n;
  return { bias, dynamic: dynamic === undefined ? undefined : bias + dynamic, interp };
}

/** The value ld.so stored in the executable's DT_DEBUG, or 0n. */
function dtDebug(mem: RemoteMemory, dynamic: bigint): bigint {
  for (let i = 0; i < 512; i++) {
    const e = mem.read(dynamic + BigInt(i * 16), 16);
    const tag = e.readBigInt64LE(0);
    if (tag === DT_NULL) return 0n;
    if (tag === DT_DEBUG) return e.readBigUInt64LE(8);
  }
  return 0n;
}

/**
 * The ELF header address of the object whose dynamic section is at `ld` (and
 * the mapping that holds `ld`): at
 * its bias when an offset-0 mapping starts there (an object linked at vaddr
 * 0, as every shared library and PIE is), else the offset-0 mapping of the
 * same file (an object linked at its load address). The bias comes first
 * because the file holding the dynamic section need not be the one holding
 * the header: without RELRO the section lies in the data ulp-trigger shares
 * (a ulp:data memfd), and a -z noseparate-code library whose code was
 * retained (runtime/retain.ts) keeps only its writable pages on the file,
 * one of them mapped from offset 0 too.
 */
export function headerAddrOf(
  maps: readonly Mapping[],
  ld: bigint,
  bias: bigint,
): { headerAddr: bigint; mapping?: Mapping } {
  const m = ld === 0n ? undefined : findMapping(maps, ld);
  if (!m) return { headerAddr: bias };
  if (m.inode === 0) {
    // [vdso]: a single anonymous special mapping, header at its start
    return { headerAddr: m.start, mapping: m };
  }
  if (maps.some((x) => x.start === bias && x.offset === 0n && x.read && x.inode !== 0))
    return { headerAddr: bias, mapping: m };
  const first = maps.find(
    (x) => x.inode === m.inode && x.dev === m.dev && x.offset === 0n && x.start <= m.start,
  );
  return { headerAddr: first?.start ?? bias, mapping: m };
}

function staticError(pid: number): Error {
  return procError(
    'PROC_STATIC',
    `process ${pid} is statically linked: it has no dynamic loader and no shared libraries`,
    'Only shared libraries can be patched; a static program must be rebuilt and restarted.',
    { pid },
  );
}

/** Locates struct r_debug: DT_DEBUG of the executable, else ld.so's `_r_debug`. */
export function findRDebug(pid: number, mem: RemoteMemory = new RemoteMemory(pid)): bigint {
  const aux = auxvInfo(readAuxv(pid));
  const exe = readExe(mem, aux.phdr, aux.phnum);
  if (exe.dynamic === undefined || (aux.base === 0n && !exe.interp)) throw staticError(pid);
  const viaDebug = dtDebug(mem, exe.dynamic);
  if (viaDebug !== 0n) return viaDebug;
  if (aux.base !== 0n) {
    const ld = parseElfFromMemory((a, n) => mem.read(a, n), { bias: aux.base, expect: 'any' });
    const sym = ld.lookup('_r_debug');
    if (sym) return aux.base + sym.value;
  }
  throw procError(
    'PROC_NO_LINK_MAP',
    `process ${pid} has no r_debug yet (DT_DEBUG is empty and ld.so exports no _r_debug)`,
    'The program may still be starting; retry in a moment.',
    { pid },
  );
}

/** Parses a loaded object from target memory (expect: 'any'). */
export function elfInMemory(mem: RemoteMemory, obj: Pick<LoadedObject, 'bias' | 'headerAddr'>): ElfObject {
  return parseElfFromMemory((a, n) => mem.read(a, n), {
    bias: obj.bias,
    headerAddr: obj.headerAddr,
    expect: 'any',
  });
}

export interface LinkMapOptions {
  /** Read build-ids (one small read per object; default true). */
  buildIds?: boolean;
}

/** Walks every namespace's link map. Does not need the process stopped. */
export function readLinkMap(
  pid: number,
  mem: RemoteMemory = new RemoteMemory(pid),
  opts: LinkMapOptions = {},
): LinkMap {
  const rDebug = findRDebug(pid, mem);
  for (let attempt = 0; ; attempt++) {
    const r = walk(pid, mem, rDebug, opts);
    if (r.consistent || attempt >= 20) return r;
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1); // dlopen in progress: let it finish
  }
}

function walk(pid: number, mem: RemoteMemory, rDebug: bigint, opts: LinkMapOptions): LinkMap {
  const maps = readMaps(pid);
  const objects: LoadedObject[] = [];
  let consistent = true;
  const seenDebug = new Set<bigint>();
  let ns = 0;
  for (let rd = rDebug; rd !== 0n && !seenDebug.has(rd) && ns < 16; ns++) {
    seenDebug.add(rd);
    const hdr = mem.read(rd, 48);
    const version = hdr.readInt32LE(0);
    if (version === 0) {
      throw procError(
        'PROC_NO_LINK_MAP',
        `the loader of process ${pid} has not initialised r_debug yet`,
        'The program is still starting; retry in a moment.',
        { pid },
      );
    }
    if (hdr.readInt32LE(24) !== RT_CONSISTENT) consistent = false;
    const seen = new Set<bigint>();
    for (let lm = hdr.readBigUInt64LE(8); lm !== 0n && !seen.has(lm) && seen.size < 100_000;) {
      seen.add(lm);
      const l = mem.read(lm, 40);
      const bias = l.readBigUInt64LE(0);
      const namePtr = l.readBigUInt64LE(8);
      const ld = l.readBigUInt64LE(16);
      const name = namePtr === 0n ? '' : mem.readCString(namePtr);
      const { headerAddr, mapping } = headerAddrOf(maps, ld, bias);
      const isMain = objects.length === 0 && ns === 0;
      const isVdso = mapping?.path === '[vdso]';
      const path = isMain
        ? (readExeLink(pid) ?? name)
        : name || (mapping?.path.replace(/ \(deleted\)$/, '') ?? '');
      let buildId: string | undefined;
      if (opts.buildIds ?? true) {
        try {
          buildId = elfInMemory(mem, { bias, headerAddr }).buildId;
        } catch {
          buildId = undefined; // an object whose headers are not mapped readable: no build-id to report
        }
      }
      objects.push({ linkMap: lm, bias, name, path, ld, headerAddr, buildId, namespace: ns, isMain, isVdso });
      lm = l.readBigUInt64LE(24);
    }
    rd = version >= 2 ? hdr.readBigUInt64LE(40) : 0n;
  }
  return { rDebug, consistent, objects, maps };
}

/** Offset of `_ns_main_searchlist` in `_rtld_global._dl_ns[0]` (after `_ns_loaded` and `_ns_nloaded`). */
const NS_MAIN_SEARCHLIST = 16n;

/**
 * ld.so's global scope, as link_map addresses in lookup order: the main
 * namespace's search list, `_rtld_global._dl_ns[0]._ns_main_searchlist`
 * (a `struct r_scope_elem { struct link_map **r_list; unsigned r_nlist; }`).
 * It holds the executable, its dependencies and the objects dlopen'ed with
 * RTLD_GLOBAL; an object dlopen'ed RTLD_LOCAL is not in it, and ld.so never
 * looks there for another object's symbols. `_rtld_global` is
 * GLIBC_PRIVATE, but `_dl_ns` must stay its first member (debuggers rely on
 * it) and the first fields of `struct link_namespaces` have not moved in
 * two decades; the list read is also checked against the link map, and
 * undefined is returned when it does not fit.
 */
export function readGlobalScope(
  mem: RemoteMemory,
  rtldGlobal: bigint,
  linkMaps: readonly bigint[],
): bigint[] | undefined {
  try {
    const ns = mem.read(rtldGlobal, 24);
    if (ns.readBigUInt64LE(0) !== linkMaps[0]) return undefined; // _ns_loaded: the main map
    const elem = mem.read(ns.readBigUInt64LE(Number(NS_MAIN_SEARCHLIST)), 12);
    const list = elem.readBigUInt64LE(0);
    const n = elem.readUInt32LE(8);
    if (n === 0 || n > linkMaps.length) return undefined;
    const raw = mem.read(list, n * 8);
    const known = new Set(linkMaps);
    const out: bigint[] = [];
    for (let i = 0; i < n; i++) {
      const lm = raw.readBigUInt64LE(i * 8);
      if (!known.has(lm)) return undefined;
      out.push(lm);
    }
    return out[0] === linkMaps[0] ? out : undefined;
  } catch {
    return undefined; // unreadable: the caller falls back to the whole link map
  }
}
