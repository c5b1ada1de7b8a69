/**
 * gzip with the variable header fields pinned (MTIME 0, OS 255 "unknown"),
 * so the bytes depend only on the input and the zlib build; and gunzip with a
 * hard cap on the output, which is what defeats a gzip bomb.
 *
 * A bundle is a series of gzip members (RFC 1952 2.2 allows concatenation;
 * gunzip and tar read it as one stream), one per tar entry, so that the
 * large entries can be compressed on the thread pool while the packer is
 * still analysing. Sync and async compression give the same bytes.
 */
import { constants, gunzipSync, gzip, gzipSync, inflateRawSync } from 'node:zlib';
import { promisify } from 'node:util';
import { UlpError } from '../common/errors.js';

/** zlib's default level: level 9 costs three times the time for 0.2% of size on shared objects. */
const LEVEL = 6;
const OS_BYTE = 9;
const OS_UNKNOWN = 0xff;
const gzipAsync = promisify(gzip);

function pin(out: Buffer): Buffer {
  // zlib leaves MTIME at 0 unless asked; the OS byte is whatever zlib was built for.
  out.writeUInt32LE(0, 4);
  out[OS_BYTE] = OS_UNKNOWN;
  return out;
}

export function gzipMemberSync(data: Buffer): Buffer {
  return pin(gzipSync(data, { level: LEVEL }));
}

export async function gzipMember(data: Buffer): Promise<Buffer> {
  return pin(await gzipAsync(data, { level: LEVEL }));
}

export function gunzipCapped(data: Buffer, maxOutput: number): Buffer {
  if (data.length < 18 || data[0] !== 0x1f || data[1] !== 0x8b) {
    throw new UlpError(
      'BUNDLE_NOT_GZIP',
      'the file is not a gzip stream, so not a .ulp bundle',
      'Give a bundle written by ulp-pack.',
    );
  }
  try {
    return gunzipSync(data, { maxOutputLength: maxOutput });
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === 'ERR_BUFFER_TOO_LARGE' || err instanceof RangeError) {
      throw new UlpError(
        'BUNDLE_TOO_LARGE',
        `the bundle unpacks to more than ${maxOutput} bytes`,
        'The bundle is not a plausible patch (possibly a gzip bomb); do not trust this file.',
        { limit: maxOutput },
      );
    }
    throw new UlpError(
      'BUNDLE_CORRUPT',
      `the gzip stream is damaged: ${(err as Error).message}`,
      'The bundle is damaged (truncated download?); fetch or rebuild it.',
    );
  }
}

const FHCRC = 0x02;
const FEXTRA = 0x04;
const FNAME = 0x08;
const FCOMMENT = 0x10;

/** Where the deflate data of the gzip member at the start of `data` begins (RFC 1952 2.3), or undefined when `data` ends inside its header. */
function memberDataStart(data: Buffer): number | undefined {
  if (data.length < 10) return undefined;
  const flags = data[3]!;
  let off = 10;
  if (flags & FEXTRA) {
    if (off + 2 > data.length) return undefined;
    off += 2 + data.readUInt16LE(off);
  }
  for (const flag of [FNAME, FCOMMENT]) {
    if (!(flags & flag)) continue;
    const nul = data.indexOf(0, off);
    if (nul < 0) return undefined;
    off = nul + 1;
  }
  if (flags & FHCRC) off += 2;
  return off <= data.length ? off : undefined;
}

/**
 * What the first gzip member of `prefix` (the start of a file) inflates to,
 * as far as `prefix` reaches: a prefix that ends inside the member is not an
 * error (sync flush), and nothing after the member is inflated. Undefined
 * when the member holds more than `maxOutput` bytes (a bundle compressed as
 * one member: gunzipCapped reads it).
 */
export function inflateFirstMember(prefix: Buffer, maxOutput: number): Buffer | undefined {
  if (
    prefix.length < 2 ||
    prefix[0] !== 0x1f ||
    prefix[1] !== 0x8b ||
    (prefix.length >= 3 && prefix[2] !== 8)
  ) {
    throw new UlpError(
      'BUNDLE_NOT_GZIP',
      'the file is not a gzip stream, so not a .ulp bundle',
      'Give a bundle written by ulp-pack.',
    );
  }
  const start = memberDataStart(prefix);
  if (start === undefined) return Buffer.alloc(0);
  try {
    return inflateRawSync(prefix.subarray(start), {
      finishFlush: constants.Z_SYNC_FLUSH,
      maxOutputLength: maxOutput,
    });
  } catch (err) {
    if ((err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE' || err instanceof RangeError)
      return undefined;
    throw new UlpError(
      'BUNDLE_CORRUPT',
      `the gzip stream is damaged: ${(err as Error).message}`,
      'The bundle is damaged (truncated download?); fetch or rebuild it.',
    );
  }
}
