/**
 * The folders of bundles already written that ulp-pack reads as downgrade
 * evidence (version/known-bundles.ts): the store that `ulp-trigger
 * --outdated --apply` keeps, which may be missing or unreadable (a host that
 * never ran it, a user who is not root), and the `--known` folders the
 * operator names, which must exist.
 */
import { readdirSync } from 'node:fs';
import { UlpError } from '../common/errors.js';
import type { BundleHead } from '../patches/bundle-head.js';
import { bundleFiles, bundleStoreDir, type SkippedBundle } from '../patches/store.js';

export interface KnownBundles {
  /** The folders looked at: the store first. */
  dirs: string[];
  heads: BundleHead[];
  skipped: SkippedBundle[];
}

/** Every --known folder is a folder this user can list, before anything is read. */
export function checkKnownDirs(dirs: readonly string[]): void {
  for (const d of dirs) {
    try {
      readdirSync(d);
    } catch (err) {
      const e = err as { code?: string; message: string };
      throw new UlpError(
        'PACK_KNOWN_DIR_UNREADABLE',
        `--known ${d} ${e.code === 'ENOENT' ? 'does not exist' : e.code === 'ENOTDIR' ? 'is not a folder' : `cannot be read: ${e.message}`}`,
        'Give a folder that holds .ulp bundles, and that you can read.',
        { path: d, errno: e.code },
      );
    }
  }
}

/**
 * The heads of the bundles in the store and in `extra`. The reader (gzip,
 * tar headers) is loaded only when there is a bundle to read: most hosts
 * that pack have no store.
 */
export async function knownBundles(
  extra: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
): Promise<KnownBundles> {
  const dirs = [bundleStoreDir(env), ...extra];
  const listed = bundleFiles(dirs);
  if (listed.files.length === 0) return { dirs, heads: [], skipped: listed.skipped };
  const { readBundleHeads } = await import('../patches/bundle-head.js');
  const read = readBundleHeads(listed.files);
  return { dirs, heads: read.heads, skipped: [...listed.skipped, ...read.skipped] };
}
