/**
 * Builds of test/fixtures/packer/libfix.c for the packer tests: each variant
 * is a set of -D flags (one kind of change), a RELRO mode, stripped or not.
 */
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { FIXTURES, compile } from '../compile.js';
import { sharedLib } from '../versioned.js';

export interface Variant {
  defines?: string[];
  relro?: 'full' | 'partial';
  stripped?: boolean;
  soname?: string;
  /** Version script in test/fixtures/packer. */
  map?: 'v1.map' | 'v2.map';
}

export function libfix(v: Variant = {}): string {
  const flags = ['-Wl,--build-id'];
  if (v.map) {
    const path = join(FIXTURES, 'packer', v.map);
    // The compile cache keys on flags: make the script's content part of them.
    flags.push(
      `-Wl,--version-script=${path}`,
      `-DULP_MAP_${createHash('sha256').update(readFileSync(path)).digest('hex').slice(0, 12)}`,
    );
  }
  if (v.stripped) flags.push('-s');
  return sharedLib({
    sources: ['packer/libfix.c'],
    out: v.soname ?? 'libfix.so.1',
    soname: v.soname ?? 'libfix.so.1',
    defines: (v.defines ?? []).map((d) => `-D${d}`),
    relro: v.relro ?? 'full',
    flags,
  });
}

export function program(): string {
  return compile({ sources: ['packer/prog.c'], out: 'prog', flags: ['-O2'] });
}

/** A copy of `path` with its symbol table removed by strip(1): same build-id, as distributions ship. */
export function stripped(path: string): string {
  const out = `${path}.stripped`;
  if (!existsSync(out)) {
    const tmp = `${out}.${process.pid}.tmp`;
    execFileSync('strip', ['-o', tmp, path]);
    renameSync(tmp, out);
  }
  return out;
}
