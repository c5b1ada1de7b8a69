/**
 * Runs lab/runtime/driver.ts as a separate, killable tracer process.
 *
 * Starting it through tsx costs about a second per process, which adds up
 * over dozens of SIGKILL rounds; so the driver and the layers it imports are
 * transpiled once (TypeScript's transpileModule, cached by content in
 * test/fixtures/build) and run by plain Node. Imports already carry `.js`
 * suffixes, so the output runs as-is; it sits inside the repository so that
 * `koffi` resolves from node_modules.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, sep } from 'node:path';
import ts from 'typescript';
import { BUILD } from '../compile.js';

import { readableCheckout } from '../other-user.js';
import { ROOT } from '../root.js';
const LAYERS = ['common', 'elf', 'runtime'];
const DRIVER = 'lab/runtime/driver.ts';

function tsFiles(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? tsFiles(join(dir, e.name)) : e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [join(dir, e.name)] : [],
  );
}

let cached: string | undefined;

/** Path of the transpiled driver (.js), built on first use. */
export function driverScript(): string {
  if (cached) return cached;
  const files = [...LAYERS.flatMap(tsFiles), DRIVER];
  const hash = createHash('sha256');
  for (const f of files) hash.update(f).update(readFileSync(join(ROOT, f)));
  const out = join(BUILD, `driver-js-${hash.digest('hex').slice(0, 16)}`);
  const script = join(out, DRIVER.replace(/\.ts$/, '.js'));
  if (!existsSync(script)) {
    const tmp = `${out}.${process.pid}.tmp`;
    for (const f of files) {
      const js = ts.transpileModule(readFileSync(join(ROOT, f), 'utf8'), {
        compilerOptions: { module: ts.ModuleKind.ES2022, target: ts.ScriptTarget.ES2022 },
        fileName: f,
      }).outputText;
      const dest = join(tmp, f.replace(/\.ts$/, '.js'));
      mkdirSync(dirname(dest), { recursive: true });
      writeFileSync(dest, js);
    }
    if (!existsSync(out)) renameSync(tmp, out); // another test process may have won the race; both outputs are equal
  }
  if (!relative(ROOT, script).startsWith('test')) throw new Error('driver must live inside the repository');
  cached = script;
  return script;
}

/**
 * The driver where another user can run it (lab/other-user.ts): the build
 * above when others can read the checkout, else a copy of it beside the
 * readable copy's node_modules (koffi resolves from there).
 */
export function readableDriverScript(): string {
  const script = driverScript();
  const root = readableCheckout();
  if (root === ROOT) return script;
  const build = relative(BUILD, script).split(sep)[0]!;
  const copy = join(root, '.driver', build);
  if (!existsSync(copy)) {
    cpSync(join(BUILD, build), copy, { recursive: true });
    execFileSync('chmod', ['-R', 'a+rX', join(root, '.driver')]);
  }
  return join(root, '.driver', relative(BUILD, script));
}

export interface DriverRun {
  proc: ChildProcess;
  output(): string;
  /** Resolves with the exit code, or the signal name. */
  exited: Promise<number | string>;
  /** Waits until the output matches, or throws (with the output) after timeoutMs or an early exit. */
  waitFor(re: RegExp, timeoutMs?: number): Promise<void>;
}

export function runDriver(args: string[]): DriverRun {
  const proc = spawn(process.execPath, [driverScript(), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  let done = false;
  const exited = new Promise<number | string>((r) =>
    proc.on('exit', (code, sig) => {
      done = true;
      r(code ?? sig ?? -1);
    }),
  );
  return {
    proc,
    output: () => out,
    exited,
    async waitFor(re, timeoutMs = 60_000) {
      const deadline = Date.now() + timeoutMs;
      while (!re.test(out)) {
        if (done) throw new Error(`driver exited before printing ${re}; output:\n${out}`);
        if (Date.now() > deadline) throw new Error(`driver did not print ${re} in ${timeoutMs} ms; output:\n${out}`);
        await new Promise((r) => setTimeout(r, 2));
      }
    },
  };
}
