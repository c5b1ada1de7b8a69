/**
 * /proc/PID/maps as data. Pure parsing is separate from reading the file so
 * it can be tested on fixed text.
 */
import { readFileSync } from 'node:fs';
import { exited, notFound } from './errors.js';
import { liveTid } from './procfs.js';

export interface Mapping {
  start: bigint;
  end: bigint;
  read: boolean;
  write: boolean;
  exec: boolean;
  /** MAP_SHARED ('s') rather than private ('p'). */
  shared: boolean;
  offset: bigint;
  /** "maj:min" of the backing device. */
  dev: string;
  inode: number;
  /** File path, `[heap]`, `[stack]`, `[vdso]`, `/memfd:NAME (deleted)`, or '' for anonymous memory. */
  path: string;
  /** The path ends with " (deleted)": the file was unlinked (always so for memfds). */
  deleted: boolean;
}

const LINE =
  /^([0-9a-f]+)-([0-9a-f]+) ([r-])([w-])([x-])([sp]) ([0-9a-f]+) ([0-9a-f]+:[0-9a-f]+) (\d+)\s*(.*)$/;

export function parseMaps(text: string): Mapping[] {
  const out: Mapping[] = [];
  for (const line of text.split('\n')) {
    if (!line) continue;
    const m = LINE.exec(line);
    if (!m) continue;
    const path = m[10]!;
    out.push({
      start: BigInt('0x' + m[1]),
      end: BigInt('0x' + m[2]),
      read: m[3] === 'r',
      write: m[4] === 'w',
      exec: m[5] === 'x',
      shared: m[6] === 's',
      offset: BigInt('0x' + m[7]),
      dev: m[8]!,
      inode: Number(m[9]),
      path,
      deleted: path.endsWith(' (deleted)'),
    });
  }
  return out;
}

export function readMaps(pid: number): Mapping[] {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/maps`, 'utf8');
    // A main thread that exited (pthread_exit) reads as empty while the others run on: read through one of them.
    if (text === '') {
      const via = liveTid(pid);
      if (via !== pid) text = readFileSync(`/proc/${via}/maps`, 'utf8');
    }
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT' || (e as NodeJS.ErrnoException).code === 'ESRCH')
      throw notFound(pid);
    throw e;
  }
  // A process that has exited but not been reaped reads as an empty file.
  if (text === '') throw exited(pid, 'reading its memory map');
  return parseMaps(text);
}

/** The mapping that contains `addr`, if any (maps are sorted by address). */
export function findMapping(maps: readonly Mapping[], addr: bigint): Mapping | undefined {
  let lo = 0;
  let hi = maps.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const m = maps[mid]!;
    if (addr < m.start) hi = mid - 1;
    else if (addr >= m.end) lo = mid + 1;
    else return m;
  }
  return undefined;
}
