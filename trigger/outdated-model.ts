/**
 * `--outdated`, the pure part: which mappings of a process are shared
 * libraries whose file was replaced on disk, what a process's state is for
 * one of them, package versions from ELF notes and dpkg's database, the
 * report and its exit code. The effects (reading /proc, files, memory) are in
 * outdated.ts.
 */
import type { Mapping } from '../runtime/maps.js';
import type { ElfNote } from '../elf/types.js';
import { retainedFileKey } from '../runtime/memfd-names.js';

/** One file a process maps with code in it, as /proc/PID/maps shows it. */
export interface MappedFile {
  /** The path inside the process's root, without " (deleted)". */
  path: string;
  deleted: boolean;
  /** "maj:min" and inode of the file the process maps (the running build). */
  dev: string;
  inode: number;
  /** The mapping at file offset 0: the ELF header, and the range /proc/PID/map_files names. */
  header: Mapping;
  /**
   * A mapping of the file itself, when `header` is not one: the header page was executable
   * (a build linked without -z separate-code) and --outdated --apply moved it onto a memfd copy.
   * Its /proc/PID/map_files entry opens the whole file; the copy's holds only the moved code.
   */
  file?: Mapping;
}

/** Paths that are files but never a library a package replaces. */
const SPECIAL = /^\/(?:memfd:|dev\/|SYSV|proc\/|sys\/|\[|anon_inode:)/;

/**
 * Files mapped with at least one executable mapping and a readable mapping
 * at offset 0 (the ELF header): shared libraries, the executable, and code
 * other tools mapped. Files ulp-trigger mapped are memfds and never listed.
 */
export function mappedCodeFiles(maps: readonly Mapping[]): MappedFile[] {
  const byFile = new Map<
    string,
    { exec: boolean; header?: Mapping; path: string; deleted: boolean; dev: string; inode: number }
  >();
  // A patched library's old build whose code --outdated --apply moved onto a memfd copy (runtime/retain.ts) is still that file's code.
  const retained = new Map<string, Mapping[]>();
  for (const m of maps) {
    const k = m.exec ? retainedFileKey(m.path) : undefined;
    if (k) retained.set(k, [...(retained.get(k) ?? []), m]);
  }
  for (const m of maps) {
    if (m.inode === 0 || !m.path.startsWith('/') || SPECIAL.test(m.path)) continue;
    const key = `${m.dev}:${m.inode}`;
    let f = byFile.get(key);
    if (!f)
      byFile.set(
        key,
        (f = {
          exec: false,
          path: m.deleted ? m.path.slice(0, -' (deleted)'.length) : m.path,
          deleted: m.deleted,
          dev: m.dev,
          inode: m.inode,
        }),
      );
    if (m.exec || retained.has(key)) f.exec = true;
    if (m.offset === 0n && m.read && !f.header) f.header = m;
  }
  const out: MappedFile[] = [];
  for (const [key, f] of byFile) {
    // The copies are made in address order into one memfd: the one at memfd offset 0 is the file's first
    // executable mapping, the header page when it lies below every offset-0 mapping left on the file (a
    // -z noseparate-code build may map its first file page again, writable, above its code).
    const copied = retained.get(key)?.find((m) => m.offset === 0n && m.read);
    const copiedHeader = copied && (!f.header || copied.start < f.header.start) ? copied : undefined;
    if (copiedHeader) {
      const own = f.header ?? maps.find((m) => `${m.dev}:${m.inode}` === key)!;
      out.push({
        path: f.path,
        deleted: f.deleted,
        dev: f.dev,
        inode: f.inode,
        header: copiedHeader,
        file: own,
      });
    } else if (f.exec && f.header)
      out.push({ path: f.path, deleted: f.deleted, dev: f.dev, inode: f.inode, header: f.header });
  }
  return out;
}

/** A stat dev_t as /proc/PID/maps prints it ("fe:01"): glibc's gnu_dev_major/minor. */
export function devString(dev: number | bigint): string {
  const d = BigInt(dev);
  const major = ((d >> 8n) & 0xfffn) | ((d >> 32n) & 0xfffff000n);
  const minor = (d & 0xffn) | ((d >> 12n) & 0xffffff00n);
  return `${major.toString(16).padStart(2, '0')}:${minor.toString(16).padStart(2, '0')}`;
}

/**
 * Whether the file now at the mapping's path may be another build than the
 * one mapped: the mapped file was unlinked (dpkg renames the new file over
 * the path), or the path names another inode. Devices are compared only when
 * both are real block devices: btrfs, overlayfs and other anonymous-device
 * filesystems show another device in maps than stat gives. The caller then
 * compares build-ids, which decides.
 */
export function mayBeReplaced(
  f: MappedFile,
  onDisk: { dev: number | bigint; ino: number | bigint } | undefined,
): boolean {
  if (!onDisk) return false; // removed without replacement, or not visible: nothing to update to
  if (f.deleted) return true;
  if (BigInt(onDisk.ino) !== BigInt(f.inode)) return true;
  const disk = devString(onDisk.dev);
  return !disk.startsWith('00:') && !f.dev.startsWith('00:') && disk !== f.dev;
}

/** The package note systemd's tools and several distributions add (owner "FDO", type 0xcafe1a7e, a JSON object). */
const NT_FDO_PACKAGING_METADATA = 0xcafe1a7e;

export interface PackageInfo {
  name?: string;
  version?: string;
  /** Where it was found: the ELF's .note.package, or dpkg's database (the package that owns the path now). */
  source: 'note' | 'dpkg';
}

export function packageFromNotes(notes: readonly ElfNote[]): PackageInfo | undefined {
  const n = notes.find((x) => x.name === 'FDO' && x.type === NT_FDO_PACKAGING_METADATA);
  if (!n) return undefined;
  try {
    const text = n.desc.toString('utf8').replace(/\0+$/, '');
    const j = JSON.parse(text) as { name?: unknown; version?: unknown };
    const name = typeof j.name === 'string' ? j.name : undefined;
    const version = typeof j.version === 'string' ? j.version : undefined;
    if (!name && !version) return undefined;
    return { ...(name ? { name } : {}), ...(version ? { version } : {}), source: 'note' };
  } catch {
    return undefined; // a malformed note says nothing
  }
}

/**
 * The paths under which dpkg may list a file: on a merged-/usr system the
 * kernel shows /usr/lib/... while older packages list /lib/... (and the
 * reverse), since /lib is a symbolic link to usr/lib.
 */
export function dpkgPathAliases(path: string): string[] {
  const m = /^\/usr(\/(?:lib|lib64|lib32|libx32|bin|sbin)\/.*)$/.exec(path);
  if (m) return [path, m[1]!];
  const n = /^(\/(?:lib|lib64|lib32|libx32|bin|sbin)\/.*)$/.exec(path);
  if (n) return [path, '/usr' + n[1]!];
  return [path];
}

/** Installed packages' versions from /var/lib/dpkg/status, by "name" and "name:arch". */
export function parseDpkgStatus(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const stanza of text.split(/\n\s*\n/)) {
    const field = (k: string) => new RegExp(`^${k}:[ \\t]*(.*)$`, 'm').exec(stanza)?.[1]?.trim();
    const name = field('Package');
    const version = field('Version');
    const status = field('Status');
    if (!name || !version || !status || !/ installed$/.test(status)) continue;
    const arch = field('Architecture');
    out.set(name, version);
    if (arch) out.set(`${name}:${arch}`, version);
  }
  return out;
}

