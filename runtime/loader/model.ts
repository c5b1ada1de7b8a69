/**
 * The loader's view of a process: every object that holds code, whether the
 * dynamic loader mapped it (it is in the link map) or an earlier run of the
 * trigger did (a `ulp:` memfd). Planning code works only on this model and a
 * memory reader, so it can be tested without ptrace.
 */
import type { ElfObject } from '../../elf/types.js';

export interface ProcessObject {
  /** Path from the link map (`''` for the executable), or the memfd name of a build we mapped. */
  name: string;
  /** Load bias: runtime address = bias + vaddr. */
  bias: bigint;
  /** Parsed from the process's memory. */
  elf: ElfObject;
  buildId: string | undefined;
  soname: string | undefined;
  /** Mapped by ld.so (link map) or by ulp-trigger (a memfd named `ulp:…`). */
  source: 'linkmap' | 'ulp';
  /** Address of the link_map entry, for objects the loader knows. */
  linkMapAddr?: bigint;
  /** Set for builds ulp-trigger mapped: which patch staged it and in which role. */
  ulp?: BuildName;
  /** [start, end) of every executable segment, as runtime addresses. */
  code: Array<{ start: bigint; end: bigint }>;
  /** [start, end) of the whole image, as runtime addresses. */
  span: { start: bigint; end: bigint };
}

/** A page-aligned [start, end) range of link-time vaddrs. */
export interface Region {
  start: bigint;
  end: bigint;
}

/** Reads the target's memory; throws UlpError when the range is unmapped. */
export type ReadMemory = (addr: bigint, length: number) => Buffer;

/** Every build of one library present in a process (same SONAME). */
export interface Family {
  soname: string;
  /** The build the dynamic loader mapped: its writable region holds the canonical copy of the library's data. */
  canonical: ProcessObject;
  /** All builds, canonical first. */
  builds: ProcessObject[];
}

export interface BuildName {
  patchId: string;
  role: 'new' | 'old';
  soname: string;
  /**
   * Build-id prefix of the bundle's other build: the one a `new` build was
   * stacked on, the one an `old` build sits under (library.ts lineageOf).
   * Absent in names written before it was recorded.
   */
  peer?: string;
}

/*
 * State lives in the process, in memfd names that /proc/PID/maps shows as
 * `/memfd:<name> (deleted)`. Builds: `ulp:<patch-id>[@<peer>]:<new|old>:<soname>`,
 * where peer is the first 16 hex digits of the bundle's other build-id.
 * Shared data of a library: `ulp:data:<soname>`.
 */
const BUILD_RE = /^ulp:([0-9a-f]{8,64})(?:@([0-9a-f]{1,40}))?:(new|old):(.+)$/;
const DATA_RE = /^ulp:data:(.+)$/;
/** memfd_create accepts names of up to 249 bytes. */
const MAX_NAME = 249;

export function buildMemfdName(patchId: string, role: 'new' | 'old', soname: string, peer?: string): string {
  return `ulp:${patchId}${peer ? `@${peer.slice(0, 16)}` : ''}:${role}:${soname}`.slice(0, MAX_NAME);
}

/**
 * What a bundle says about itself for an operator (package, versions, CVEs),
 * kept in the process beside the builds so that --status can show it:
 * a sealed read-only memfd `ulp:meta:<patch-id>` holding JSON. Readers that
 * predate it ignore the name (it matches neither form above).
 */
const META_RE = /^\/memfd:ulp:meta:([0-9a-f]{8,64})(?: \(deleted\))?$/;

export function metaMemfdName(patchId: string): string {
  return `ulp:meta:${patchId}`;
}

/** The patch id of a metadata mapping's path in /proc/PID/maps, or undefined. */
export function parseMetaPath(path: string): string | undefined {
  return META_RE.exec(path)?.[1];
}

export function dataMemfdName(soname: string): string {
  return `ulp:data:${soname}`.slice(0, MAX_NAME);
}

/** Parses the path column of /proc/PID/maps for a memfd we created. */
export function parseMemfdPath(path: string): { kind: 'build'; name: BuildName } | { kind: 'data'; soname: string } | undefined {
  const m = /^\/memfd:(.*?)(?: \(deleted\))?$/.exec(path);
  if (!m) return undefined;
  const b = BUILD_RE.exec(m[1]!);
  if (b) return { kind: 'build', name: { patchId: b[1]!, role: b[3] as 'new' | 'old', soname: b[4]!, ...(b[2] ? { peer: b[2] } : {}) } };
  const d = DATA_RE.exec(m[1]!);
  if (d) return { kind: 'data', soname: d[1]! };
  return undefined;
}

export function contains(range: { start: bigint; end: bigint }, addr: bigint): boolean {
  return addr >= range.start && addr < range.end;
}

export function inCode(obj: ProcessObject, addr: bigint): boolean {
  return obj.code.some((r) => contains(r, addr));
}
