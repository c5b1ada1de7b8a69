/**
 * The names of the memfds ulp-trigger creates in a process: the state format
 * that lives in every patched process, read back by every later run from
 * /proc/PID/maps (where a name shows as `/memfd:<name> (deleted)`). There is
 * no state file: these names, and the pages behind them, are the state. This
 * module alone formats and parses them.
 *
 *   ulp:stub                                   the injection stub's header page (stub/layout.ts)
 *   ulp:fork                                   the fork page's header page (loader/fork/layout.ts)
 *   ulp:<patch-id>[@<peer>]:<new|old>:<soname> a build mapped by ulp-trigger; peer: the first
 *                                              16 hex digits of the bundle's other build-id
 *   ulp:data:<soname>                          the shared writable data of a library
 *   ulp:meta:<patch-id>                        a bundle's description (package, versions, CVEs)
 *   ulp:redirects:<soname>                     the entry-redirect journal of a library
 *
 * A name is cut to the 249 bytes memfd_create accepts. Readers ignore a
 * `ulp:` name they do not know (a newer ulp wrote it), except to count its
 * memory.
 */

/** What every name starts with. */
const PREFIX = 'ulp:';
/** memfd_create accepts names of up to 249 bytes. */
export const MAX_MEMFD_NAME = 249;

export const STUB_MEMFD = 'ulp:stub';
export const FORK_MEMFD = 'ulp:fork';

/** Identifies a build ulp-trigger mapped: which patch staged it and in which role. */
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

export type UlpMemfd =
  | { kind: 'stub' }
  | { kind: 'fork' }
  | { kind: 'build'; name: BuildName }
  | { kind: 'data'; soname: string }
  | { kind: 'meta'; patchId: string }
  | { kind: 'redirects'; soname: string }
  /** A `ulp:` name this version does not know. */
  | { kind: 'other'; name: string };

const cut = (name: string) => name.slice(0, MAX_MEMFD_NAME);

export function buildMemfdName(patchId: string, role: 'new' | 'old', soname: string, peer?: string): string {
  return cut(`${PREFIX}${patchId}${peer ? `@${peer.slice(0, 16)}` : ''}:${role}:${soname}`);
}

export function dataMemfdName(soname: string): string {
  return cut(`${PREFIX}data:${soname}`);
}

export function metaMemfdName(patchId: string): string {
  return cut(`${PREFIX}meta:${patchId}`);
}

export function journalMemfdName(soname: string): string {
  return cut(`${PREFIX}redirects:${soname}`);
}

/** What /proc/PID/maps shows for a mapping of the memfd `name`. */
export function memfdMapsPath(name: string): string {
  return `/memfd:${name} (deleted)`;
}

const BUILD_RE = /^ulp:([0-9a-f]{8,64})(?:@([0-9a-f]{1,40}))?:(new|old):(.+)$/;
const DATA_RE = /^ulp:data:(.+)$/;
const META_RE = /^ulp:meta:([0-9a-f]{8,64})$/;
const REDIRECTS_RE = /^ulp:redirects:(.+)$/;

/** Parses a memfd name; undefined for a name that is not ulp's. */
export function parseMemfdName(name: string): UlpMemfd | undefined {
  if (!name.startsWith(PREFIX)) return undefined;
  if (name === STUB_MEMFD) return { kind: 'stub' };
  if (name === FORK_MEMFD) return { kind: 'fork' };
  const b = BUILD_RE.exec(name);
  if (b)
    return {
      kind: 'build',
      name: { patchId: b[1]!, role: b[3] as 'new' | 'old', soname: b[4]!, ...(b[2] ? { peer: b[2] } : {}) },
    };
  const m = META_RE.exec(name);
  if (m) return { kind: 'meta', patchId: m[1]! };
  const d = DATA_RE.exec(name);
  if (d) return { kind: 'data', soname: d[1]! };
  const r = REDIRECTS_RE.exec(name);
  if (r) return { kind: 'redirects', soname: r[1]! };
  return { kind: 'other', name };
}

/** The memfd name in a path column of /proc/PID/maps (`/memfd:NAME (deleted)`), or undefined for another mapping. */
export function memfdNameOfPath(path: string): string | undefined {
  return /^\/memfd:(.*?)(?: \(deleted\))?$/.exec(path)?.[1];
}

/** Parses the path column of /proc/PID/maps; undefined for a mapping that is not one of ulp's memfds. */
export function parseMemfdPath(path: string): UlpMemfd | undefined {
  const name = memfdNameOfPath(path);
  return name === undefined ? undefined : parseMemfdName(name);
}

/** The soname in a `ulp:data:<soname>` name, or the name itself when it is not one. */
export function sonameOfDataName(name: string): string {
  const parsed = parseMemfdName(name);
  return parsed?.kind === 'data' ? parsed.soname : name;
}

/*
 * The memfd name of a retained old build's code (runtime/retain.ts, `--outdated --apply`): it carries the
 * device and inode of the deleted file the code came from, so that readers of /proc/PID/maps
 * (--outdated, ulp-pack --pid) still tie the copy to its file. Not a `ulp:` name: the copy is the old
 * build itself, not state ulp added to the process.
 */
const RETAINED_RE = /^\/memfd:ulp-retained:([0-9a-f]+:[0-9a-f]+):(\d+):(.+?)(?: \(deleted\))?$/;

/** The memfd name for a copy of a mapping of file dev:inode (memfd names are at most 249 bytes). */
export function retainedMemfdName(dev: string, inode: number, soname: string): string {
  return `ulp-retained:${dev}:${inode}:${soname}`.slice(0, MAX_MEMFD_NAME);
}

/** "dev:inode" of the file a retained copy came from, for a path of /proc/PID/maps; undefined for any other path. */
export function retainedFileKey(path: string): string | undefined {
  const m = RETAINED_RE.exec(path);
  return m ? `${m[1]}:${m[2]}` : undefined;
}
