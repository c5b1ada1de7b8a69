/**
 * `--status PID`: what the process has loaded, which build of each patched
 * library is live, which patches it carries, and what still refers to old
 * code. Everything is read from the process (link map, /proc/PID/maps, slot
 * values), nothing from a file, so it is true even after the trigger is gone.
 */
import { checkTarget, RemoteMemory, type Mapping } from '../runtime/index.js';
import { memfdNameOfPath, type UlpMemfd } from '../runtime/memfd-names.js';
import { STUB_SIZE } from '../runtime/stub/layout.js';
import {
  buildKey,
  dataMemfdName,
  findDataPointers,
  FORK_PAGE_SIZE,
  parseMemfdPath,
  readForkStatus,
  readLibraryState,
  readRedirectState,
  takeSnapshot,
  type ForkStatus,
  type Journal,
  type LibraryState,
  type ProcessObject,
} from '../runtime/loader/index.js';
import type { PackageInfo } from '../patches/index.js';
import { decodeBundleMeta, type BundleMeta } from './bundle-meta.js';

export interface BuildStatus {
  buildId: string | undefined;
  /** 'loader': mapped by ld.so at load time; 'ulp': mapped by ulp-trigger. */
  source: 'loader' | 'ulp';
  patchId?: string;
  /** For ulp builds: the bundle's new build (apply) or old build (revert of a process started on the new one). */
  role?: 'new' | 'old';
  base: bigint;
  live: boolean;
  /** Slots (GOT entries, data relocations) that point at this build's symbols. */
  slots: number;
}

export interface LibraryStatus {
  soname: string;
  live: string | undefined;
  /** Slots point at more than one build: an interrupted switch; re-run the command to complete it. */
  mixed: boolean;
  aliased: boolean;
  builds: BuildStatus[];
  /**
   * applied-partly / reverted-partly: live, but changed functions of other builds stay reachable (oldCode).
   * package: what the bundle said about itself (format 1.1), kept in the process when it was staged.
   */
  patches: Array<{
    patchId: string;
    state: 'applied' | 'applied-partly' | 'reverted' | 'reverted-partly' | 'inactive';
    package?: PackageInfo;
    downgrade?: true;
  }>;
  /**
   * Code of builds that are not live that pointers taken before a switch can
   * still run: from the redirect journal the last switch left in the process.
   * known: false when there is none for the live build (a switch by an older
   * ulp-trigger, or an interrupted one): then nothing is known to be covered.
   */
  oldCode: { known: boolean; redirected: number; reachable: Journal['uncovered'] };
  oldReferences: {
    /** Slots that still point at a build that is not live. */
    slots: number;
    /** Function pointers in writable data that point into the code of a build that is not live. */
    dataPointers: number;
    samples: Array<{ at: bigint; holder: string; value: bigint; buildId: string | undefined }>;
  };
}

export interface StatusReport {
  pid: number;
  objects: Array<{ name: string; soname: string | undefined; buildId: string | undefined; base: bigint }>;
  libraries: LibraryStatus[];
  /** Bytes of address space mapped by ulp-trigger (builds, shared data, stub page, redirect journals). */
  ulpMappedBytes: number;
  /** Whether a child of the process gets private copies of the shared data (docs/FORK.md). */
  fork: ForkStatus;
  /** Builds whose staging a killed trigger never finished: unused address space, never taken for builds. */
  abandoned: Array<{ name: string; base: bigint }>;
}

function buildStatus(b: ProcessObject, state: LibraryState): BuildStatus {
  return {
    buildId: b.buildId,
    source: b.source === 'linkmap' ? 'loader' : 'ulp',
    ...(b.ulp ? { patchId: b.ulp.patchId, role: b.ulp.role } : {}),
    base: b.bias,
    live: b === state.live,
    slots: state.counts.get(b) ?? 0,
  };
}

