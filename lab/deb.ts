/**
 * Builds small Debian packages for tests with the real dpkg-deb: a control
 * file and the given files and symbolic links. Package names must be unique
 * to the test (never a real system package).
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

export interface DebSpec {
  name: string;
  version: string;
  /** Path inside the package (no leading slash) -> a file to copy, or { link: target } for a symbolic link. */
  files: Record<string, string | { link: string }>;
}

/** Writes `dir/NAME_VERSION_amd64.deb` and returns its path. */
export function buildDeb(dir: string, spec: DebSpec): string {
  const root = join(dir, `${spec.name}-${spec.version}.tree`);
  rmSync(root, { recursive: true, force: true });
  mkdirSync(join(root, 'DEBIAN'), { recursive: true });
  for (const [path, what] of Object.entries(spec.files)) {
    const dest = join(root, path);
    mkdirSync(dirname(dest), { recursive: true });
    if (typeof what === 'string') {
      copyFileSync(what, dest);
      chmodSync(dest, 0o644);
    } else symlinkSync(what.link, dest);
  }
  writeFileSync(
    join(root, 'DEBIAN', 'control'),
    `Package: ${spec.name}\nVersion: ${spec.version}\nArchitecture: amd64\nMaintainer: ulp tests <ulp@invalid>\nSection: libs\nPriority: optional\nDescription: ulp test fixture, safe to remove\n`,
  );
  const out = join(dir, `${spec.name}_${spec.version}_amd64.deb`);
  execFileSync('dpkg-deb', ['--root-owner-group', '-Zgzip', '-b', root, out], { stdio: 'pipe' });
  return out;
}
