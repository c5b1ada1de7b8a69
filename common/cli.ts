/**
 * Output conventions shared by the commands (ulp-pack, ulp-trigger): how an
 * error is shown, how JSON is printed, the progress line, usage errors from
 * commander, and the exit-code numbers of docs/CLI.md. Which number an error
 * code gets comes from the one registry (common/error-codes.ts), the same for
 * both commands.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CommanderError, type Command } from 'commander';
import { exitClassOf, type ErrorCode } from './error-codes.js';
import { UlpError, isUlpError } from './errors.js';

export const ExitCode = {
  OK: 0,
  INTERNAL: 1,
  REFUSED: 2,
  INVALID_INPUT: 3,
  TARGET: 4,
  IO: 5,
  ROLLED_BACK: 6,
  /** ulp-trigger --outdated: some process runs a replaced library build that is not patched. */
  OUTDATED: 7,
  /** ulp-trigger --all: stopped by SIGINT/SIGTERM/SIGHUP between processes; some were not attempted. */
  INTERRUPTED: 8,
  /** ulp-trigger --all (not root): some process in scope could not be inspected, and --allow-partial was not given. */
  PARTIAL: 9,
  USAGE: 64,
} as const;
export type ExitCodeValue = (typeof ExitCode)[keyof typeof ExitCode];

/** Anything thrown becomes a UlpError; a non-UlpError is a bug and says so. */
export function asUlpError(err: unknown): UlpError {
  if (isUlpError(err)) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new UlpError(
    'INTERNAL_ERROR',
    `internal error: ${message}`,
    'This is a bug: please report it with the command line and this output.',
    undefined,
    { cause: err },
  );
}

/** The exit code of an error code, from the registry; a code outside it (read back from JSON) is an internal error. */
export function exitCodeOf(code: string): ExitCodeValue {
  return ExitCode[exitClassOf(code)];
}

/** The exit code of an error. */
export function exitCodeFor(err: UlpError): ExitCodeValue {
  return exitCodeOf(err.code);
}

/** JSON.stringify replacer: bigints as 0x-hex strings, Buffers as hex. */
export function jsonReplacer(_key: string, value: unknown): unknown {
  if (typeof value === 'bigint')
    return value < 0n ? '-0x' + (-value).toString(16) : '0x' + value.toString(16);
  if (
    value &&
    typeof value === 'object' &&
    (value as { type?: unknown }).type === 'Buffer' &&
    Array.isArray((value as { data?: unknown }).data)
  ) {
    return Buffer.from((value as { data: number[] }).data).toString('hex');
  }
  return value;
}

export function printJson(value: unknown, out: NodeJS.WritableStream = process.stdout): void {
  out.write(JSON.stringify(value, jsonReplacer, 2) + '\n');
}

/**
 * Text form: one line with code and message, one with the hint. With --json
 * the same facts go to stdout as `{ "error": {...} }` so that a script reads a
 * single stream.
 */
export function reportError(program: string, err: UlpError, json: boolean): void {
  if (json) {
    printJson({ error: err.toJSON() });
    return;
  }
  const lines = [`${program}: error [${err.code}]: ${err.message}`];
  if (err.hint) lines.push(`  hint: ${err.hint}`);
  if (err.code === 'INTERNAL_ERROR' && err.cause instanceof Error && err.cause.stack)
    lines.push(err.cause.stack);
  process.stderr.write(lines.join('\n') + '\n');
}

export interface Progress {
  /** Replaces the current progress line. */
  update(message: string): void;
  /** Clears the line; call before printing results. */
  done(): void;
}

/** A single rewritten status line on stderr, only when stderr is a terminal (never in logs or pipes). */
export function progress(program: string, stream: NodeJS.WriteStream = process.stderr): Progress {
  if (!stream.isTTY) return { update() {}, done() {} };
  let shown = false;
  return {
    update(message) {
      const width = Math.max(20, (stream.columns ?? 80) - 1);
      stream.write('\r\x1b[K' + `${program}: ${message}`.slice(0, width));
      shown = true;
    },
    done() {
      if (shown) stream.write('\r\x1b[K');
      shown = false;
    },
  };
}

/**
 * Runs commander with exitOverride so that no library code calls
 * process.exit: returns undefined when the command line was parsed, or the
 * exit code when commander already answered (help, version: 0). Commander's
 * own complaints (unknown option, missing value) become `usageCode` errors,
 * shown like every other error (program name, code, hint, --json), instead
 * of the bare line commander prints.
 */
export async function parseCommandLine(
  program: Command,
  argv: string[],
  usageCode: ErrorCode,
): Promise<ExitCodeValue | undefined> {
  program.exitOverride();
  program.configureOutput({ outputError: () => {} });
  try {
    await program.parseAsync(argv, { from: 'user' });
    return undefined;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (
        err.code === 'commander.helpDisplayed' ||
        err.code === 'commander.version' ||
        err.code === 'commander.help'
      )
        return ExitCode.OK;
      throw new UlpError(
        usageCode,
        err.message.replace(/^error: /, '').trim(),
        `Run ${program.name()} --help.`,
        { commander: err.code },
      );
    }
    throw err;
  }
}

const guarded = new WeakSet<NodeJS.WritableStream>();

/**
 * A reader that goes away (`ulp-pack --help | head -1`) makes the next write
 * to its pipe fail with EPIPE, which Node reports as an 'error' event on the
 * stream: unhandled, it killed the command with a stack trace, in the middle
 * of whatever it was doing. Output nobody reads any more is dropped instead:
 * the command finishes what it started (an apply is never cut short because
 * its report cannot be delivered) and exits with its own code (docs/CLI.md).
 * Any other write error stays fatal, as before. Idempotent per stream.
 */
export function dropOutputToClosedPipes(
  streams: NodeJS.WritableStream[] = [process.stdout, process.stderr],
): void {
  for (const stream of streams) {
    if (guarded.has(stream)) continue;
    guarded.add(stream);
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EPIPE') return;
      throw err;
    });
  }
}

/**
 * The whole life of a command: parse `argv` with `program`, run it, and turn
 * any error into its report and its exit code (from the registry).
 * Sets process.exitCode; never calls process.exit.
 */
export async function runCommand<O extends { json?: boolean }>(
  name: string,
  program: Command,
  argv: string[],
  run: (args: string[], opts: O) => ExitCodeValue | Promise<ExitCodeValue>,
  usageCode: ErrorCode,
): Promise<void> {
  dropOutputToClosedPipes();
  let json = argv.includes('--json');
  let code: ExitCodeValue;
  try {
    const parsed = await parseCommandLine(program, argv, usageCode);
    if (parsed !== undefined) {
      process.exitCode = parsed;
      return;
    }
    const opts = program.opts<O>();
    json = !!opts.json;
    code = await run(program.args, opts);
  } catch (err) {
    const e = asUlpError(err);
    reportError(name, e, json);
    code = exitCodeFor(e);
  }
  process.exitCode = code;
}

let cachedVersion: string | undefined;

/** What -V prints: the program's name and the package version, as other tools do ("ulp-trigger 0.1.0"). */
export function versionLine(program: string): string {
  return `${program} ${toolVersion()}`;
}

/** The package version, found by walking up from this file (works from sources and from dist/). */
export function toolVersion(): string {
  if (cachedVersion) return cachedVersion;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as {
        name?: string;
        version?: string;
      };
      if (pkg.name === 'ulp' && pkg.version) return (cachedVersion = pkg.version);
    } catch {
      // not here: keep walking up
    }
    dir = dirname(dir);
  }
  return (cachedVersion = '0.0.0');
}
