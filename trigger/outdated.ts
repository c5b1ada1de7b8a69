/**
 * `--outdated`: every process that still runs a shared library whose file a
 * package upgrade replaced, with the build it runs, the build now on disk,
 * and whether ulp can switch it (patched, patchable, refused, inaccessible).
 *
 * Read-only, and without ptrace, so it works on processes a debugger or
 * strace holds: /proc/PID/maps and stat find replaced files (as needrestart
 * and checkrestart do), process_vm_readv reads the running build's build-id,
 * and /proc/PID/map_files gives the running build's bytes even though its
 * file is gone. Each file is parsed once and each distinct (running build,
 * on-disk build) pair analysed once, whatever the number of processes.
 */
import { closeSync, openSync, readdirSync, readFileSync, readSync, statSync, type Stats } from 'node:fs';
import { isUlpError } from '../common/errors.js';
import { parseElf, parseElfFromMemory } from '../elf/index.js';
import { judgeBuilds } from '../packer/judge.js';
import { parseMaps, RemoteMemory, type Mapping } from '../runtime/index.js';
import { parseMemfdPath, readLibraryState, takeSnapshot } from '../runtime/loader/index.js';
import { liveTid, readComm, readStatus as readProcStatus } from '../runtime/procfs.js';
import { retainedFileKey } from '../runtime/memfd-names.js';
import { refuseGlibc } from './apply.js';
import {
  devString,
  dpkgPathAliases,
  mappedCodeFiles,
  mayBeReplaced,
  packageFromNotes,
  parseDpkgStatus,
  stateOf,
  summarize,
  type MappedFile,
  type OutdatedLibrary,
  type OutdatedReport,
  type PackageInfo,
  type PairVerdict,
  type Reason,
} from './outdated-model.js';

export interface OutdatedOptions {
  /** Only these processes (default: every process on the machine). */
  pids?: number[];
  onProcess?: (done: number, total: number) => void;
}

interface RunningBuild {
  buildId: string | undefined;
  soname: string | undefined;
  package?: PackageInfo;
}

interface DiskBuild {
  bytes: Buffer;
  buildId: string | undefined;
  soname: string | undefined;
  package?: PackageInfo;
}

const errno = (e: unknown) => (e as NodeJS.ErrnoException).code;
const mapFilesPath = (pid: number, m: Mapping) =>
  `/proc/${pid}/map_files/${m.start.toString(16)}-${m.end.toString(16)}`;

function allPids(): number[] {
  return readdirSync('/proc')
    .filter((e) => /^\d+$/.test(e))
    .map(Number)
    .filter((p) => p !== process.pid);
}

function tryStat(path: string): Stats | undefined {
  try {
    return statSync(path);
  } catch {
    return undefined;
  }
}

/** The first bytes of the file say ELF, 64-bit, ET_DYN. */
function isElfSharedObject(path: string): boolean {
  const fd = openSync(path, 'r');
  try {
    const h = Buffer.alloc(18);
    return (
      readSync(fd, h, 0, 18, 0) === 18 &&
      h.readUInt32BE(0) === 0x7f454c46 &&
      h[4] === 2 &&
      h.readUInt16LE(16) === 3
    );
  } finally {
    closeSync(fd);
  }
}

/** Everything the scan learns once and reuses for every process. */
class Scan {
  /** Running builds by the mapped file's dev:inode, read from the first process's memory that maps it. */
  readonly running = new Map<string, RunningBuild>();
  /** Files on disk by dev:inode:size:mtime, parsed once; null when not an ELF shared object. */
  readonly disk = new Map<string, DiskBuild | null>();
  /** Verdicts by "running>disk" build-id. */
  readonly pairs = new Map<string, PairVerdict>();
  readonly libraries = new Map<string, OutdatedLibrary & { root: string; pid: number }>();
  uninspected = 0;

