/**
 * The bundle facts kept in a patched process (runtime/loader/model.ts
 * metaMemfdName): small JSON that --status reads back. Pure. A process is
 * not trusted input: what does not parse, or does not have the shape, is
 * ignored rather than shown.
 */
import type { Bundle, PackageInfo } from '../patches/index.js';
import { CVE_RE } from '../patches/cve.js';

export interface BundleMeta {
  patchId: string;
  soname: string;
  package: PackageInfo;
  /** The bundle was packed with --allow-downgrade: its new build looked older. */
  downgrade?: true;
}

/** A bundle has something to keep in the process. */
export function hasBundleMeta(bundle: Bundle): boolean {
  return bundle.manifest.package !== undefined || bundle.manifest.downgrade === true;
}

const MAX_BYTES = 64 * 1024;

export function encodeBundleMeta(bundle: Bundle): Buffer {
  const m = bundle.manifest;
  const meta: BundleMeta = {
    patchId: m.patchId,
    soname: m.soname,
    package: m.package ?? {},
    ...(m.downgrade ? { downgrade: true as const } : {}),
  };
  return Buffer.from(JSON.stringify({ kind: 'ulp-bundle-meta', version: 1, ...meta }), 'utf8');
}

const str = (v: unknown) => (typeof v === 'string' && v.length > 0 && v.length <= 128 ? v : undefined);

export function decodeBundleMeta(bytes: Buffer, patchId: string): BundleMeta | undefined {
  const end = bytes.indexOf(0);
  const text = bytes.subarray(0, Math.min(end < 0 ? bytes.length : end, MAX_BYTES)).toString('utf8');
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (
    !json ||
    json.kind !== 'ulp-bundle-meta' ||
    json.patchId !== patchId ||
    typeof json.package !== 'object' ||
    json.package === null
  )
    return undefined;
  const p = json.package as Record<string, unknown>;
  const pkg: PackageInfo = {};
  for (const k of ['name', 'fromVersion', 'toVersion'] as const) {
    const v = str(p[k]);
    if (v !== undefined) pkg[k] = v;
  }
  if (Array.isArray(p.fixes)) {
    const fixes = p.fixes.filter((x: unknown) => typeof x === 'string' && CVE_RE.test(x));
    if (fixes.length) pkg.fixes = fixes;
  }
  return {
    patchId,
    soname: str(json.soname) ?? '',
    package: pkg,
    ...(json.downgrade === true ? { downgrade: true as const } : {}),
  };
}
