/**
 * The tar layer of a bundle, both ways, in memory. Writing emits plain ustar
 * headers with every variable field fixed (mode, owner, names, mtime), so the
 * output depends only on the entries. Reading accepts exactly what a bundle
 * may contain and nothing that an extractor could misuse: the tar package's
 * Header class decodes single 512-byte headers, and the framing around it is
 * ours, so no extended header, link or path trickery is ever interpreted.
 */
// The Header class alone: the package's index loads its whole reader and writer (20-40 ms).
import { Header } from 'tar/header';
import { UlpError } from '../common/errors.js';

export const BLOCK = 512;

/** One entry: its header block, its data, and the padding to the next block. */
export function tarEntry(name: string, data: Buffer, mtime: Date): Buffer {
  const header = new Header({
    path: name,
    mode: 0o644,
    uid: 0,
    gid: 0,
    size: data.length,
    mtime,
    type: 'File',
    uname: '',
    gname: '',
  });
  if (header.encode()) throw new Error(`tar: entry ${name} needs an extended header`);
  return Buffer.concat([header.block!, data, Buffer.alloc(padding(data.length))]);
}

/** The end-of-archive marker: two zero blocks. */
export const TAR_END: Buffer = Buffer.alloc(2 * BLOCK);

function padding(size: number): number {
  return (BLOCK - (size % BLOCK)) % BLOCK;
}

export interface TarReadRules {
  /** Names that may appear, each with its own size cap in bytes. */
  allowed: ReadonlyMap<string, number>;
}

/** Tar type flags, for messages. */
const TYPE_NAMES: Record<string, string> = {
  '1': 'hard link',
  '2': 'symbolic link',
  '3': 'character device',
  '4': 'block device',
  '5': 'directory',
  '6': 'FIFO',
  '7': 'contiguous file',
  x: 'pax extended header',
  g: 'pax global header',
  L: 'GNU long name',
  K: 'GNU long link',
};

const REBUILD = 'The bundle is damaged or was not written by ulp-pack; rebuild it with ulp-pack.';

export function decodeTar(tar: Buffer, rules: TarReadRules): Map<string, Buffer> {
  const entries = new Map<string, Buffer>();
  let off = 0;
  for (;;) {
    if (off + BLOCK > tar.length) {
      throw new UlpError(
        'BUNDLE_CORRUPT',
        'the archive ends without an end-of-archive marker (truncated?)',
        REBUILD,
        { offset: off },
      );
    }
    const block = tar.subarray(off, off + BLOCK);
    if (isZero(block)) {
      if (!isZero(tar.subarray(off))) {
        throw new UlpError(
          'BUNDLE_CORRUPT',
          'the archive has data after its end-of-archive marker',
          REBUILD,
          { offset: off },
        );
      }
      return entries;
    }
    const header = checkedHeader(tar, off);
    const name = header.path ?? '';
    checkPath(name);
    const type = header.typeKey;
    if (type === '1' || type === '2') {
      throw new UlpError(
        'BUNDLE_LINK_ENTRY',
        `entry "${name}" is a ${TYPE_NAMES[type]}`,
        'A bundle holds plain files only; do not trust this file.',
        { entry: name, linkpath: header.linkpath },
      );
    }
    if (type !== '0') {
      const what = TYPE_NAMES[type] ?? `entry of type "${type}"`;
      throw new UlpError(
        'BUNDLE_NOT_REGULAR_FILE',
        `entry "${name}" is a ${what}, not a plain file`,
        'A bundle holds plain files only; do not trust this file.',
        { entry: name, type },
      );
    }
    const cap = rules.allowed.get(name);
    if (cap === undefined) {
      throw new UlpError(
        'BUNDLE_UNEXPECTED_ENTRY',
        `unexpected entry "${name}"`,
        `A bundle holds only ${[...rules.allowed.keys()].join(', ')}; do not trust this file.`,
        { entry: name },
      );
    }
    if (entries.has(name)) {
      throw new UlpError(
        'BUNDLE_DUPLICATE_ENTRY',
        `entry "${name}" appears twice`,
        'Two copies of one entry could be read differently by different tools; do not trust this file.',
        { entry: name },
      );
    }
    const size = header.size;
    if (size === undefined || !Number.isSafeInteger(size) || size < 0) {
      throw new UlpError('BUNDLE_CORRUPT', `entry "${name}" has an invalid size`, REBUILD, { entry: name });
    }
    if (size > cap) {
      throw new UlpError(
        'BUNDLE_ENTRY_TOO_LARGE',
        `entry "${name}" is ${size} bytes, more than the limit of ${cap}`,
        'The bundle is not a plausible patch; if the library really is that large, raise the limit.',
        { entry: name, size, limit: cap },
      );
    }
    const start = off + BLOCK;
    if (start + size > tar.length) {
      throw new UlpError('BUNDLE_CORRUPT', `entry "${name}" is truncated`, REBUILD, { entry: name });
    }
    entries.set(name, tar.subarray(start, start + size));
    off = start + size + padding(size);
  }
}

/** The ustar header at `off`, when its checksum and magic are right (BUNDLE_CORRUPT otherwise). */
export function checkedHeader(tar: Buffer, off: number): Header {
  const header = new Header(tar, off);
  const magic = tar.subarray(off + 257, off + 265).toString('latin1');
  if (!header.cksumValid || (magic !== 'ustar\u000000' && magic !== 'ustar  \u0000')) {
    throw new UlpError('BUNDLE_CORRUPT', `bad tar header at offset ${off}`, REBUILD, { offset: off });
  }
  return header;
}

/** Absolute and parent-relative names are refused before anything else, whatever their type. */
function checkPath(name: string): void {
  if (name === '' || name.startsWith('/') || name.split(/[/\\]/).includes('..')) {
    throw new UlpError(
      'BUNDLE_UNSAFE_PATH',
      `entry name "${name}" is absolute, empty or leads outside the archive`,
      'Such a bundle was crafted to attack extractors; do not trust this file.',
      { entry: name },
    );
  }
}

function isZero(buf: Buffer): boolean {
  for (let i = 0; i < buf.length; i++) if (buf[i] !== 0) return false;
  return true;
}