  diskBuild(path: string, st: Stats): DiskBuild | null {
    const key = `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}`;
    let d = this.disk.get(key);
    if (d !== undefined) return d;
    d = null;
    try {
      // Only an ELF shared object is read whole: a replaced data file mapped executable may be large.
      if (!isElfSharedObject(path)) {
        this.disk.set(key, d);
        return d;
      }
      const bytes = readFileSync(path);
      const elf = parseElf(bytes, { expect: 'any' });
      if (elf.header.type === 3 /* ET_DYN */) {
        const pkg = packageFromNotes(elf.notes);
        d = { bytes, buildId: elf.buildId, soname: elf.soname, ...(pkg ? { package: pkg } : {}) };
      }
    } catch (e) {
      if (!isUlpError(e) && !errno(e)) throw e; // unreadable or not ELF: not a library we can say anything about
    }
    this.disk.set(key, d);
    return d;
  }

  /** The mapped build's identity from the process's memory; undefined when this user may not read it. */
  runningBuild(mem: RemoteMemory, f: MappedFile): RunningBuild | undefined {
    const key = `${f.dev}:${f.inode}`;
    const cached = this.running.get(key);
    if (cached) return cached;
    try {
      const elf = parseElfFromMemory((a, n) => mem.read(a, n), { bias: f.header.start, expect: 'any' });
      const pkg = packageFromNotes(elf.notes);
      const r: RunningBuild = { buildId: elf.buildId, soname: elf.soname, ...(pkg ? { package: pkg } : {}) };
      this.running.set(key, r);
      return r;
    } catch (e) {
      if (!isUlpError(e)) throw e;
      return undefined;
    }
  }

  /** The packer's verdict on live -> disk, read from /proc/PID/map_files; undefined when the bytes cannot be read. */
  pair(
    pid: number,
    live: { buildId: string | undefined; header: Mapping },
    disk: DiskBuild,
  ): PairVerdict | undefined {
    if (!live.buildId || !disk.buildId) {
      return {
        from: live.buildId ?? '',
        to: disk.buildId ?? '',
        verdict: 'unusable',
        reasons: [
          {
            code: 'PACK_NO_BUILD_ID',
            message: `the ${live.buildId ? 'on-disk' : 'running'} build has no GNU build-id: ulp finds builds by build-id`,
          },
        ],
      };
    }
    const key = `${live.buildId}>${disk.buildId}`;
    const known = this.pairs.get(key);
    if (known) return known;
    let bytes: Buffer;
    try {
      bytes = readFileSync(mapFilesPath(pid, live.header));
    } catch {
      return undefined; // map_files needs CAP_SYS_ADMIN (or CAP_CHECKPOINT_RESTORE): another process may still give it
    }
    const j = judgeBuilds(bytes, disk.bytes, {
      old: `running build ${live.buildId.slice(0, 12)}`,
      new: `on-disk build ${disk.buildId.slice(0, 12)}`,
    });
    const v: PairVerdict = { from: live.buildId, to: disk.buildId, verdict: j.verdict, reasons: j.reasons };
    this.pairs.set(key, v);
    return v;
  }
}

/** Root directory identity of a process, so that processes in other containers read their own dpkg database. */
function rootKey(pid: number): string {
  const st = tryStat(`/proc/${pid}/root/`);
  return st ? `${st.dev}:${st.ino}` : `pid${pid}`;
}

/**
 * The live build when ulp-trigger has mapped other builds of the library in
 * the process: what the slots point at (the same reading as --status).
 */
function liveBuild(
  pid: number,
  mem: RemoteMemory,
  maps: readonly Mapping[],
  soname: string,
): { buildId: string | undefined; header: Mapping } | undefined {
  const snap = takeSnapshot(pid, mem);
  const state = readLibraryState(snap, soname, mem);
  if (!state) return undefined;
  // A retained copy of the loader's build holds only its code: the caller reads that build from its file.
  const whole = maps.filter((m) => m.offset === 0n && !retainedFileKey(m.path));
  const header =
    whole.find((m) => m.start === state.live.span.start) ??
    whole.find((m) => m.start <= state.live.bias && state.live.bias < m.end);
  return header ? { buildId: state.live.buildId, header } : undefined;
}

