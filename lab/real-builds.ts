/**
 * The unmodified Debian builds of real security updates in
 * ../shared/real-builds/ (see its README for what is known about each),
 * unpacked once into test/fixtures/build/real-builds and reused. The builds
 * are never committed: the archive stays outside the repository.
 *
 * Without the archive (a checkout with no shared/ beside it) the caller's
 * suite is skipped with the reason printed, except under CI, where a missing
 * archive is an error: the claims about real libraries must be checked there.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { BUILD } from './compile.js';
import { ROOT } from './cli.js';

export const REAL_BUILDS_ARCHIVE = resolve(ROOT, '..', 'shared', 'real-builds', 'debian-bookworm.tar.xz');
const CACHE = join(BUILD, 'real-builds');

/** One folder per package version, as in the archive. */
export const REAL = {
  ssl19: 'ssl-3.0.19-1~deb12u2',
  ssl20: 'ssl-3.0.20-1~deb12u2',
  ssl22: 'ssl-3.0.22-1~deb12u2',
  expat2: 'expat-2.5.0-1+deb12u2',
  expat5: 'expat-2.5.0-1+deb12u5',
  event8: 'event-2.1.12-stable-8',
  event8u1: 'event-2.1.12-stable-8+deb12u1',
} as const;

export const REAL_FILES = {
  crypto: 'libcrypto.so.3',
  ssl: 'libssl.so.3',
  expat: 'libexpat.so.1.8.10',
  event: 'libevent-2.1.so.7.0.1',
} as const;

/**
 * The folder holding the unpacked builds, or undefined (with the reason
 * printed) when the archive is not there outside CI.
 */
export function realBuildsDir(): string | undefined {
  if (!existsSync(REAL_BUILDS_ARCHIVE)) {
    if (process.env.CI)
      throw new Error(
        `the real builds are missing: ${REAL_BUILDS_ARCHIVE} (CI must run with shared/ beside the clone)`,
      );
    console.log(`      SKIPPED: no ${REAL_BUILDS_ARCHIVE}`);
    return undefined;
  }
  // The stamp lists what was unpacked: a cache a test (or a person) changed since is unpacked again.
  const stamp = join(CACHE, '.unpacked');
  if (existsSync(stamp) && statSync(stamp).mtimeMs >= statSync(REAL_BUILDS_ARCHIVE).mtimeMs) {
    const files = readFileSync(stamp, 'utf8').split('\n').filter(Boolean);
    if (files.length > 0 && files.every((f) => existsSync(join(CACHE, f)))) return CACHE;
  }
  // Unpack beside the cache and rename, so parallel test files never see half an archive.
  const tmp = `${CACHE}.${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  execFileSync('tar', ['-xJf', REAL_BUILDS_ARCHIVE, '-C', tmp]);
  const listed = execFileSync('tar', ['-tJf', REAL_BUILDS_ARCHIVE], { encoding: 'utf8' })
    .split('\n')
    .filter((f) => f && !f.endsWith('/'));
  writeFileSync(join(tmp, '.unpacked'), listed.join('\n') + '\n');
  rmSync(CACHE, { recursive: true, force: true });
  try {
    renameSync(tmp, CACHE);
  } catch (err) {
    // Another test file won the race: its copy is as good as ours.
    rmSync(tmp, { recursive: true, force: true });
    if (!existsSync(stamp)) throw err;
  }
  return CACHE;
}

/** The path of one real build, e.g. realBuild(dir, REAL.ssl20, REAL_FILES.crypto). */
export function realBuild(dir: string, version: string, file: string): string {
  return join(dir, version, file);
}