export function readStatus(pid: number): StatusReport {
  // Read-only (process_vm_readv and /proc): a process under strace or gdb can be inspected too.
  checkTarget(pid, { readOnly: true });
  const mem = new RemoteMemory(pid);
  const snap = takeSnapshot(pid, mem);
  const linkmap = snap.objects.filter((o) => o.source === 'linkmap');
  const patched = new Set<string>();
  for (const o of snap.objects) if (o.source === 'ulp' && o.soname) patched.add(o.soname);
  for (const soname of snap.dataMappings.keys()) patched.add(soname);
  const metas = new Map<string, BundleMeta>();
  for (const m of snap.maps) {
    const parsed = parseMemfdPath(m.path);
    const id = parsed?.kind === 'meta' ? parsed.patchId : undefined;
    const bytes = id && m.read ? mem.tryRead(m.start, Number(m.end - m.start)) : undefined;
    const meta = id && bytes ? decodeBundleMeta(bytes, id) : undefined;
    if (meta) metas.set(meta.patchId, meta);
  }
  const libraries: LibraryStatus[] = [];
  for (const soname of patched) {
    const state = readLibraryState(snap, soname, mem);
    if (!state) continue;
    const pointers = findDataPointers(snap, state, mem);
    const rs = readRedirectState(mem, snap.maps, soname);
    const known = rs.journal?.live === buildKey(state.live) && !state.mixed;
    const present = new Set(state.family.builds.filter((b) => b !== state.live).map(buildKey));
    // A jump the journal names that memory no longer holds leaves its function reachable too.
    const lost = (rs.journal?.redirects ?? [])
      .filter((r) => !rs.active.includes(r) && present.has(r.from.build))
      .map((r) => ({ fn: r.from, reason: `its jump at ${r.at} is no longer in memory` }));
    const reachable = known ? [...rs.journal!.uncovered.filter((u) => present.has(u.fn.build)), ...lost] : [];
    const oldCode = { known, redirected: known ? rs.active.length : 0, reachable };
    const complete = known && reachable.length === 0;
    const patches = new Map<string, LibraryStatus['patches'][number]['state']>();
    for (const b of state.family.builds) {
      if (!b.ulp) continue;
      const live = b === state.live;
      const st =
        b.ulp.role === 'new'
          ? live
            ? complete
              ? 'applied'
              : 'applied-partly'
            : 'inactive'
          : live
            ? complete
              ? 'reverted'
              : 'reverted-partly'
            : 'inactive';
      if (patches.get(b.ulp.patchId) === undefined || st !== 'inactive') patches.set(b.ulp.patchId, st);
    }
    libraries.push({
      soname,
      live: state.live.buildId,
      mixed: state.mixed,
      aliased: state.aliased,
      builds: state.family.builds.map((b) => buildStatus(b, state)),
      patches: [...patches].map(([patchId, s]) => {
        const meta = metas.get(patchId);
        return {
          patchId,
          state: s,
          ...(meta && Object.keys(meta.package).length > 0 ? { package: meta.package } : {}),
          ...(meta?.downgrade ? { downgrade: true as const } : {}),
        };
      }),
      oldCode,
      oldReferences: {
        slots: [...state.counts].filter(([b]) => b !== state.live).reduce((n, [, c]) => n + c, 0),
        dataPointers: pointers.length,
        samples: pointers
          .slice(0, 20)
          .map((p) => ({ at: p.at, holder: p.holder, value: p.value, buildId: p.build.buildId })),
      },
    });
  }
  const ulpMappedBytes = ulpMappedSize(snap.maps);
  return {
    pid,
    objects: linkmap.map((o) => ({
      name: o.name || '(executable)',
      soname: o.soname,
      buildId: o.buildId,
      base: o.bias,
    })),
    libraries,
    ulpMappedBytes,
    fork: readForkStatus(pid, mem, snap.maps, [...snap.dataMappings.keys()].map(dataMemfdName)),
    abandoned: snap.abandoned.map((m) => ({ name: memfdNameOfPath(m.path) ?? m.path, base: m.start })),
  };
}

/** The size of each page ulp injects, of which only the first (a `ulp:` memfd) has a name; the rest is anonymous memory. */
const INJECTED_PAGE_SIZE: Partial<Record<UlpMemfd['kind'], number>> = {
  stub: STUB_SIZE,
  fork: FORK_PAGE_SIZE,
};

/**
 * Bytes of the process's memory that ulp-trigger mapped: every mapping of a
 * `ulp:` memfd (builds, shared data, journals, metadata, the header pages,
 * names a newer ulp wrote), and the anonymous rest of the stub and fork
 * pages, counted up to their size (an anonymous mapping the kernel merged
 * with a neighbour is counted in part).
 */
export function ulpMappedSize(maps: readonly Mapping[]): number {
  const injected: Array<{ start: bigint; end: bigint }> = [];
  let bytes = 0n;
  for (const m of maps) {
    const parsed = parseMemfdPath(m.path);
    if (!parsed) continue;
    bytes += m.end - m.start;
    const size = m.offset === 0n ? INJECTED_PAGE_SIZE[parsed.kind] : undefined;
    if (size !== undefined) injected.push({ start: m.end, end: m.start + BigInt(size) });
  }
  for (const rest of injected) {
    for (const m of maps) {
      if (m.path !== '') continue;
      const from = m.start > rest.start ? m.start : rest.start;
      const to = m.end < rest.end ? m.end : rest.end;
      if (to > from) bytes += to - from;
    }
  }
  return Number(bytes);
}
