/**
 * After a patch, the library's old build (the one ld.so loaded) stays
 * mapped: unchanged functions of it may still run through pointers taken
 * before the switch, and a revert switches back to it. After a package
 * upgrade its file is deleted, so needrestart and checkrestart, which look
 * for executable mappings of deleted or replaced files, keep reporting the
 * process though it runs the new build.
 *
 * This moves the old build's executable mappings onto a sealed memfd copy
 * of their current bytes (redirect jumps included), which those tools
 * ignore (needrestart's blacklist_mappings has ^/memfd:). Each mapping is
 * replaced by one mmap(MAP_FIXED) of identical bytes: the kernel swaps it
 * under the mm lock, so a thread running there, or faulting a page in,
 * never sees a hole or other bytes, and no thread needs to stop. The copy
 * is read inside the ptrace session, so no other ulp-trigger can change
 * the code meanwhile. A mapping that fails to move stays on its file (the
 * process is as before for it); one whose bytes do not read back identical
 * is a bug the caller hears about.
 *
 * The memfd's name carries the file's device and inode, so --outdated still
 * knows which deleted file the build came from (retainedFileKey).
 */
import { closeSync, writeSync } from 'node:fs';
import { UlpError } from '../common/errors.js';
import { parseMaps, type Mapping } from './maps.js';
import { openTargetFd } from './memory.js';
import { withSession, type SessionOptions } from './session.js';
import { MAP, MFD, PROT } from './sys/constants.js';
import { readFileSync } from 'node:fs';
import { retainedMemfdName } from './memfd-names.js';
import { readLibraryState } from './loader/library.js';
import { takeSnapshot } from './loader/snapshot.js';
import { RemoteMemory } from './memory.js';

/**
 * The executable mappings of the file (dev:inode) that needrestart would
 * flag, within [span.start, span.end): file-backed, not writable. Pure.
 */
export function mappingsToRetain(
  maps: readonly Mapping[],
  file: { dev: string; inode: number },
  span: { start: bigint; end: bigint },
): Mapping[] {
  return maps.filter(
    (m) =>
      m.exec &&
      !m.write &&
      !m.shared &&
      m.dev === file.dev &&
      m.inode === file.inode &&
      m.start >= span.start &&
      m.end <= span.end &&
      !m.path.startsWith('/memfd:'),
  );
}

export interface RetainResult {
  /** Mappings moved onto memfd copies. */
  moved: Array<{ start: string; end: string }>;
}

function protOf(m: Mapping): number {
  return (m.read ? PROT.READ : 0) | (m.exec ? PROT.EXEC : 0);
}

/**
 * Moves the executable mappings of file `file` in [span) of process `pid`
 * onto a memfd copy. Returns what moved; throws (a PROC_* or
 * ULP_RETAIN_MISMATCH) with every mapping not yet moved left as it was.
 */
export function retainOnMemfd(
  pid: number,
  soname: string,
  file: { dev: string; inode: number },
  span: { start: bigint; end: bigint },
  opts: SessionOptions = {},
): RetainResult {
  return withSession(
    pid,
    (s) => {
      const maps = parseMaps(readFileSync(`/proc/${pid}/maps`, 'utf8'));
      const todo = mappingsToRetain(maps, file, span);
      const moved: RetainResult['moved'] = [];
      if (todo.length === 0) return { moved };
      // One thread runs the system calls; the others keep running (see above).
      s.borrow();
      const sys = s.sys;
      const copies = todo.map((m) => s.memory.read(m.start, Number(m.end - m.start)));
      const total = copies.reduce((n, b) => n + b.length, 0);
      const fd = sys.memfdCreate(
        retainedMemfdName(file.dev, file.inode, soname),
        MFD.CLOEXEC | MFD.ALLOW_SEALING,
      );
      try {
        const tfd = openTargetFd(pid, fd, 'r+');
        try {
          let off = 0;
          for (const b of copies) {
            for (let done = 0; done < b.length;) done += writeSync(tfd, b, done, b.length - done, off + done);
            off += b.length;
          }
        } finally {
          closeSync(tfd);
        }
        sys.addSeals(fd);
        // A trial mapping first: whatever refuses this fd with these rights (a noexec memfd policy) refuses it here, where nothing is replaced.
        const trial = sys.mmap(0n, total, PROT.READ | PROT.EXEC, MAP.PRIVATE, fd, 0n);
        sys.munmap(trial, total);
        let off = 0;
        todo.forEach((m, i) => {
          const len = copies[i]!.length;
          const got = sys.mmap(m.start, len, protOf(m), MAP.PRIVATE | MAP.FIXED, fd, BigInt(off));
          if (got !== m.start)
            throw new UlpError(
              'ULP_RETAIN_MISMATCH',
              `mmap placed the copy at 0x${got.toString(16)}, not 0x${m.start.toString(16)}`,
              "Report this with the process's maps.",
            );
          if (!s.memory.read(m.start, len).equals(copies[i]!)) {
            throw new UlpError(
              'ULP_RETAIN_MISMATCH',
              `the copy of [0x${m.start.toString(16)}, 0x${m.end.toString(16)}) does not read back as the bytes it replaced`,
              "Report this with the process's maps.",
            );
          }
          moved.push({ start: `0x${m.start.toString(16)}`, end: `0x${m.end.toString(16)}` });
          off += len;
        });
      } finally {
        sys.close(fd);
      }
      return { moved };
    },
    opts,
  );
}

/**
 * For a process in which ulp switched `soname` to another build: moves the
 * loader's build's code onto a memfd copy when its file was deleted (an
 * upgrade replaced it). Nothing is done when that build is still live (the
 * process does run the old code: hiding it would be a lie) or its file is
 * still there (needrestart does not flag it).
 */
export function retainLoaderBuild(
  pid: number,
  soname: string,
  opts: SessionOptions = {},
): RetainResult & { skipped?: string } {
  const mem = new RemoteMemory(pid);
  const state = readLibraryState(takeSnapshot(pid, mem), soname, mem);
  if (!state) return { moved: [], skipped: `${soname} is not loaded` };
  const canonical = state.family.canonical;
  if (state.live === canonical) return { moved: [], skipped: 'the loaded build is live' };
  const maps = parseMaps(readFileSync(`/proc/${pid}/maps`, 'utf8'));
  const header = maps.find(
    (m) => m.start <= canonical.span.start && canonical.span.start < m.end && m.inode !== 0,
  );
  if (!header || !header.deleted || header.path.startsWith('/memfd:'))
    return { moved: [], skipped: 'its file is still on disk' };
  return retainOnMemfd(pid, soname, { dev: header.dev, inode: header.inode }, canonical.span, opts);
}
