/**
 * A bundle as bytes, both ways. Decoding trusts nothing: caps first, then the
 * tar framing, the signature (over the raw entries), the manifest, and finally
 * every build against what the manifest says about it.
 */
import type { KeyObject } from 'node:crypto';
import { UlpError, isUlpError } from '../common/errors.js';
import { parseElf } from '../elf/index.js';
import { gunzipCapped, gzipMember, gzipMemberSync } from './gzip.js';
import { withDefaults, type BundleLimits } from './limits.js';
import {
  ENTRY_MANIFEST,
  ENTRY_NEW,
  ENTRY_OLD,
  ENTRY_SIGNATURE,
  isoSeconds,
  parseManifest,
  serializeManifest,
  sha256Hex,
  type BuildEntry,
  type Manifest,
} from './manifest.js';
import { checkSignature, signParts, type SignatureStatus } from './signature.js';
import { TAR_END, decodeTar, tarEntry } from './tar.js';

export interface BundleContents {
  manifest: Manifest;
  oldBuild: Buffer;
  newBuild: Buffer;
}

export interface Bundle extends BundleContents {
  signature: SignatureStatus;
  /** ulp.json exactly as stored (what the signature covers). */
  manifestBytes: Buffer;
}

export interface EncodeOptions {
  /** Ed25519 private key: adds the `signature` entry. */
  privateKey?: KeyObject;
}

export interface DecodeOptions {
  /** Ed25519 public key: the bundle must carry a valid signature by it. */
  publicKey?: KeyObject;
  limits?: Partial<BundleLimits>;
}

function checkContents({ manifest, oldBuild, newBuild }: BundleContents): void {
  for (const [entry, data] of [
    [manifest.builds.old, oldBuild],
    [manifest.builds.new, newBuild],
  ] as const) {
    if (entry.size !== data.length || entry.sha256 !== sha256Hex(data))
      throw new Error(`encodeBundle: ${entry.entry} does not match its manifest entry`);
  }
}

/**
 * The entries that follow the builds: the signature (when signing) and the
 * end-of-archive marker. Entry order is fixed: ulp.json, new.so, old.so,
 * signature; with fixed tar/gzip metadata, equal contents give equal bytes.
 */
function trailer(
  contents: BundleContents,
  manifestBytes: Buffer,
  mtime: Date,
  options: EncodeOptions,
): Buffer {
  const parts: Buffer[] = [];
  if (options.privateKey) {
    parts.push(
      tarEntry(
        ENTRY_SIGNATURE,
        signParts(
          { manifest: manifestBytes, oldBuild: contents.oldBuild, newBuild: contents.newBuild },
          options.privateKey,
        ),
        mtime,
      ),
    );
  }
  parts.push(TAR_END);
  return Buffer.concat(parts);
}

export function encodeBundle(contents: BundleContents, options: EncodeOptions = {}): Buffer {
  checkContents(contents);
  const mtime = new Date(contents.manifest.createdAt);
  const manifestBytes = serializeManifest(contents.manifest);
  return Buffer.concat([
    gzipMemberSync(tarEntry(ENTRY_MANIFEST, manifestBytes, mtime)),
    gzipMemberSync(tarEntry(ENTRY_NEW, contents.newBuild, mtime)),
    gzipMemberSync(tarEntry(ENTRY_OLD, contents.oldBuild, mtime)),
    gzipMemberSync(trailer(contents, manifestBytes, mtime, options)),
  ]);
}

/**
 * Encodes the same bytes as encodeBundle, but starts compressing the two
 * builds (most of the work) on the thread pool as soon as they are known, so
 * that it overlaps with the analysis that produces the manifest.
 */
export class BundleEncoder {
  private readonly members: Promise<[Buffer, Buffer]>;
  private readonly mtime: Date;

  constructor(
    private readonly oldBuild: Buffer,
    private readonly newBuild: Buffer,
    createdAt: Date,
  ) {
    this.mtime = new Date(isoSeconds(createdAt));
    this.members = Promise.all([
      gzipMember(tarEntry(ENTRY_NEW, newBuild, this.mtime)),
      gzipMember(tarEntry(ENTRY_OLD, oldBuild, this.mtime)),
    ]);
    // Rejections surface in finish(); never as an unhandled rejection.
    this.members.catch(() => {});
  }

