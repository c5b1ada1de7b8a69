/**
 * What one timed ulp-pack run of scripts/bench-pack.ts amounts to. Exit 0 is
 * a pack (or a --check) that went through. Exit 2 is ulp-pack refusing the
 * pair (incompatible, or a downgrade): a complete analysis that ends in a
 * verdict, so its time is still a measurement of --check, but -o wrote no
 * bundle and its time is not a pack's: the benchmark reports the refusal
 * with the reasons ulp-pack gave, instead of dying on the first refused
 * library (libLLVM with one changed byte). Anything else (a bug, bad input,
 * a signal) means the benchmark measured nothing and stops, saying why.
 * Pure: the script runs the command and hands over what it printed.
 */

export type PackVerdict = { refused: false } | { refused: true; reasons: string[] };

export interface PackRunOutput {
  /** The exit status, null when a signal ended the run. */
  code: number | null;
  signal?: string | null;
  /** ulp-pack's text output (its report), '' when it was not kept. */
  stdout: string;
  /** ulp-pack's stderr, with /usr/bin/time's lines at the end when it ran under it. */
  stderr: string;
}

/** The refusal's reasons: the update direction's "refused because:" findings, else ulp-pack's error or refusal lines. */
function reasonsOf(out: PackRunOutput): string[] {
  const lines = out.stdout.split('\n');
  const start = lines.findIndex((l) => l === '  refused because:');
  const findings: string[] = [];
  if (start >= 0) {
    for (const line of lines.slice(start + 1)) {
      if (!line.startsWith('    ')) break;
      findings.push(line.trim());
    }
  }
  if (findings.length > 0) return findings;
  const said = out.stderr
    .split('\n')
    .filter((l) => /^ulp-pack: (error|refused)\b/.test(l))
    .map((l) => l.replace(/^ulp-pack: /, ''));
  return said.length > 0 ? said : ['exit 2, no reason printed'];
}

/** The verdict of one run of `command` (for messages); throws when the run measured nothing. */
export function judgePackRun(command: string, out: PackRunOutput): PackVerdict {
  if (out.code === 0) return { refused: false };
  if (out.code === 2) return { refused: true, reasons: reasonsOf(out) };
  const how = out.code === null ? `was killed by ${out.signal ?? 'a signal'}` : `exited ${out.code}`;
  throw new Error(`${command} ${how}: ${out.stderr.slice(-500)}`);
}