/** What the process can have happen to it for one replaced library. */
export type ProcessState = 'patched' | 'patchable' | 'refused' | 'inaccessible';

export interface Reason {
  code: string;
  message: string;
  category?: string;
}

export interface OutdatedProcess {
  pid: number;
  command: string;
  state: ProcessState;
  /** The build the process runs (its live build when ulp-trigger mapped others). */
  running: { buildId: string | undefined; package?: PackageInfo };
  /** Where the running build's bytes can be read while its file is gone (root only). */
  mapFiles: string;
  reasons?: Reason[];
  /** Another tracer is attached: ulp-trigger can read the process but not patch it until it detaches. */
  tracedBy?: number;
}

export interface OutdatedLibrary {
  path: string;
  soname: string | undefined;
  onDisk: { buildId: string | undefined; package?: PackageInfo };
  processes: OutdatedProcess[];
}

export interface PairVerdict {
  from: string;
  to: string;
  verdict: 'unchanged' | 'compatible' | 'incompatible' | 'unusable';
  reasons: Reason[];
}

export interface OutdatedReport {
  libraries: OutdatedLibrary[];
  /** Each distinct (running build, on-disk build) pair, analysed once. */
  pairs: PairVerdict[];
  summary: Record<ProcessState, number> & { processes: number };
  /** Processes whose memory map this user may not read: they may run replaced libraries too. */
  uninspected: number;
  /** Processes looked at. */
  scanned: number;
  totalMs: number;
}

/** A process's state for one library, from what was found about it. */
export function stateOf(
  liveBuildId: string | undefined,
  diskBuildId: string | undefined,
  pair: PairVerdict | undefined,
  refusal: Reason | undefined,
): { state: ProcessState; reasons?: Reason[] } {
  if (liveBuildId !== undefined && liveBuildId === diskBuildId) return { state: 'patched' };
  if (refusal) return { state: 'refused', reasons: [refusal] };
  if (!pair)
    return {
      state: 'inaccessible',
      reasons: [
        {
          code: 'OUTDATED_BUILD_UNREADABLE',
          message: 'the running build could not be read to compare it with the one on disk',
        },
      ],
    };
  if (pair.verdict === 'compatible' || pair.verdict === 'unchanged') return { state: 'patchable' };
  return { state: 'refused', reasons: pair.reasons };
}

export function summarize(libraries: readonly OutdatedLibrary[]): OutdatedReport['summary'] {
  const s = { processes: 0, patched: 0, patchable: 0, refused: 0, inaccessible: 0 };
  const pids = new Set<number>();
  for (const l of libraries) {
    for (const p of l.processes) {
      s[p.state]++;
      pids.add(p.pid);
    }
  }
  s.processes = pids.size;
  return s;
}

/**
 * Exit status of --outdated: something is left to do (a process runs a
 * replaced build that is not patched: outdated); nothing is, but some
 * processes could not be inspected (target); or everything is current.
 */
export function outdatedOutcome(
  r: Pick<OutdatedReport, 'summary' | 'uninspected'>,
): 'current' | 'outdated' | 'uninspected' {
  const s = r.summary;
  if (s.patchable + s.refused + s.inaccessible > 0) return 'outdated';
  return r.uninspected > 0 ? 'uninspected' : 'current';
}
