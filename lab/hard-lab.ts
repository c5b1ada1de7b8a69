/**
 * A small workbench for the "hard cases" tests (test/fixtures/hard): builds
 * libraries in numbered versions (-DV=N) under their SONAME, a program
 * linked against version 1, packs bundles with the real ulp-pack, starts the
 * program with any mix of versions installed, and reads the `key=value`
 * lines the fixtures print. Tests that switch dozens of times pack and
 * trigger in this process instead (`packHere`, `here`).
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { RunResult } from '../trigger/apply.js';
import type { StatusReport } from '../trigger/status.js';
import { runCli, type Run } from './cli.js';
import { compile } from './compile.js';
import { startTarget, type Target } from './target.js';
import { RELRO_FLAGS, type Relro } from './relro.js';
import { linkAgainst, sharedLib } from './versioned.js';

export { RELRO_FLAGS, type Relro };

export interface LabLib {
  soname: string;
  /** C sources under test/fixtures. */
  sources: string[];
  relro?: Relro;
  flags?: string[];
  /** Other lab libraries (by key) this one links against (their version 1). */
  needs?: string[];
  /** Libraries after the sources, e.g. ['-lpthread']. */
  libs?: string[];
}

export interface LabExe {
  sources: string[];
  relro?: Relro;
  flags?: string[];
  /** Lab libraries (by key) the program links against. */
  needs?: string[];
  /** Which version of them it links against (default 1): a program built against a later version may import what version 1 lacks. */
  linkVersion?: number;
  libs?: string[];
}

export type Line = Record<string, string>;

