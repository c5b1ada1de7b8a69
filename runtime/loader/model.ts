/**
 * The loader's view of a process: every object that holds code, whether the
 * dynamic loader mapped it (it is in the link map) or an earlier run of the
 * trigger did (a `ulp:` memfd). Planning code works only on this model and a
 * memory reader, so it can be tested without ptrace.
 */
import type { ElfObject } from '../../elf/types.js';
import type { BuildName } from '../memfd-names.js';

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

export function contains(range: { start: bigint; end: bigint }, addr: bigint): boolean {
  return addr >= range.start && addr < range.end;
}

export function inCode(obj: ProcessObject, addr: bigint): boolean {
  return obj.code.some((r) => contains(r, addr));
}
