/**
 * Builds the demo library (test/fixtures/trigger/libdemo.c) in several
 * versions and a program linked against it, packs bundles between versions
 * with the real ulp-pack, and starts the program on a chosen version.
 */
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from './cli.js';
import { startTarget, type Target } from './target.js';
import { type Relro } from './relro.js';
import { libdemo, linkedProgram } from './versioned.js';

export type { Relro };

export interface DemoOptions {
  relro?: Relro;
  /** Extra flags for the library (e.g. '-s' to strip, '-Wl,-Bsymbolic'). */
  libFlags?: string[];
  /** The program's C source under test/fixtures/trigger (default demo_main.c). */
  main?: string;
  mainLibs?: string[];
  /** Makes builds (and build-ids) that no other test shares. */
  tag?: string;
}

export interface Demo {
  lib(version: number): string;
  exe: string;
  /** Packs old -> new with ulp-pack and returns the bundle path (asserting success). */
  pack(from: number, to: number, extra?: string[]): string;
  /** Starts the program with `version` installed as libdemo.so.1. */
  start(version: number, args?: string[]): Target;
  /** The same, with the command line `argv(exe)` (e.g. the program under a shell); the Target is that command's process. */
  startWith(version: number, argv: (exe: string) => string[]): Target;
  dispose(): void;
}

export function buildDemo(opts: DemoOptions = {}): Demo {
  const relro = opts.relro ?? 'full';
  const dir = mkdtempSync(join(tmpdir(), 'ulp-demo-'));
  const libs = new Map<number, string>();
  const lib = (v: number) => {
    let p = libs.get(v);
    if (!p) {
      p = libdemo(v, { tag: opts.tag, relro, flags: opts.libFlags ?? [] });
      libs.set(v, p);
    }
    return p;
  };
  // The program links against v1; any version can then be installed under the SONAME.
  const exe = linkedProgram({
    sources: [`trigger/${opts.main ?? 'demo_main.c'}`],
    out: (opts.main ?? 'demo_main.c').replace(/\.c$/, ''),
    relro,
    flags: ['-pthread'],
    against: { 'libdemo.so.1': lib(1) },
    libs: opts.mainLibs ?? [],
  });
  const targets: Target[] = [];
  let packs = 0;
  return {
    lib,
    exe,
    pack(from, to, extra = []) {
      const out = join(dir, `fix-${from}-${to}-${packs++}.ulp`);
      const r = runCli('ulp-pack', [lib(from), lib(to), '-o', out, ...extra]);
      if (r.code !== 0)
        throw new Error(`ulp-pack v${from} -> v${to} failed (${r.code}):\n${r.stdout}\n${r.stderr}`);
      return out;
    },
    start(version, args = []) {
      return this.startWith(version, (e) => [e, ...args]);
    },
    startWith(version, argv) {
      const libDir = join(dir, `run-v${version}-${targets.length}`);
      mkdirSync(libDir);
      copyFileSync(lib(version), join(libDir, 'libdemo.so.1'));
      const t = startTarget(argv(exe), { LD_LIBRARY_PATH: libDir });
      targets.push(t);
      return t;
    },
    dispose() {
      for (const t of targets) t.dispose();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The last complete line of the demo program's output, parsed into its key=value fields. */
export function lastRound(out: string): Record<string, string> | undefined {
  const lines = out
    .trimEnd()
    .split('\n')
    .filter((l) => l.startsWith('round='));
  const line = lines.at(-1);
  if (!line) return undefined;
  return Object.fromEntries(line.split(' ').map((kv) => kv.split('=') as [string, string]));
}

/** Every round line parsed. */
export function rounds(out: string): Array<Record<string, string>> {
  return out
    .split('\n')
    .filter((l) => l.startsWith('round=') && l.includes('compute='))
    .map((line) => Object.fromEntries(line.split(' ').map((kv) => kv.split('=') as [string, string])));
}