  async finish(manifest: Manifest, options: EncodeOptions = {}): Promise<Buffer> {
    const contents = { manifest, oldBuild: this.oldBuild, newBuild: this.newBuild };
    checkContents(contents);
    if (new Date(manifest.createdAt).getTime() !== this.mtime.getTime())
      throw new Error('BundleEncoder: the manifest was created at another time');
    const manifestBytes = serializeManifest(manifest);
    const [head, tail, [neu, old]] = await Promise.all([
      gzipMember(tarEntry(ENTRY_MANIFEST, manifestBytes, this.mtime)),
      gzipMember(trailer(contents, manifestBytes, this.mtime, options)),
      this.members,
    ]);
    return Buffer.concat([head, neu, old, tail]);
  }
}

export function decodeBundle(data: Buffer, options: DecodeOptions = {}): Bundle {
  const limits = withDefaults(options.limits);
  if (data.length > limits.fileBytes) {
    throw new UlpError(
      'BUNDLE_TOO_LARGE',
      `the bundle is ${data.length} bytes, more than the limit of ${limits.fileBytes}`,
      'The file is not a plausible patch bundle.',
      { size: data.length, limit: limits.fileBytes },
    );
  }
  const tar = gunzipCapped(data, limits.archiveBytes);
  const entries = decodeTar(tar, {
    allowed: new Map([
      [ENTRY_MANIFEST, limits.manifestBytes],
      [ENTRY_NEW, limits.buildBytes],
      [ENTRY_OLD, limits.buildBytes],
      [ENTRY_SIGNATURE, limits.signatureBytes],
    ]),
  });
  const required = (name: string): Buffer => {
    const entry = entries.get(name);
    if (!entry)
      throw new UlpError(
        'BUNDLE_MISSING_ENTRY',
        `the bundle has no "${name}" entry`,
        'The bundle is incomplete; rebuild it with ulp-pack.',
        { entry: name },
      );
    return entry;
  };
  const manifestBytes = required(ENTRY_MANIFEST);
  const newBuild = required(ENTRY_NEW);
  const oldBuild = required(ENTRY_OLD);
  const signature = checkSignature(
    entries.get(ENTRY_SIGNATURE),
    { manifest: manifestBytes, oldBuild, newBuild },
    options.publicKey,
  );
  const manifest = parseManifest(manifestBytes);
  checkBuild(manifest.builds.old, oldBuild);
  checkBuild(manifest.builds.new, newBuild);
  return { manifest, manifestBytes, oldBuild, newBuild, signature };
}

function checkBuild(entry: BuildEntry, data: Buffer): void {
  if (data.length !== entry.size) {
    throw new UlpError(
      'BUNDLE_SIZE_MISMATCH',
      `${entry.entry} is ${data.length} bytes but the manifest says ${entry.size}`,
      'The bundle was modified after packing; do not use it.',
      { entry: entry.entry, expected: entry.size, actual: data.length },
    );
  }
  const actual = sha256Hex(data);
  if (actual !== entry.sha256) {
    throw new UlpError(
      'BUNDLE_HASH_MISMATCH',
      `${entry.entry} does not have the SHA-256 the manifest records`,
      'The bundle was modified after packing; do not use it.',
      { entry: entry.entry, expected: entry.sha256, actual },
    );
  }
  let buildId: string | undefined;
  try {
    buildId = parseElf(data, { expect: 'shared-object' }).buildId;
  } catch (err) {
    if (!isUlpError(err)) throw err;
    throw new UlpError(
      'BUNDLE_BUILD_INVALID',
      `${entry.entry} is not a valid shared object: ${err.message}`,
      'The bundle was not produced by ulp-pack; do not use it.',
      { entry: entry.entry, cause: err.code },
      { cause: err },
    );
  }
  if (buildId !== entry.buildId) {
    throw new UlpError(
      'BUNDLE_BUILD_ID_MISMATCH',
      `${entry.entry} has build-id ${buildId ?? '(none)'} but the manifest says ${entry.buildId}`,
      'The bundle was not produced by ulp-pack; do not use it.',
      { entry: entry.entry, expected: entry.buildId, actual: buildId },
    );
  }
}
