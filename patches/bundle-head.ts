/**
 * A cheap look at a bundle that reads only its manifest, for what ulp-pack
 * wants to know of the bundles already written (store.ts): which build
 * replaced which (docs/COMPATIBILITY.md#downgrades).
 *
 * The manifest is the first tar entry and has a gzip member of its own
 * (bundle.ts), so a look reads and inflates the start of the file only:
 * a store of OpenSSL bundles is dozens of MB of compressed builds that are
 * never needed here. Nothing read this way goes into a process, so neither
 * the builds nor the signature are checked, and zod (about 0.2 s to load)
 * is not needed: what is read can only make ulp-pack refuse.
 */
import { closeSync, constants as fsConstants, fstatSync, openSync, readSync } from 'node:fs';
import { UlpError, isUlpError } from '../common/errors.js';
import { ENTRY_MANIFEST } from './entries.js';
import { gunzipCapped, inflateFirstMember } from './gzip.js';
import { DEFAULT_LIMITS } from './limits.js';
import type { SkippedBundle } from './store.js';
import { BLOCK, checkedHeader } from './tar.js';

/** What a bundle's manifest says about its update. */
export interface BundleHead {
  path: string;
  soname: string;
  oldBuildId: string;
  newBuildId: string;
  /** Packed with --allow-downgrade: its new build looked older than its old one. */
  downgrade: boolean;
}

/** The fields read here mean what format 1.x says they mean; another major may not. */
const HEAD_FORMAT_MAJOR = 1;
const BUILD_ID_RE = /^(?:[0-9a-f]{2}){1,64}$/;
const DAMAGED = 'The bundle is damaged or was not written by ulp-pack; rebuild it.';

function invalid(message: string): UlpError {
  return new UlpError('BUNDLE_MANIFEST_INVALID', `${ENTRY_MANIFEST} ${message}`, DAMAGED);
}

/** The fields of a manifest's JSON that tell an update. Pure. */
export function parseBundleHead(path: string, manifest: Buffer): BundleHead {
  let json: unknown;
  try {
    json = JSON.parse(manifest.toString('utf8'));
  } catch (err) {
    throw invalid(`is not valid JSON: ${(err as Error).message}`);
  }
  if (!json || typeof json !== 'object' || Array.isArray(json)) throw invalid('is not a JSON object');
  const m = json as {
    format?: unknown;
    soname?: unknown;
    builds?: { old?: { buildId?: unknown }; new?: { buildId?: unknown } };
    downgrade?: unknown;
  };
  const major = typeof m.format === 'string' ? /^(\d+)\.\d+\.\d+/.exec(m.format)?.[1] : undefined;
  if (major === undefined) throw invalid('has no valid "format" version');
  if (Number(major) !== HEAD_FORMAT_MAJOR)
    throw new UlpError(
      'BUNDLE_FORMAT_UNSUPPORTED',
      `bundle format ${String(m.format)} is not supported (this tool reads format ${HEAD_FORMAT_MAJOR}.x)`,
      'Use the ulp release that wrote it.',
      { format: m.format },
    );
  if (typeof m.soname !== 'string' || m.soname === '') throw invalid('has no "soname"');
  const oldId = m.builds?.old?.buildId;
  const newId = m.builds?.new?.buildId;
  if (typeof oldId !== 'string' || !BUILD_ID_RE.test(oldId)) throw invalid('has no valid builds.old.buildId');
  if (typeof newId !== 'string' || !BUILD_ID_RE.test(newId)) throw invalid('has no valid builds.new.buildId');
  return { path, soname: m.soname, oldBuildId: oldId, newBuildId: newId, downgrade: m.downgrade === true };
}

/**
 * The manifest's bytes from the start of a bundle's tar stream, or undefined
 * when `tar` ends before them (read more of the file). Pure.
 */
