/**
 * Reads, without stopping anything, what a process has loaded: the objects in
 * the dynamic loader's link map and the builds earlier runs of the trigger
 * mapped from `ulp:` memfds, each parsed from the process's own memory.
 */
import { imageSpan, parseElfFromMemory, type ElfObject } from '../../elf/index.js';
import { readGlobalScope, readLinkMap } from '../linkmap.js';
import { findMapping, type Mapping } from '../maps.js';
import { ElfCache } from './elf-cache.js';
import type { RemoteMemory } from '../memory.js';
import { memfdNameOfPath, parseMemfdPath } from '../memfd-names.js';
import type { Family, ProcessObject } from './model.js';
import { recordScopes } from './scope.js';
import { buildMappings } from './build-mappings.js';
import { codeOf } from './code-ranges.js';

export interface Snapshot {
  pid: number;
  /** Link-map objects of the main namespace in link-map order (the executable first), then ulp builds. */
  objects: ProcessObject[];
  maps: Mapping[];
  /** Shared data memfds already created, by SONAME: the start of each mapping of it. */
  dataMappings: Map<string, Mapping[]>;
  /**
   * Builds whose staging never finished (a trigger killed while staging),
   * one mapping each (build-mappings.ts): nothing points at them, so they
   * are not builds, only address space that --status reports.
   */
  abandoned: Mapping[];
}

function describe(elf: ElfObject, bias: bigint): Pick<ProcessObject, 'code' | 'span' | 'buildId' | 'soname'> {
  const span = imageSpan(elf);
  return {
    buildId: elf.buildId,
    soname: elf.soname,
    span: { start: bias + span.start, end: bias + span.end },
    code: codeOf(elf).map((r) => ({ start: bias + r.start, end: bias + r.end })),
  };
}

/** `cache` carries parsed objects from one process to the next (ulp-trigger --all). */
export function takeSnapshot(pid: number, mem: RemoteMemory, cache: ElfCache = new ElfCache()): Snapshot {
  const read = (a: bigint, n: number) => mem.read(a, n);
  const lm = readLinkMap(pid, mem, { buildIds: false });
  const maps = lm.maps;
  const objects: ProcessObject[] = [];
  for (const o of lm.objects) {
    // Other namespaces (dlmopen) have scopes of their own; they are not patched (docs/LIMITATIONS.md).
    if (o.namespace !== 0 || o.isVdso) continue;
    const elf = cache.object(read, o.bias, o.headerAddr, findMapping(maps, o.headerAddr));
    objects.push({
      name: o.isMain ? '' : o.path,
      bias: o.bias,
      elf,
      source: 'linkmap',
      linkMapAddr: o.linkMap,
      ...describe(elf, o.bias),
    });
  }
  recordScopes(
    objects,
    readGlobal(
      mem,
      objects,
      lm.objects.filter((o) => o.namespace === 0).map((o) => o.linkMap),
    ),
  );
  const dataMappings = new Map<string, Mapping[]>();
  for (const m of maps) {
    const parsed = parseMemfdPath(m.path);
    if (parsed?.kind === 'data')
      dataMappings.set(parsed.soname, [...(dataMappings.get(parsed.soname) ?? []), m]);
  }
  const { builds, abandoned } = buildMappings(maps);
  for (const m of builds) {
    const parsed = parseMemfdPath(m.path);
    if (parsed?.kind !== 'build') continue;
    const elf = parseElfFromMemory(read, { bias: m.start, headerAddr: m.start, expect: 'any' });
    objects.push({
      name: memfdNameOfPath(m.path)!,
      bias: m.start,
      elf,
      source: 'ulp',
      ulp: parsed.name,
      ...describe(elf, m.start),
    });
  }
  return { pid, objects, maps, dataMappings, abandoned };
}

/** ld.so's global search list as objects, or undefined when it cannot be read (see readGlobalScope). */
function readGlobal(
  mem: RemoteMemory,
  objects: readonly ProcessObject[],
  linkMaps: readonly bigint[],
): ProcessObject[] | undefined {
  for (const o of objects) {
    const sym = o.elf.lookup('_rtld_global');
    if (!sym?.defined) continue;
    const list = readGlobalScope(mem, o.bias + sym.value, linkMaps);
    const byMap = new Map(objects.map((x) => [x.linkMapAddr, x]));
    // The vDSO is left out of the objects: it defines nothing a library imports by name.
    return list?.map((lm) => byMap.get(lm)).filter((x): x is ProcessObject => x !== undefined);
  }
  return undefined;
}

/** Every build of the library named `soname` in the process, or undefined when the loader has not loaded it. */
export function familyOf(snapshot: Snapshot, soname: string): Family | undefined {
  const builds = snapshot.objects.filter((o) => o.soname === soname);
  const canonical = builds.find((o) => o.source === 'linkmap');
  if (!canonical) return undefined;
  return { soname, canonical, builds: [canonical, ...builds.filter((b) => b !== canonical)] };
}
