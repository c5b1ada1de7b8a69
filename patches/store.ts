/**
 * Bundles kept on a host: the store, where `ulp-trigger --outdated --apply`
 * keeps the bundles it packs and ulp-pack looks for those already written
 * (bundle-head.ts reads them), and the bundle files of a folder. Only
 * node:fs: the trigger and the packer load this at start.
 */
import { readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';

/** The bundle store's default folder; `$ULP_BUNDLES_DIR` replaces it for both commands. */
export const DEFAULT_BUNDLES_DIR = '/var/lib/ulp/bundles';

/** The store's folder in this environment. */
export function bundleStoreDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.ULP_BUNDLES_DIR || DEFAULT_BUNDLES_DIR;
}

/** A bundle (or a folder) that could not be looked at, and why. */
export interface SkippedBundle {
  path: string;
  code: string;
  message: string;
}

/**
 * The `*.ulp` files in each folder (not its subfolders), folder by folder
 * in name order, each folder once. A folder that does not exist holds no
 * bundles (a host that never ran --outdated --apply has no store); one that
 * cannot be listed is skipped and listed, never fatal.
 */
export function bundleFiles(dirs: readonly string[]): { files: string[]; skipped: SkippedBundle[] } {
  const files: string[] = [];
  const skipped: SkippedBundle[] = [];
  const seen = new Set<string>();
  for (const dir of dirs) {
    if (seen.has(resolve(dir))) continue;
    seen.add(resolve(dir));
    try {
      for (const name of readdirSync(dir)
        .filter((n) => n.endsWith('.ulp'))
        .sort())
        files.push(join(dir, name));
    } catch (err) {
      if ((err as { code?: string }).code !== 'ENOENT')
        skipped.push({
          path: dir,
          code: 'BUNDLE_READ_FAILED',
          message: `cannot list ${dir}: ${(err as Error).message}`,
        });
    }
  }
  return { files, skipped };
}
