/**
 * Runs lab/runtime/driver.ts as a separate, killable tracer process.
 *
 * Starting it through tsx costs about a second per process, which adds up
 * over dozens of SIGKILL rounds; so the driver and the layers it imports are
 * transpiled once (lab/transpiled.ts) and run by plain Node.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { BUILD } from '../compile.js';
import { readableCheckout } from '../other-user.js';
import { ROOT } from '../root.js';
import { transpiled, tsFiles } from '../transpiled.js';

const LAYERS = ['common', 'elf', 'runtime'];
const DRIVER = 'lab/runtime/driver.ts';

let cached: string | undefined;

/** Path of the transpiled driver (.js), built on first use. */
export function driverScript(): string {
  if (cached) return cached;
  const out = transpiled('driver-js', [...LAYERS.flatMap(tsFiles), DRIVER]);
  const script = join(out, DRIVER.replace(/\.ts$/, '.js'));
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
        if (Date.now() > deadline)
          throw new Error(`driver did not print ${re} in ${timeoutMs} ms; output:\n${out}`);
        await new Promise((r) => setTimeout(r, 2));
      }
    },
  };
}
