/**
 * The command line of a script (scripts/*.ts): `--help` prints the script's
 * own header comment, which is where each script documents its usage and
 * options, and exits 0; an option the script does not take, an option
 * without its value or an operand too many exits 64 with the reason, before
 * the script starts anything (a benchmark builds fixtures and starts
 * processes). The scripts read the values themselves (lab/bench/common.ts
 * `arg`, `flag`); this only decides whether the command line is one they take.
 */
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface ScriptOptions {
  /** Options followed by a value (`--runs 5`). */
  values?: readonly string[];
  /** Options that stand alone (`--profile`). */
  flags?: readonly string[];
  /** How many operands (words that are not options) it takes. */
  operands?: number;
}

export type ArgsVerdict = { kind: 'run' } | { kind: 'help' } | { kind: 'usage'; message: string };

export const USAGE_EXIT = 64;

/** What a command line asks for. Pure. */
export function checkArgs(argv: readonly string[], opts: ScriptOptions): ArgsVerdict {
  if (argv.includes('--help') || argv.includes('-h')) return { kind: 'help' };
  const values = new Set(opts.values ?? []);
  const flags = new Set(opts.flags ?? []);
  let operands = 0;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (values.has(a)) {
      if (i + 1 >= argv.length || argv[i + 1]!.startsWith('--'))
        return { kind: 'usage', message: `${a} needs a value` };
      i++;
    } else if (flags.has(a)) continue;
    else if (a.startsWith('-') && a !== '-') return { kind: 'usage', message: `unknown option ${a}` };
    else if (++operands > (opts.operands ?? 0))
      return {
        kind: 'usage',
        message: opts.operands
          ? `unexpected argument ${a} (at most ${opts.operands})`
          : `unexpected argument ${a}`,
      };
  }
  return { kind: 'run' };
}

/** The leading /** … *\/ comment of a source file, as plain text. Pure. */
export function headerComment(source: string): string {
  const m = /^\s*\/\*\*([\s\S]*?)\*\//.exec(source);
  if (!m) return '';
  return (
    m[1]!
      .split('\n')
      .map((l) => l.replace(/^\s*\* ?/, ''))
      .join('\n')
      .trim() + '\n'
  );
}

/**
 * Applies checkArgs to this process's command line on behalf of the script
 * at `scriptUrl` (its import.meta.url): prints its header and exits 0 for
 * --help, prints the reason and exits 64 for a command line it does not
 * take, and returns otherwise.
 */
export function handleArgs(scriptUrl: string, opts: ScriptOptions, argv = process.argv.slice(2)): void {
  const verdict = checkArgs(argv, opts);
  if (verdict.kind === 'run') return;
  const file = fileURLToPath(scriptUrl);
  if (verdict.kind === 'help') {
    process.stdout.write(headerComment(readFileSync(file, 'utf8')));
    process.exit(0);
  }
  process.stderr.write(`${basename(file)}: ${verdict.message} (--help lists the options)\n`);
  process.exit(USAGE_EXIT);
}
