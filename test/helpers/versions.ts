/**
 * A fixture library built in several versions (a -D<NAME>=N define), a
 * program linked against version 1, bundles packed between versions with the
 * real ulp-pack, and the program started with any version installed under
 * the library's SONAME. test/helpers/demo.ts is the same for libdemo with
 * its own program; this one takes any fixture.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from './cli.js';
import { compile } from './compile.js';
import { startTarget, type Target } from './target.js';

export interface LabOptions {
  /** Sources of the library, under test/fixtures. */
  lib: string[];
  soname: string;
  /** The version macro, e.g. 'UNW_VERSION'. */
  define: string;
  /** Sources of the program, under test/fixtures. */
  main: string[];
  libFlags?: string[];
  /** Libraries the fixture library links (C++ fixtures: -lstdc++; gcc compiles .cpp as C++). */
  libLibs?: string[];
  mainFlags?: string[];
  /** Libraries the program links besides the fixture library. */
  mainLibs?: string[];
}

export interface Lab {
  lib(version: number): string;
  exe: string;
  pack(from: number, to: number): string;
  start(version: number, args?: string[]): Target;
  dispose(): void;
}

export function buildLab(opts: LabOptions): Lab {
  const dir = mkdtempSync(join(tmpdir(), 'ulp-lab-'));
  const lib = (v: number) =>
    compile({ sources: opts.lib, out: `${opts.soname}-v${v}`, flags: ['-shared', '-fPIC', '-O2', `-D${opts.define}=${v}`, `-Wl,-soname,${opts.soname}`, ...(opts.libFlags ?? [])], libs: opts.libLibs ?? [] });
  mkdirSync(join(dir, 'link'));
  copyFileSync(lib(1), join(dir, 'link', opts.soname));
  const exe = compile({ sources: opts.main, out: 'main', flags: ['-O2', ...(opts.mainFlags ?? [])], libs: [`-L${join(dir, 'link')}`, `-l:${opts.soname}`, ...(opts.mainLibs ?? [])] });
  const targets: Target[] = [];
  return {
    lib,
    exe,
    pack(from, to) {
      const out = join(dir, `fix-${from}-${to}.ulp`);
      const r = runCli('ulp-pack', [lib(from), lib(to), '-o', out]);
      assert.equal(r.code, 0, `ulp-pack v${from} -> v${to}: exit ${r.code}\n${r.stdout}\n${r.stderr}`);
      return out;
    },
    start(version, args = []) {
      const run = join(dir, `run-${targets.length}`);
      mkdirSync(run);
      copyFileSync(lib(version), join(run, opts.soname));
      const t = startTarget([exe, ...args], { LD_LIBRARY_PATH: run });
      targets.push(t);
      return t;
    },
    dispose() {
      for (const t of targets) t.dispose();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** `key=value` fields of every line that starts with `round=`. */
export function roundLines(out: string): Array<Record<string, string>> {
  return out
    .split('\n')
    .filter((l) => l.startsWith('round=') && l.includes(' '))
    .map((l) => Object.fromEntries(l.split(' ').map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)])));
}

/** The last round line printed after `mark` (an output length), once `n` have been. */
export async function lastRoundAfter(t: Target, mark: number, n = 2): Promise<Record<string, string>> {
  const out = await t.waitFor((o) => roundLines(o.slice(mark)).length >= n);
  return roundLines(out.slice(mark)).at(-1)!;
}
