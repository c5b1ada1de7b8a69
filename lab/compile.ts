/**
 * Compiles C fixtures with the machine's gcc into test/fixtures/build, keyed by
 * a hash of the sources and flags so that repeated runs (and parallel test
 * files) reuse the outputs instead of recompiling.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';

import { FIXTURES } from './root.js';

export { FIXTURES };
export const BUILD = join(FIXTURES, 'build');

export interface CompileOptions {
  /** C sources, as paths relative to test/fixtures or as inline `{ name, code }`. */
  sources: Array<string | { name: string; code: string }>;
  /** Output file name inside the build folder (e.g. `libdemo.so.1`). */
  out: string;
  /** Extra gcc flags, e.g. ['-shared', '-fPIC', '-Wl,-z,relro,-z,now']. */
  flags?: string[];
  /** Libraries and link flags that must come after the sources. */
  libs?: string[];
}

/** Compiles once per distinct input and returns the absolute path of the output. */
export function compile(opts: CompileOptions): string {
  mkdirSync(BUILD, { recursive: true });
  const hash = createHash('sha256');
  const srcPaths: string[] = [];
  for (const s of opts.sources) {
    if (typeof s === 'string') {
      const p = resolve(FIXTURES, s);
      hash.update(p).update(readFileSync(p));
      srcPaths.push(p);
    } else {
      const p = join(BUILD, 'src', s.name);
      mkdirSync(dirname(p), { recursive: true });
      if (!existsSync(p) || readFileSync(p, 'utf8') !== s.code) writeFileSync(p, s.code);
      hash.update(s.name).update(s.code);
      srcPaths.push(p);
    }
  }
  hash.update(JSON.stringify([opts.flags ?? [], opts.libs ?? []]));
  const key = hash.digest('hex').slice(0, 16);
  const dir = join(BUILD, key);
  const out = join(dir, opts.out);
  if (existsSync(out)) return out;
  mkdirSync(dir, { recursive: true });
  const tmp = join(dir, `.${basename(opts.out)}.${process.pid}.tmp`);
  execFileSync('gcc', [...(opts.flags ?? []), '-o', tmp, ...srcPaths, ...(opts.libs ?? [])], {
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  renameSync(tmp, out); // atomic: a concurrent test never sees a half-written output
  return out;
}