function scanProcess(scan: Scan, pid: number): void {
  let text: string;
  // `proc`: the id whose /proc files show the process's memory: the pid, or a live thread when the main thread has exited.
  let proc = pid;
  try {
    text = readFileSync(`/proc/${pid}/maps`, 'utf8');
    if (text === '' && (proc = liveTid(pid)) !== pid) text = readFileSync(`/proc/${proc}/maps`, 'utf8');
  } catch (e) {
    if (errno(e) === 'EACCES' || errno(e) === 'EPERM') scan.uninspected++;
    return; // otherwise it exited meanwhile
  }
  if (text === '') return; // a kernel thread or a zombie
  const maps = parseMaps(text);
  const exe = tryStat(`/proc/${proc}/exe`);
  const exeKey = exe ? `${devString(exe.dev)}:${exe.ino}` : undefined;
  const mem = new RemoteMemory(pid);
  for (const f of mappedCodeFiles(maps)) {
    // The executable is replaced too by an upgrade of its package, but ulp patches libraries only.
    if (`${f.dev}:${f.inode}` === exeKey) continue;
    const onDiskPath = `/proc/${proc}/root${f.path}`;
    const st = tryStat(onDiskPath);
    if (!st || !st.isFile() || !mayBeReplaced(f, st)) continue;
    const disk = scan.diskBuild(onDiskPath, st);
    if (!disk) continue;
    const running = scan.runningBuild(mem, f);
    if (
      running &&
      running.buildId !== undefined &&
      running.buildId === disk.buildId &&
      !hasUlpBuilds(maps, disk.soname)
    )
      continue; // the same build: nothing changed
    addProcess(scan, pid, proc, maps, mem, f, st, running, disk);
  }
}

function hasUlpBuilds(maps: readonly Mapping[], soname: string | undefined): boolean {
  return maps.some((m) => {
    const p = parseMemfdPath(m.path);
    return p?.kind === 'build' && p.name.soname === soname;
  });
}

function addProcess(
  scan: Scan,
  pid: number,
  proc: number,
  maps: readonly Mapping[],
  mem: RemoteMemory,
  f: MappedFile,
  st: Stats,
  running: RunningBuild | undefined,
  disk: DiskBuild,
): void {
  const soname = running?.soname ?? disk.soname;
  const key = `${st.dev}:${st.ino}`;
  let lib = scan.libraries.get(key);
  if (!lib) {
    lib = {
      path: f.path,
      soname,
      onDisk: { buildId: disk.buildId, ...(disk.package ? { package: disk.package } : {}) },
      processes: [],
      root: rootKey(proc),
      pid: proc,
    };
    scan.libraries.set(key, lib);
  }
  // Its bytes are read through map_files of a mapping of the file itself (f.file when the header page is a memfd copy).
  let live: { buildId: string | undefined; header: Mapping } | undefined = running
    ? { buildId: running.buildId, header: f.file ?? f.header }
    : undefined;
  let unreadable: Reason | undefined = running
    ? undefined
    : {
        code: 'OUTDATED_MEMORY_UNREADABLE',
        message: `cannot read the memory of process ${pid}: the build it runs is unknown`,
      };
  if (running && soname && hasUlpBuilds(maps, soname)) {
    try {
      live = liveBuild(pid, mem, maps, soname) ?? live;
    } catch (e) {
      if (!isUlpError(e)) throw e;
      live = undefined;
      unreadable = { code: e.code, message: `cannot tell which build of ${soname} is live: ${e.message}` };
    }
  }
  if (running && running.buildId === disk.buildId && live?.buildId === disk.buildId) return; // the same build, and it is live
  let refusal: Reason | undefined;
  if (soname) {
    try {
      refuseGlibc(soname);
    } catch (e) {
      if (!isUlpError(e)) throw e;
      refusal = { code: e.code, message: e.message };
    }
  }
  const pair = live && live.buildId !== disk.buildId && !refusal ? scan.pair(proc, live, disk) : undefined;
  if (live && !pair) {
    unreadable ??= {
      code: 'OUTDATED_BUILD_UNREADABLE',
      message: `cannot read ${mapFilesPath(proc, live.header)} (the running build's bytes): reading it needs root (CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE)`,
    };
  }
  const verdict = stateOf(live?.buildId, disk.buildId, pair, refusal);
  const reasons = verdict.state === 'inaccessible' && unreadable ? [unreadable] : verdict.reasons;
  const tracer = readProcStatus(pid)?.tracerPid ?? 0;
  const livePackage = live?.buildId === running?.buildId ? running?.package : undefined;
  lib.processes.push({
    pid,
    command: readComm(pid) ?? '?',
    state: verdict.state,
    running: { buildId: live?.buildId ?? running?.buildId, ...(livePackage ? { package: livePackage } : {}) },
    mapFiles: mapFilesPath(proc, live?.header ?? f.file ?? f.header),
    ...(reasons ? { reasons } : {}),
    ...(tracer ? { tracedBy: tracer } : {}),
  });
}

