/**
 * Reading an input file that a user named: never blocks and never reads
 * more than it may. A FIFO, a device or a directory given where a file is
 * expected is refused at once (opened non-blocking, so a FIFO nobody
 * writes to cannot hang the command in open(2)), before any byte is read.
 */
import { closeSync, constants, fstatSync, openSync, readFileSync } from 'node:fs';
import { UlpError } from './errors.js';

/** The file's bytes; throws a Node-style error (with `code`) naming what is wrong. */
export function readRegularFile(path: string, maxBytes = Infinity): Buffer {
  const fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const st = fstatSync(fd);
    if (!st.isFile())
      throw Object.assign(new Error(st.isDirectory() ? 'is a directory' : 'not a regular file'), {
        code: st.isDirectory() ? 'EISDIR' : 'EINVAL',
      });
    if (st.size > maxBytes)
      throw Object.assign(new Error(`${st.size} bytes, more than the limit of ${maxBytes}`), {
        code: 'EFBIG',
        size: st.size,
      });
    return readFileSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** A PEM key is a few hundred bytes. */
const KEY_MAX_BYTES = 64 * 1024;

/** A key file's bytes (a --key or --sign option); `code` is the calling command's error for an unreadable one. */
export function readKeyFile(path: string, code: 'PACK_KEY_UNREADABLE' | 'TRIGGER_KEY_UNREADABLE'): Buffer {
  try {
    return readRegularFile(path, KEY_MAX_BYTES);
  } catch (err) {
    throw new UlpError(
      code,
      `cannot read the key file ${path}: ${(err as Error).message}`,
      'Check the path and its permissions.',
      { path },
      { cause: err },
    );
  }
}
