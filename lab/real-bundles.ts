/**
 * Bundles between the real builds (lab/real-builds.ts), packed once and
 * shared: several trigger tests patch processes with the same libcrypto
 * pair, and packing a real libcrypto is the slowest step of each. The pack
 * is the real ulp-pack, run as a user runs it; a failed pack throws with
 * its output. The cache key covers everything the bundle depends on: the
 * two input files' contents and the sources of the layers ulp-pack is made
 * of, so a change to the packer never reuses an older bundle. Tests whose
 * subject is the packer itself pack on their own.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { runCli } from './cli.js';
import { BUILD } from './compile.js';
import { realBuild } from './real-builds.js';
import { ROOT } from './root.js';

const PACKER_LAYERS = ['bin', 'common', 'elf', 'patches', 'packer'];

function sourcesOf(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { withFileTypes: true })
    .flatMap((e) =>
      e.isDirectory() ? sourcesOf(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
    )
    .sort();
}

let packerHash: string | undefined;

function packerSources(): string {
  if (!packerHash) {
    const h = createHash('sha256');
    for (const f of PACKER_LAYERS.flatMap(sourcesOf)) h.update(f).update(readFileSync(join(ROOT, f)));
    h.update(readFileSync(join(ROOT, 'package.json')));
    packerHash = h.digest('hex');
  }
  return packerHash;
}

/** The bundle `file` of version `from` -> `to` of the real builds in `dir` (realBuildsDir()), packed on first use. */
export function realBundle(dir: string, from: string, to: string, file: string): string {
  const oldPath = realBuild(dir, from, file);
  const newPath = realBuild(dir, to, file);
  const key = createHash('sha256')
    .update(packerSources())
    .update(readFileSync(oldPath))
    .update(readFileSync(newPath))
    .digest('hex')
    .slice(0, 16);
  const out = join(BUILD, 'real-bundles', key, `${file}-${from}-${to}.ulp`);
  if (existsSync(out)) return out;
  mkdirSync(join(BUILD, 'real-bundles', key), { recursive: true });
  const tmp = join(dirname(out), `.${process.pid}.${basename(out)}`);
  const r = runCli('ulp-pack', [oldPath, newPath, '-o', tmp]);
  if (r.code !== 0)
    throw new Error(`ulp-pack ${from} -> ${to} ${file} failed (exit ${r.code}):\n${r.stdout}${r.stderr}`);
  renameSync(tmp, out); // atomic: a concurrent test never reads a half-written bundle
  return out;
}
