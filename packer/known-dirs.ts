/**
 * The folders of bundles already written that ulp-pack reads as downgrade
 * evidence (version/known-bundles.ts): the store that `ulp-trigger
 * --outdated --apply` keeps, which may be missing or unreadable (a host that
 * never ran it, a user who is not root), and the `--known` folders the
 * operator names, which must exist.
 */
import { readdirSync } from 'node:fs';
import { UlpError } from '../common/errors.js';
import { bundleStoreDir, readBundleHeads, type BundleHead, type SkippedBundle } from '../patches/store.js';

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

/** The heads of the bundles in the store and in `extra`. */
export function knownBundles(extra: readonly string[], env: NodeJS.ProcessEnv = process.env): KnownBundles {
  const dirs = [bundleStoreDir(env), ...extra];
  return { dirs, ...readBundleHeads(dirs) };
}
