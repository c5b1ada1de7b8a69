/**
 * The host's policy for ulp-trigger (issue 14 item 5, the signature part):
 * `/etc/ulp/policy.json` (another path in $ULP_POLICY) can make signatures
 * mandatory with a set of trusted Ed25519 public keys:
 *
 *   { "requireSignature": true, "trustedKeys": ["/etc/ulp/keys/release.pub.pem"], "allowLocalPack": false }
 *
 * Then every bundle ulp-trigger applies or reverts must be signed by one of
 * those keys, `--allow-unverified` is refused, and `--outdated --apply` only
 * uses signed bundles put in its bundles folder (by `ulp-pack --deb --sign`
 * on a build machine) unless `allowLocalPack` lets it pack on the host.
 * No file: no policy. A file that cannot be read or parsed refuses every
 * apply (it fails closed): the operator meant something by writing it.
 */
import { readFileSync } from 'node:fs';
import type { KeyObject } from 'node:crypto';
import { UlpError } from '../common/errors.js';
import { readRegularFile } from '../common/files.js';
import { keyIdOf, loadPublicKey, readBundleFile, type Bundle } from '../patches/index.js';

export const DEFAULT_POLICY_PATH = '/etc/ulp/policy.json';

export interface Policy {
  path: string;
  requireSignature: boolean;
  trustedKeys: Array<{ path: string; keyId: string; key: KeyObject }>;
  allowLocalPack: boolean;
}

function invalid(path: string, why: string): UlpError {
  return new UlpError(
    'TRIGGER_POLICY_INVALID',
    `the policy file ${path} ${why}`,
    'Fix the file (docs/OPERATORS.md shows its fields) or remove it; until then nothing is applied.',
    { path },
  );
}

/** Parses the policy's JSON; keys are loaded through `loadKey` (a path -> public key). */
export function parsePolicy(text: string, path: string, loadKey: (keyPath: string) => KeyObject): Policy {
  let j: unknown;
  try {
    j = JSON.parse(text);
  } catch (e) {
    throw invalid(path, `is not JSON: ${(e as Error).message}`);
  }
  if (!j || typeof j !== 'object' || Array.isArray(j)) throw invalid(path, 'is not a JSON object');
  const o = j as Record<string, unknown>;
  for (const k of Object.keys(o))
    if (!['requireSignature', 'trustedKeys', 'allowLocalPack'].includes(k))
      throw invalid(path, `has an unknown field "${k}"`);
  const bool = (k: string) => {
    if (o[k] === undefined) return false;
    if (typeof o[k] !== 'boolean') throw invalid(path, `field "${k}" is not true or false`);
    return o[k] as boolean;
  };
  const keys = o.trustedKeys ?? [];
  if (!Array.isArray(keys) || keys.some((k) => typeof k !== 'string'))
    throw invalid(path, 'field "trustedKeys" is not a list of key file paths');
  const requireSignature = bool('requireSignature');
  if (requireSignature && keys.length === 0) throw invalid(path, 'requires signatures but trusts no key');
  const trustedKeys = (keys as string[]).map((p) => {
    const key = loadKey(p);
    return { path: p, keyId: keyIdOf(key), key };
  });
  return { path, requireSignature, trustedKeys, allowLocalPack: bool('allowLocalPack') };
}

/** The host's policy, or undefined when there is no policy file. */
export function readPolicy(path = process.env.ULP_POLICY || DEFAULT_POLICY_PATH): Policy | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw invalid(path, `cannot be read: ${(e as Error).message}`);
  }
  return parsePolicy(text, path, (p) => {
    let pem: Buffer;
    try {
      pem = readRegularFile(p, 64 * 1024);
    } catch (e) {
      throw invalid(path, `names the key ${p}, which cannot be read: ${(e as Error).message}`);
    }
    try {
      return loadPublicKey(pem);
    } catch (e) {
      throw invalid(path, `names the key ${p}, which is not an Ed25519 key: ${(e as Error).message}`);
    }
  });
}

/**
 * Reads a bundle as the policy requires: signed, and verified with the
 * trusted key whose id the signature names. Throws TRIGGER_POLICY_UNSIGNED,
 * TRIGGER_POLICY_UNTRUSTED, or the bundle's own BUNDLE_* error.
 */
export function readBundleUnderPolicy(path: string, policy: Policy): Bundle {
  const first = readBundleFile(path);
  const sig = first.signature;
  if (sig.state === 'unsigned') {
    throw new UlpError(
      'TRIGGER_POLICY_UNSIGNED',
      `${path} is not signed, and the host's policy (${policy.path}) requires a signature`,
      'Sign the bundle with a key the policy trusts (ulp-pack --sign KEY.pem).',
      { path, policy: policy.path },
    );
  }
  const keyId = sig.keyId;
  const trusted = policy.trustedKeys.find((k) => k.keyId === keyId);
  if (!trusted) {
    throw new UlpError(
      'TRIGGER_POLICY_UNTRUSTED',
      `${path} is signed by key ${keyId}, which the host's policy (${policy.path}) does not trust`,
      `Sign it with a trusted key (${policy.trustedKeys.map((k) => k.keyId).join(', ')}), or add its public key to trustedKeys.`,
      { path, keyId, policy: policy.path },
    );
  }
  return readBundleFile(path, { publicKey: trusted.key });
}
