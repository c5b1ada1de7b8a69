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

/**
 * The mappings of file offset 0 that are readable and backed by a file (an
 * object's ELF header is one), from /proc/PID/maps text: what `--all`'s
 * search looks at in every process on the machine, without parsing every
 * line in full as parseMaps does. `key` is "dev:inode".
 */
export function headerMappings(text: string): Array<{ key: string; start: bigint }> {
  const out: Array<{ key: string; start: bigint }> = [];
  for (let at = 0; at < text.length;) {
    let eol = text.indexOf('\n', at);
    if (eol < 0) eol = text.length;
    // start-end perms offset dev inode path
    const dash = text.indexOf('-', at);
    const sp1 = text.indexOf(' ', at);
    const sp2 = sp1 < 0 ? -1 : text.indexOf(' ', sp1 + 1);
    const sp3 = sp2 < 0 ? -1 : text.indexOf(' ', sp2 + 1);
    const sp4 = sp3 < 0 ? -1 : text.indexOf(' ', sp3 + 1);
    if (dash > at && dash < sp1 && sp4 > 0 && sp4 < eol && text[sp1 + 1] === 'r') {
      let end = sp4 + 1;
      while (end < eol && text.charCodeAt(end) >= 48 && text.charCodeAt(end) <= 57) end++;
      const inode = text.slice(sp4 + 1, end);
      if (/^0+$/.test(text.slice(sp2 + 1, sp3)) && inode !== '' && inode !== '0')
        out.push({ key: `${text.slice(sp3 + 1, sp4)}:${inode}`, start: BigInt('0x' + text.slice(at, dash)) });
    }
    at = eol + 1;
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
