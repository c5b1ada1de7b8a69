/**
 * The build of a library a process runs, as a file that can be read: its
 * mapping's /proc/PID/map_files entry, which opens the very file the
 * process mapped even after a package upgrade unlinked it (root only:
 * CAP_SYS_ADMIN or CAP_CHECKPOINT_RESTORE). When ulp-trigger has staged
 * other builds in the process, the live one is what the slots point at.
 * Reads only: no ptrace.
 */
import { readFileSync } from 'node:fs';
import { UlpError, isUlpError } from '../common/errors.js';
import { parseElfFromMemory } from '../elf/index.js';
import { readLibraryState } from './loader/library.js';
import { parseMemfdPath, retainedFileKey } from './memfd-names.js';
import { takeSnapshot } from './loader/snapshot.js';
import { readStatus } from './procfs.js';
import { parseMaps, type Mapping } from './maps.js';
import { RemoteMemory } from './memory.js';

export const mapFilesPath = (pid: number, m: Pick<Mapping, 'start' | 'end'>) =>
  `/proc/${pid}/map_files/${m.start.toString(16)}-${m.end.toString(16)}`;

/** Mappings that may hold an ELF header of a file: readable, file-backed, at offset 0; memfds ulp-trigger mapped included. */
export function headerMappings(maps: readonly Mapping[]): Mapping[] {
  return maps.filter(
    (m) =>
      m.read &&
      m.offset === 0n &&
      m.inode !== 0 &&
      m.path.startsWith('/') &&
      !/^\/(?:dev|proc|sys|SYSV)\//.test(m.path),
  );
}

/** Whether ulp-trigger has staged a build of `soname` in the process (a `ulp:` memfd build mapping). */
export function hasUlpBuild(maps: readonly Mapping[], soname: string): boolean {
  return maps.some((m) => {
    const p = parseMemfdPath(m.path);
    return p?.kind === 'build' && p.name.soname === soname;
  });
}

export interface RunningBuild {
  /** /proc/PID/map_files/START-END of the build's first mapping. */
  path: string;
  /** The path the process mapped it from (" (deleted)" when the file is gone), or the memfd name. */
  mappedFrom: string;
  buildId: string | undefined;
  /** The build is ulp-trigger's (a staged build is live), not the one ld.so loaded. */
  staged: boolean;
}

function processError(pid: number, err: unknown): UlpError {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT' || code === 'ESRCH')
    return new UlpError(
      'PACK_PROCESS_NOT_FOUND',
      `no process with pid ${pid}`,
      'Check the pid (ps -p PID).',
      { pid },
    );
  return new UlpError(
    'PACK_PROCESS_UNREADABLE',
    `cannot read the memory map of process ${pid}: ${(err as Error).message}`,
    "Run as root (reading a process's builds needs the right to trace it, and /proc/PID/map_files needs CAP_SYS_ADMIN).",
    { pid, errno: code },
  );
}

/**
 * The build of `soname` process `pid` runs. Throws PACK_PROCESS_NOT_FOUND,
 * PACK_PROCESS_UNREADABLE or PACK_LIBRARY_NOT_LOADED.
 */
export function findRunningBuild(pid: number, soname: string): RunningBuild {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/maps`, 'utf8');
  } catch (e) {
    throw processError(pid, e);
  }
  // A process that has exited but is not reaped yet (a zombie) has no map: for packing it is gone.
  if (text === '' && readStatus(pid)?.state === 'Z')
    throw new UlpError(
      'PACK_PROCESS_NOT_FOUND',
      `process ${pid} has exited (a zombie)`,
      'Check the pid (ps -p PID).',
      {
        pid,
      },
    );
  if (text === '')
    throw new UlpError(
      'PACK_PROCESS_UNREADABLE',
      `process ${pid} has no memory map (a kernel thread, a zombie, or another user's process)`,
      'Give the pid of a running program, as root.',
      { pid },
    );
  const maps = parseMaps(text);
  const mem = new RemoteMemory(pid);
  if (hasUlpBuild(maps, soname)) {
    try {
      const state = readLibraryState(takeSnapshot(pid, mem), soname, mem);
      let header = state && maps.find((m) => m.start === state.live.span.start && m.offset === 0n);
      // A header page moved onto a memfd copy (retain.ts): any mapping of the file itself opens the whole file.
      const key = header && retainedFileKey(header.path);
      if (key) header = maps.find((m) => `${m.dev}:${m.inode}` === key) ?? header;
      if (state && header)
        return {
          path: mapFilesPath(pid, header),
          mappedFrom: header.path,
          buildId: state.live.buildId,
          staged: state.live.source === 'ulp',
        };
    } catch (e) {
      if (!isUlpError(e)) throw e;
      throw new UlpError(
        'PACK_PROCESS_UNREADABLE',
        `cannot tell which build of ${soname} is live in process ${pid}: ${e.message}`,
        'Run as root; if the process is being patched right now, retry when that is done.',
        { pid, soname, cause: e.code },
      );
    }
  }
  const seen = new Set<string>();
  for (const m of headerMappings(maps)) {
    if (parseMemfdPath(m.path) || retainedFileKey(m.path)) continue; // ulp's own builds are handled above; a retained copy is not live
    const key = `${m.dev}:${m.inode}`;
    if (seen.has(key)) continue;
    seen.add(key);
    let elf;
    try {
      elf = parseElfFromMemory((a, n) => mem.read(a, n), { bias: m.start, expect: 'any' });
    } catch (e) {
      if (!isUlpError(e)) throw e;
      if (e.code === 'PROC_PERMISSION_DENIED')
        throw processError(pid, Object.assign(new Error(e.message), { code: 'EPERM' }));
      if (e.code === 'PROC_NOT_FOUND')
        throw processError(pid, Object.assign(new Error(e.message), { code: 'ESRCH' }));
      continue; // not an ELF object: a data file, a font
    }
    if (elf.soname === soname)
      return { path: mapFilesPath(pid, m), mappedFrom: m.path, buildId: elf.buildId, staged: false };
  }
  throw new UlpError(
    'PACK_LIBRARY_NOT_LOADED',
    `process ${pid} has no build of ${soname} loaded (NEW's SONAME)`,
    'Give the pid of a process that uses this library (ulp-trigger --outdated lists them), or the new build of a library it loads.',
    { pid, soname },
  );
}
