/**
 * The one way the workbenches (demo.ts, hard-lab.ts, bench/fixtures.ts,
 * soak/lib.ts) build a versioned fixture library and a program linked
 * against it. Each keeps its own C sources and version macro; what a
 * version is (the same sources with a -D that selects it), how it is named
 * (its SONAME, so any version can be installed in place of another) and how
 * a program links against it (by SONAME, found at run time through
 * LD_LIBRARY_PATH) lives here.
 */
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, readFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { parseElf, PF_R, PF_W, PF_X } from '../elf/index.js';
import { BUILD, compile } from './compile.js';
import { RELRO_FLAGS, type Relro } from './relro.js';

export interface SharedLib {
  /** C sources under test/fixtures (or inline), as compile() takes them. */
  sources: Parameters<typeof compile>[0]['sources'];
  /** Output file name in the build folder. */
  out: string;
  soname: string;
  /** -D flags (and the like) that select the version and tag the build, before the link flags. */
  defines?: string[];
  relro?: Relro;
  /** Extra flags after the RELRO ones (e.g. '-s', '-Wl,-Bsymbolic', '-Wl,--build-id'). */
  flags?: string[];
  /** Libraries and link flags after the sources. */
  libs?: string[];
}

/** A position-independent shared library under `soname` (compiled once per content, lab/compile.ts). */
export function sharedLib(s: SharedLib): string {
  return compile({
    sources: s.sources,
    out: s.out,
    flags: [
      '-shared',
      '-fPIC',
      '-O2',
      ...(s.defines ?? []),
      `-Wl,-soname,${s.soname}`,
      ...RELRO_FLAGS[s.relro ?? 'full'],
      ...(s.flags ?? []),
    ],
    ...(s.libs ? { libs: s.libs } : {}),
  });
}

/**
 * A folder holding `libs` (SONAME -> built file) under their SONAMEs, for a
 * link with -L: named by their content, so that the program's compile-cache
 * key (which includes the -L path) is the same for the same libraries, and
 * written by rename so that parallel test files never see half a copy.
 */
export function linkFolder(libs: Record<string, string>): string {
  const hash = createHash('sha256');
  for (const [soname, path] of Object.entries(libs).sort(([a], [b]) => a.localeCompare(b)))
    hash.update(soname).update('\0').update(readFileSync(path));
  const dir = join(BUILD, 'link', hash.digest('hex').slice(0, 16));
  mkdirSync(dir, { recursive: true });
  for (const [soname, path] of Object.entries(libs)) {
    if (existsSync(join(dir, soname))) continue;
    const tmp = join(dir, `.${soname}.${process.pid}.tmp`);
    copyFileSync(path, tmp);
    renameSync(tmp, join(dir, soname));
  }
  return dir;
}

export interface LinkedProgram {
  sources: Parameters<typeof compile>[0]['sources'];
  out: string;
  relro?: Relro;
  /** Flags after the RELRO ones (e.g. '-pthread', a tag define, '-rdynamic'). */
  flags?: string[];
  /**
   * The libraries it links against by SONAME (SONAME -> the build to link
   * with, usually version 1), and those they need in turn (found through
   * -rpath-link; their SONAMEs are not named on the command line).
   */
  against: Record<string, string>;
  indirect?: Record<string, string>;
  /** Libraries and link flags before the SONAMEs (e.g. other libraries given by path). */
  before?: string[];
  /** Libraries and link flags after the SONAMEs (e.g. '-ldl'). */
  libs?: string[];
}

/** A program whose DT_NEEDED names the SONAMEs of `against`; which version it runs with is LD_LIBRARY_PATH's choice. */
export function linkedProgram(p: LinkedProgram): string {
  return compile({
    sources: p.sources,
    out: p.out,
    flags: ['-O2', ...RELRO_FLAGS[p.relro ?? 'full'], ...(p.flags ?? [])],
    libs: [...(p.before ?? []), ...linkAgainst(p.against, p.indirect), ...(p.libs ?? [])],
  });
}

/** The link flags that make an object need `against` by SONAME (none when it is empty). */
export function linkAgainst(
  against: Record<string, string>,
  indirect: Record<string, string> = {},
): string[] {
  if (Object.keys(against).length === 0) return [];
  const dir = linkFolder({ ...indirect, ...against });
  return [`-L${dir}`, `-Wl,-rpath-link,${dir}`, ...Object.keys(against).map((soname) => `-l:${soname}`)];
}

/** The demo library (test/fixtures/trigger/libdemo.c) version `v` as libdemo.so.1, tagged when `tag` is given. */
export function libdemo(v: number, opts: { tag?: string; relro?: Relro; flags?: string[] } = {}): string {
  return sharedLib({
    sources: ['trigger/libdemo.c'],
    out: `libdemo-v${v}.so`,
    soname: 'libdemo.so.1',
    defines: [`-DDEMO_VERSION=${v}`, ...(opts.tag === undefined ? [] : [`-DDEMO_TAG="${opts.tag}"`])],
    relro: opts.relro ?? 'full',
    flags: opts.flags ?? [],
  });
}

/**
 * The two ways GNU ld lays out a library's segments, and the flag that asks
 * for each: -z separate-code (headers and read-only data apart from the
 * code: R, RX, R, RW) and -z noseparate-code (headers, code and read-only
 * data in one segment: RX, RW), older toolchains' and some distributions' default.
 */
export const SEGMENT_LAYOUTS = {
  'separate-code': { flags: ['-Wl,-z,separate-code'], loads: ['R', 'RX', 'R', 'RW'] },
  'noseparate-code': { flags: ['-Wl,-z,noseparate-code'], loads: ['RX', 'RW'] },
} as const;
export type SegmentLayout = keyof typeof SEGMENT_LAYOUTS;

/** The permissions of each PT_LOAD of the ELF file at `path`, in order ('R', 'RX', 'RW'...), to check a layout was made. */
export function loadSegments(path: string): string[] {
  return parseElf(readFileSync(path)).loadSegments.map(
    (p) => (p.flags & PF_R ? 'R' : '') + (p.flags & PF_W ? 'W' : '') + (p.flags & PF_X ? 'X' : ''),
  );
}