export function manifestFromTarStart(
  tar: Buffer,
  maxManifest = DEFAULT_LIMITS.manifestBytes,
): Buffer | undefined {
  if (tar.length < BLOCK) return undefined;
  const header = checkedHeader(tar, 0);
  if (header.path !== ENTRY_MANIFEST || header.typeKey !== '0')
    throw new UlpError(
      'BUNDLE_MISSING_ENTRY',
      `the bundle does not start with ${ENTRY_MANIFEST} (its first entry is "${header.path ?? ''}")`,
      DAMAGED,
      { entry: ENTRY_MANIFEST },
    );
  const size = header.size;
  if (size === undefined || !Number.isSafeInteger(size) || size < 0)
    throw new UlpError('BUNDLE_CORRUPT', `entry "${ENTRY_MANIFEST}" has an invalid size`, DAMAGED);
  if (size > maxManifest)
    throw new UlpError(
      'BUNDLE_ENTRY_TOO_LARGE',
      `entry "${ENTRY_MANIFEST}" is ${size} bytes, more than the limit of ${maxManifest}`,
      'The bundle is not a plausible patch.',
      { entry: ENTRY_MANIFEST, size, limit: maxManifest },
    );
  return tar.length >= BLOCK + size ? tar.subarray(BLOCK, BLOCK + size) : undefined;
}

/** The first read of a bundle: libcrypto's manifest, data-reference maps and all, inflates from 48 KB of it. */
const FIRST_READ = 64 * 1024;
/** ulp.json's member: its tar header, its data, its padding. */
const FIRST_MEMBER_MAX = 2 * BLOCK + DEFAULT_LIMITS.manifestBytes;

/** A bundle file's head, reading and inflating no more of it than its manifest needs. */
export function readBundleHead(path: string): BundleHead {
  let fd: number;
  try {
    // Non-blocking: a FIFO named *.ulp must not hang the command.
    fd = openSync(path, fsConstants.O_RDONLY | fsConstants.O_NONBLOCK);
  } catch (err) {
    throw readFailed(path, err);
  }
  try {
    const size = regularFileSize(fd, path);
    for (let want = Math.min(size, FIRST_READ); ; want = Math.min(size, want * 4)) {
      const prefix = readPrefix(fd, want, path);
      const tar = inflateFirstMember(prefix, FIRST_MEMBER_MAX);
      // Compressed as one member (not as ulp-pack writes): the whole stream, under the reader's caps.
      const manifest = manifestFromTarStart(
        tar ?? gunzipCapped(readPrefix(fd, size, path), DEFAULT_LIMITS.archiveBytes),
      );
      if (manifest) return parseBundleHead(path, manifest);
      if (!tar || prefix.length >= size)
        throw new UlpError('BUNDLE_CORRUPT', `the bundle ends before its ${ENTRY_MANIFEST} does`, DAMAGED);
    }
  } finally {
    closeSync(fd);
  }
}

function regularFileSize(fd: number, path: string): number {
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw Object.assign(new Error('not a regular file'), { code: 'EINVAL' });
    if (st.size > DEFAULT_LIMITS.fileBytes)
      throw new UlpError(
        'BUNDLE_TOO_LARGE',
        `${path} is ${st.size} bytes, more than the limit of ${DEFAULT_LIMITS.fileBytes}`,
        DAMAGED,
      );
    return st.size;
  } catch (err) {
    if (isUlpError(err)) throw err;
    throw readFailed(path, err);
  }
}

function readPrefix(fd: number, length: number, path: string): Buffer {
  const out = Buffer.alloc(length);
  let got = 0;
  try {
    while (got < length) {
      const n = readSync(fd, out, got, length - got, got);
      if (n === 0) break;
      got += n;
    }
  } catch (err) {
    throw readFailed(path, err);
  }
  return out.subarray(0, got);
}

function readFailed(path: string, err: unknown): UlpError {
  return new UlpError(
    'BUNDLE_READ_FAILED',
    `cannot read ${path}: ${(err as Error).message}`,
    'Check the path and its permissions.',
    { path, errno: (err as { code?: string }).code },
    { cause: err },
  );
}

/** The heads of `files`; a bundle that cannot be read is skipped and listed, never fatal. */
export function readBundleHeads(files: readonly string[]): { heads: BundleHead[]; skipped: SkippedBundle[] } {
  const heads: BundleHead[] = [];
  const skipped: SkippedBundle[] = [];
  for (const path of files) {
    try {
      heads.push(readBundleHead(path));
    } catch (err) {
      if (!isUlpError(err)) throw err;
      skipped.push({ path, code: err.code, message: err.message });
    }
  }
  return { heads, skipped };
}