export function ok(r: Run): Run {
  assert.equal(r.code, 0, `exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r;
}

export const trigger = (...args: string[]): Run => ok(runCli('ulp-trigger', args));
export const status = (pid: number): any => trigger('--status', String(pid), '--json').json;

/**
 * The same work as the commands, done in this process (trigger/apply.ts
 * runOne, trigger/status.ts readStatus: the real ptrace path, minus a
 * command's start-up of most of a second). For tests that run dozens of
 * switches; the targets are not children of this process (target.ts), so
 * tracing them from here is safe.
 */
export const here = {
  async trigger(
    pid: number,
    bundlePath: string,
    which: 'forward' | 'reverse' = 'forward',
  ): Promise<RunResult> {
    const [{ runOne }, { readBundleFile }] = await Promise.all([
      import('../trigger/apply.js'),
      import('../patches/index.js'),
    ]);
    return runOne(pid, readBundleFile(bundlePath), { which });
  },
  async status(pid: number): Promise<StatusReport> {
    return (await import('../trigger/status.js')).readStatus(pid);
  },
};

/** The status entry of one library, asserted present. */
export function libStatus(pid: number, soname: string): any {
  const lib = status(pid).libraries.find((l: { soname: string }) => l.soname === soname);
  assert.ok(lib, `--status of ${pid} does not list ${soname}`);
  return lib;
}

/** Lines of `key=value` pairs (the first pair's key is `tag` when given). */
export function lines(out: string, tag?: string): Line[] {
  return out
    .split('\n')
    .filter((l) => /^\w+=/.test(l) && (tag === undefined || l.startsWith(`${tag}=`)))
    .map(
      (l) =>
        Object.fromEntries(
          l
            .trim()
            .split(/\s+/)
            .map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]),
        ) as Line,
    );
}

/** Waits until `pred` holds for the lines printed after `mark` (an output length), and returns them. */
export async function linesAfter(
  t: Target,
  mark: number,
  pred: (ls: Line[]) => boolean,
  timeoutMs = 60_000,
): Promise<Line[]> {
  const out = await t.waitFor((o) => pred(lines(o.slice(mark))), timeoutMs);
  return lines(out.slice(mark));
}

export class HardLab {
  readonly dir = mkdtempSync(join(tmpdir(), 'ulp-lab-'));
  private readonly targets: Target[] = [];
  private n = 0;

  constructor(
    private readonly libsSpec: Record<string, LabLib>,
    /** Makes builds (and build-ids) no other test shares. */
    private readonly tag: string,
  ) {}

  soname(key: string): string {
    return this.spec(key).soname;
  }

  private spec(key: string): LabLib {
    const s = this.libsSpec[key];
    if (!s) throw new Error(`no library ${key} in this lab`);
    return s;
  }

  /** Version `v` of library `key` (compiled once, cached by content). */
  lib(key: string, v: number): string {
    const s = this.spec(key);
    return sharedLib({
      sources: s.sources,
      out: `${s.soname}.v${v}`,
      soname: s.soname,
      defines: [`-DV=${v}`, `-DLAB_TAG="${this.tag}"`],
      relro: s.relro ?? 'full',
      flags: ['-Wl,--build-id', ...(s.flags ?? [])],
      libs: [...this.linkAgainst(s.needs ?? []), ...(s.libs ?? [])],
    });
  }

  /**
   * The link flags for needing lab libraries `keys` in version `v`; what
   * they need in turn is there in version 1, for the linker to check them.
   */
  private linkAgainst(keys: string[], v = 1): string[] {
    const against: Record<string, string> = {};
    for (const key of keys) against[this.soname(key)] = this.lib(key, v);
    const indirect: Record<string, string> = {};
    const visit = (key: string): void => {
      for (const dep of this.spec(key).needs ?? []) {
        if (indirect[this.soname(dep)] !== undefined) continue;
        indirect[this.soname(dep)] = this.lib(dep, 1);
        visit(dep);
      }
    };
    keys.forEach(visit);
    return linkAgainst(against, indirect);
  }

  exe(name: string, e: LabExe): string {
    return compile({
      sources: e.sources,
      out: name,
      flags: [
        '-O2',
        '-pthread',
        `-DLAB_TAG="${this.tag}"`,
        ...RELRO_FLAGS[e.relro ?? 'full'],
        ...(e.flags ?? []),
      ],
      libs: [...this.linkAgainst(e.needs ?? [], e.linkVersion), ...(e.libs ?? [])],
    });
  }

  bundlePath(key: string, from: number, to: number): string {
    return join(this.dir, `${key}-${from}-${to}.ulp`);
  }

  /** Packs `key` v`from` -> v`to` with the real ulp-pack (asserting success) and returns the bundle. */
  pack(key: string, from: number, to: number): string {
    const out = this.bundlePath(key, from, to);
    ok(runCli('ulp-pack', [this.lib(key, from), this.lib(key, to), '-o', out]));
    return out;
  }

  /** The same in this process (packer/pack.ts, what ulp-pack runs), for tests that need many bundles. */
  async packHere(key: string, from: number, to: number): Promise<string> {
    const out = this.bundlePath(key, from, to);
    const [{ pack: packPair }, { writeFileAtomic }] = await Promise.all([
      import('../packer/pack.js'),
      import('../patches/index.js'),
    ]);
    const r = await packPair({
      oldPath: this.lib(key, from),
      newPath: this.lib(key, to),
      createdAt: new Date(0),
      tool: { name: 'ulp-pack', version: 'test' },
      bundle: true,
    });
    assert.ok(r.bytes, `${key} v${from} -> v${to}: ${r.forward.verdict}`);
    writeFileAtomic(out, r.bytes);
    return out;
  }

  /** A folder holding the given versions of lab libraries under their SONAMEs. */
  install(versions: Record<string, number>): string {
    const run = join(this.dir, `run-${this.n++}`);
    mkdirSync(run);
    for (const [key, v] of Object.entries(versions))
      copyFileSync(this.lib(key, v), join(run, this.soname(key)));
    return run;
  }

  /** Starts `exe` with `versions` installed (LD_LIBRARY_PATH); `args` may name files in the run folder as `{run}/...`. */
  start(
    exe: string,
    versions: Record<string, number>,
    args: string[] = [],
    env: Record<string, string> = {},
  ): Target {
    const run = this.install(versions);
    const t = startTarget([exe, ...args.map((a) => a.replaceAll('{run}', run))], {
      LD_LIBRARY_PATH: run,
      ...env,
    });
    this.targets.push(t);
    return t;
  }

  dispose(): void {
    for (const t of this.targets) t.dispose();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
