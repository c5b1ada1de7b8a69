/**
 * Runs the project's real commands as child processes and returns what a
 * user would see: exit code, stdout, stderr, and stdout parsed as JSON when
 * it is JSON.
 *
 * The commands run as plain JavaScript, as the package ships them: the
 * product's sources transpiled once per content (lab/transpiled.ts), which
 * starts each run about three times faster than tsx. ULP_RUNNER=tsx runs
 * bin/*.ts through tsx instead, ULP_RUNNER=dist the built dist/bin/*.js.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
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
  // What `npm run build` made (ulp-pack bundled, scripts/bundle.ts); it must be fresh.
  if (process.env.ULP_RUNNER === 'dist') return [join(ROOT, 'dist', 'bin', `${program}.js`), ...args];
  return [join(compiledProduct(), 'bin', `${program}.js`), ...args];
}

/** How a child process ended and what it printed; `code` is null when a signal (or the timeout) ended it. */
export interface Outcome {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  json: any;
  ms: number;
}

export interface RunOptions {
  env?: Record<string, string | undefined>;
  cwd?: string;
  /** Kills the command after this long (SIGTERM); its outcome then has a signal instead of a code. No limit when absent. */
  timeoutMs?: number;
  /** The most output kept per stream (default 64 MiB). */
  maxBuffer?: number;
}

/**
 * Runs `command argv` to its end, the one blocking runner of the lab: the
 * commands as this user (runCli), as another user (other-user.ts runCliAs),
 * and the soak's runners (soak/lib.ts makeRunner). SOURCE_DATE_EPOCH is
 * cleared so that a caller's reproducible-build setting does not leak into
 * the bundles' creation times; `opts.env` may set it again.
 */
export function runCommand(command: string, argv: string[], opts: RunOptions = {}): Outcome {
  const t0 = performance.now();
  const r = spawnSync(command, argv, {
    cwd: opts.cwd ?? ROOT,
    encoding: 'utf8',
    env: { ...process.env, SOURCE_DATE_EPOCH: undefined, ...opts.env },
    maxBuffer: opts.maxBuffer ?? 64 << 20,
    ...(opts.timeoutMs === undefined ? {} : { timeout: opts.timeoutMs }),
  });
  // The command's wall time, not our parsing of its output (the benchmarks report it).
  const ms = performance.now() - t0;
  // A timeout is an outcome (signal set), any other failure to run is the caller's problem.
  if (r.error && (r.error as NodeJS.ErrnoException).code !== 'ETIMEDOUT') throw r.error;
  return {
    code: r.status,
    signal: r.signal,
    stdout: r.stdout,
    stderr: r.stderr,
    json: parseJson(r.stdout),
    ms,
  };
}

/** Collects what a spawned child prints until it closes; kills it (SIGKILL) after `timeoutMs` when given. */
export function outcomeOf(child: ChildProcess, timeoutMs?: number): Promise<Outcome> {
  const t0 = performance.now();
  return new Promise((resolvePromise, reject) => {
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (d) => (stdout += d));
    child.stderr?.on('data', (d) => (stderr += d));
    const timer = timeoutMs === undefined ? undefined : setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolvePromise({ code, signal, stdout, stderr, json: parseJson(stdout), ms: performance.now() - t0 });
    });
  });
}

const asRun = (o: Outcome): Run => ({ code: o.code ?? -1, stdout: o.stdout, stderr: o.stderr, json: o.json });

export function runCli(program: Program, args: string[], env: Record<string, string | undefined> = {}): Run {
  return asRun(runCommand(process.execPath, cliArgs(program, args), { env }));
}

/** The same, without blocking the test's event loop (for runs that overlap with other work). */
export async function runCliAsync(
  program: Program,
  args: string[],
  env: Record<string, string | undefined> = {},
): Promise<Run> {
  // Unlike runCli, SOURCE_DATE_EPOCH passes through as the caller's environment has it.
  const child = spawn(process.execPath, cliArgs(program, args), {
    cwd: ROOT,
    env: { ...process.env, ...env },
  });
  return asRun(await outcomeOf(child));
}
