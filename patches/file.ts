/**
 * Bundles on disk. Reading is bounded by the file-size cap before a byte is
 * read; writing goes to a temporary file in the destination folder, which is
 * renamed over the destination only once complete, so no reader (and no
 * failure) ever sees a partial bundle.
 */
import {
  closeSync,
  fsyncSync,
  openSync,
  renameSync,
  statSync,
  unlinkSync,
  writeSync,
  accessSync,
  constants,
} from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { randomBytes } from 'node:crypto';
import { UlpError } from '../common/errors.js';
import { readRegularFile } from '../common/files.js';
import { decodeBundle, type Bundle, type DecodeOptions } from './bundle.js';
import { withDefaults } from './limits.js';

export function readBundleFile(path: string, options: DecodeOptions = {}): Bundle {
  const limit = withDefaults(options.limits).fileBytes;
  let data: Buffer;
  try {
    data = readRegularFile(path, limit);
  } catch (err) {
    const e = err as { code?: string; size?: number };
    if (e.code === 'EFBIG')
      throw new UlpError(
        'BUNDLE_TOO_LARGE',
        `${path} is ${e.size} bytes, more than the limit of ${limit}`,
        'The file is not a plausible patch bundle.',
        { size: e.size, limit },
      );
    throw new UlpError(
      'BUNDLE_READ_FAILED',
      `cannot read ${path}: ${(err as Error).message}`,
      'Check the path and its permissions.',
      { path, errno: e.code },
      { cause: err },
    );
  }
  return decodeBundle(data, options);
}

/**
 * Fails early (before a long analysis) when `path` cannot be created: its
 * folder must exist and be writable, and it must not be a directory.
 */
export function checkWritableDestination(path: string): void {
  const dir = dirname(resolve(path));
  try {
    accessSync(dir, constants.W_OK);
    if (statSync(path, { throwIfNoEntry: false })?.isDirectory())
      throw Object.assign(new Error('is a directory'), { code: 'EISDIR' });
  } catch (err) {
    throw writeError(path, err);
  }
}

export function writeFileAtomic(path: string, data: Buffer): void {
  const tmp = join(
    dirname(resolve(path)),
    `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`,
  );
  let fd: number | undefined;
  try {
    fd = openSync(tmp, 'wx', 0o644);
    for (let off = 0; off < data.length;) off += writeSync(fd, data, off, data.length - off);
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, path);
  } catch (err) {
    if (fd !== undefined) closeSync(fd);
    try {
      unlinkSync(tmp);
    } catch {
      // never created, or already renamed
    }
    throw writeError(path, err);
  }
}

function writeError(path: string, err: unknown): UlpError {
  return new UlpError(
    'BUNDLE_WRITE_FAILED',
    `cannot write ${path}: ${(err as Error).message}`,
    'Choose an output path in an existing folder you can write to.',
    { path, errno: (err as { code?: string }).code },
    { cause: err },
  );
}
