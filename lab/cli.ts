/**
 * Runs the project's real commands as child processes and returns what a
 * user would see: exit code, stdout, stderr, and stdout parsed as JSON when
 * it is JSON.
 *
 * The commands run as plain JavaScript, as the package ships them: the
 * product's sources transpiled once per content (lab/transpiled.ts), which
 * starts each run about three times faster than tsx. ULP_RUNNER=tsx runs
 * bin/*.ts through tsx instead.
 */
import { spawn, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { ROOT } from './root.js';
import { transpiled, tsFiles } from './transpiled.js';

export { ROOT };

export type Program = 'ulp-pack' | 'ulp-trigger';

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
  json: any;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

const PRODUCT = ['bin', 'common', 'elf', 'patches', 'packer', 'runtime', 'trigger'];

let compiled: string | undefined;

/** The folder holding the transpiled product (bin/, common/, ...) and its package.json. */
export function compiledProduct(): string {
  return (compiled ??= transpiled('product-js', PRODUCT.flatMap(tsFiles), ['package.json']));
}

/** Node's arguments that run `program` with `args`. */
export function cliArgs(program: Program, args: string[]): string[] {
  if (process.env.ULP_RUNNER === 'tsx')
    return ['--import', 'tsx', join(ROOT, 'bin', `${program}.ts`), ...args];
  return [join(compiledProduct(), 'bin', `${program}.js`), ...args];
}

export function runCli(program: Program, args: string[], env: Record<string, string | undefined> = {}): Run {
  const r = spawnSync(process.execPath, cliArgs(program, args), {
    cwd: ROOT,
    encoding: 'utf8',
    env: { ...process.env, SOURCE_DATE_EPOCH: undefined, ...env },
    maxBuffer: 64 << 20,
  });
  if (r.error) throw r.error;
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr, json: parseJson(r.stdout) };
}

/** The same, without blocking the test's event loop (for runs that overlap with other work). */
export function runCliAsync(
  program: Program,
  args: string[],
  env: Record<string, string | undefined> = {},
): Promise<Run> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, cliArgs(program, args), {
      cwd: ROOT,
      env: { ...process.env, ...env },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) =>
      resolvePromise({ code: code ?? -1, stdout, stderr, json: parseJson(stdout) }),
    );
  });
}
