/**
 * Ed25519 signatures over a bundle. What is signed is a short text that names
 * the exact bytes of ulp.json, old.so and new.so by size and SHA-256 (see
 * signedMessage), so the signature covers the manifest as stored and both
 * builds, and needs no JSON canonicalisation to verify.
 */
import { createHash, createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { z } from 'zod';
import { UlpError } from '../common/errors.js';
import { ENTRY_MANIFEST, ENTRY_NEW, ENTRY_OLD, sha256Hex } from './manifest.js';

export const SIGNATURE_SCHEME = 'ulp-sig-1';

export const SignatureFileSchema = z.object({
  scheme: z.literal(SIGNATURE_SCHEME),
  algorithm: z.literal('ed25519'),
  keyId: z.string().regex(/^[0-9a-f]{32}$/),
  signature: z.base64(),
});
export type SignatureFile = z.infer<typeof SignatureFileSchema>;

export type SignatureStatus =
  | { state: 'unsigned' }
  /** Signed, checked against the given public key. */
  | { state: 'verified'; keyId: string }
  /** Signed, but no public key was given: the caller decides whether that is acceptable. */
  | { state: 'unverified'; keyId: string };

export interface SignedParts {
  manifest: Buffer;
  oldBuild: Buffer;
  newBuild: Buffer;
}

/** The bytes an Ed25519 key signs; docs/BUNDLE.md specifies them. */
export function signedMessage(parts: SignedParts): Buffer {
  const line = (name: string, data: Buffer) => `${name} ${data.length} ${sha256Hex(data)}\n`;
  return Buffer.from(
    `${SIGNATURE_SCHEME}\n` +
      line(ENTRY_MANIFEST, parts.manifest) +
      line(ENTRY_OLD, parts.oldBuild) +
      line(ENTRY_NEW, parts.newBuild),
    'utf8',
  );
}

/** SHA-256 of the public key's SPKI DER encoding, first 16 bytes: names a key in messages. */
export function keyIdOf(key: KeyObject): string {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  return createHash('sha256')
    .update(pub.export({ type: 'spki', format: 'der' }))
    .digest('hex')
    .slice(0, 32);
}

export function loadPrivateKey(pem: Buffer | string): KeyObject {
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch (err) {
    // The usual mistake: the public half, which belongs on the hosts (ulp-trigger --key), given to sign with.
    if (/-----BEGIN PUBLIC KEY-----/.test(pem.toString())) {
      throw new UlpError(
        'BUNDLE_KEY_INVALID',
        'the signing key is a public key: signing needs the private key',
        'Give the private key it was made from (openssl genpkey -algorithm ed25519 -out key.pem); the public key is for ulp-trigger --key and ulp-pack --inspect --key.',
      );
    }
    throw new UlpError(
      'BUNDLE_KEY_INVALID',
      `the signing key cannot be read: ${(err as Error).message}`,
      'Give an Ed25519 private key in PEM (e.g. `openssl genpkey -algorithm ed25519`).',
    );
  }
  requireEd25519(key, 'signing key');
  return key;
}

/** Accepts a public key, or a private key from which the public half is taken. */
export function loadPublicKey(pem: Buffer | string): KeyObject {
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch (err) {
    throw new UlpError(
      'BUNDLE_KEY_INVALID',
      `the public key cannot be read: ${(err as Error).message}`,
      'Give an Ed25519 public key in PEM (e.g. `openssl pkey -pubout`).',
    );
  }
  requireEd25519(key, 'public key');
  return key;
}

function requireEd25519(key: KeyObject, what: string): void {
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new UlpError(
      'BUNDLE_KEY_INVALID',
      `the ${what} is ${key.asymmetricKeyType ?? 'not an asymmetric key'}, not Ed25519`,
      'Bundles are signed with Ed25519 keys only.',
    );
  }
}

export function signParts(parts: SignedParts, privateKey: KeyObject): Buffer {
  const file: SignatureFile = {
    scheme: SIGNATURE_SCHEME,
    algorithm: 'ed25519',
    keyId: keyIdOf(privateKey),
    signature: sign(null, signedMessage(parts), privateKey).toString('base64'),
  };
  return Buffer.from(JSON.stringify(file, null, 2) + '\n', 'utf8');
}

export function checkSignature(
  entry: Buffer | undefined,
  parts: SignedParts,
  publicKey: KeyObject | undefined,
): SignatureStatus {
  if (!entry) {
    if (publicKey) {
      throw new UlpError(
        'BUNDLE_UNSIGNED',
        'a public key was given but the bundle is not signed',
        'Ask the publisher for a signed bundle, or do not require a signature.',
        { expectedKeyId: keyIdOf(publicKey) },
      );
    }
    return { state: 'unsigned' };
  }
  const file = parseSignatureFile(entry);
  if (!publicKey) return { state: 'unverified', keyId: file.keyId };
  const expected = keyIdOf(publicKey);
  if (file.keyId !== expected) {
    throw new UlpError(
      'BUNDLE_SIGNATURE_KEY_MISMATCH',
      `the bundle is signed by key ${file.keyId}, not by the given key ${expected}`,
      "Check that you have the publisher's right public key.",
      { keyId: file.keyId, expectedKeyId: expected },
    );
  }
  const sig = Buffer.from(file.signature, 'base64');
  if (sig.length !== 64 || !verify(null, signedMessage(parts), publicKey, sig)) {
    throw new UlpError(
      'BUNDLE_SIGNATURE_INVALID',
      "the signature does not match the bundle's contents",
      'The bundle was modified after it was signed; do not use it.',
      { keyId: file.keyId },
    );
  }
  return { state: 'verified', keyId: file.keyId };
}

function parseSignatureFile(entry: Buffer): SignatureFile {
  let json: unknown;
  try {
    json = JSON.parse(entry.toString('utf8'));
  } catch {
    json = undefined;
  }
  const parsed = SignatureFileSchema.safeParse(json);
  if (!parsed.success) {
    throw new UlpError(
      'BUNDLE_SIGNATURE_MALFORMED',
      'the signature entry is not a valid ulp signature',
      'The bundle is damaged or was altered; do not use it.',
    );
  }
  return parsed.data;
}