/**
 * The package that owns each path now, with its installed version, from the
 * dpkg database under `root` (a process's /proc/PID/root, so that a
 * container's own database answers for its processes). Missing database: no
 * answer.
 */
export function dpkgOwners(root: string, paths: readonly string[]): Map<string, PackageInfo> {
  const out = new Map<string, PackageInfo>();
  const dir = `${root}/var/lib/dpkg`;
  let status: Map<string, string>;
  let lists: string[];
  try {
    lists = readdirSync(`${dir}/info`).filter((n) => n.endsWith('.list'));
    status = parseDpkgStatus(readFileSync(`${dir}/status`, 'utf8'));
  } catch {
    return out;
  }
  const wanted = new Map<string, string>();
  for (const p of paths) for (const a of dpkgPathAliases(p)) wanted.set(a, p);
  for (const list of lists) {
    if (out.size === paths.length) break;
    let text: string;
    try {
      text = readFileSync(`${dir}/info/${list}`, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n')) {
      const p = wanted.get(line);
      if (p === undefined || out.has(p)) continue;
      const pkg = list.slice(0, -'.list'.length);
      const version = status.get(pkg) ?? status.get(pkg.replace(/:.*$/, ''));
      out.set(p, { name: pkg.replace(/:.*$/, ''), ...(version ? { version } : {}), source: 'dpkg' });
    }
  }
  return out;
}

export function findOutdated(opts: OutdatedOptions = {}): OutdatedReport {
  const t0 = performance.now();
  const scan = new Scan();
  const pids = opts.pids ?? allPids();
  pids.forEach((pid, i) => {
    opts.onProcess?.(i, pids.length);
    scanProcess(scan, pid);
  });
  // Package versions of the builds on disk that carry no package note: one pass over dpkg's file lists per root.
  const byRoot = new Map<string, Array<OutdatedLibrary & { pid: number }>>();
  for (const lib of scan.libraries.values())
    if (!lib.onDisk.package) byRoot.set(lib.root, [...(byRoot.get(lib.root) ?? []), lib]);
  for (const libs of byRoot.values()) {
    const owners = dpkgOwners(
      `/proc/${libs[0]!.pid}/root`,
      libs.map((l) => l.path),
    );
    for (const l of libs) {
      const pkg = owners.get(l.path);
      if (pkg) l.onDisk.package = pkg;
    }
  }
  const libraries: OutdatedLibrary[] = [...scan.libraries.values()]
    .filter((l) => l.processes.length > 0)
    .map(({ root: _root, pid: _pid, ...l }) => ({
      ...l,
      processes: l.processes.sort((a, b) => a.pid - b.pid),
    }))
    .sort((a, b) => a.path.localeCompare(b.path));
  return {
    libraries,
    pairs: [...scan.pairs.values()],
    summary: summarize(libraries),
    uninspected: scan.uninspected,
    scanned: pids.length,
    totalMs: performance.now() - t0,
  };
}
