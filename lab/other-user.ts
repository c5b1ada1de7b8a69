/**
 * Running the commands, and targets, as an unprivileged user (uid 65534
 * through setpriv), for the tests of what such a user may and may not do.
 *
 * That user must be able to read everything it runs: the command's sources
 * and node_modules (tsx transpiles them as that user), the target program.
 * A checkout in a folder other users cannot enter (a home directory with
 * mode 0700, a umask of 077) would make those tests fail for a reason that
 * has nothing to do with ulp; so when the checkout is not readable by
 * others, the commands run from a world-readable copy of what they need,
 * made once per test process and removed when it exits.
 */
import { execFileSync } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  realpathSync,
  rmSync,
  statSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, parse } from 'node:path';
import { runCommand, type Program, type Run } from './cli.js';
import { ROOT } from './root.js';

export const NOBODY = 65534;

/** What the commands need at run time, besides node_modules. */
const COMMAND_PARTS = [
  'bin',
  'common',
  'elf',
  'patches',
  'packer',
  'runtime',
  'trigger',
  'package.json',
  'tsconfig.json',
];

/** Whether a user who is neither the owner nor in the group can read `path` (every folder on the way searchable). */
export function othersCanRead(path: string): boolean {
  let p: string;
  try {
    p = realpathSync(path);
  } catch {
    return false;
  }
  const st = statSync(p);
  if ((st.mode & (st.isDirectory() ? 0o005 : 0o004)) !== (st.isDirectory() ? 0o005 : 0o004)) return false;
  for (let d = dirname(p); ; d = dirname(d)) {
    if ((statSync(d).mode & 0o001) === 0) return false;
    if (d === parse(d).root) return true;
  }
}

function checkoutReadable(root: string): boolean {
  return [
    join(root, 'bin', 'ulp-trigger.ts'),
    join(root, 'runtime', 'session.ts'),
    join(root, 'node_modules', 'tsx', 'package.json'),
    join(root, 'node_modules', 'koffi', 'package.json'),
  ].every(othersCanRead);
}

/** A world-readable copy of the commands' sources and node_modules (dereferenced), under the system's temporary folder. */
export function readableCopy(root = ROOT): string {
  const top = mkdtempSync(join(tmpdir(), 'ulp-readable-'));
  for (const part of COMMAND_PARTS)
    if (existsSync(join(root, part))) cpSync(join(root, part), join(top, part), { recursive: true });
  cpSync(realpathSync(join(root, 'node_modules')), join(top, 'node_modules'), {
    recursive: true,
    dereference: true,
  });
  execFileSync('chmod', ['-R', 'a+rX', top]);
  process.on('exit', () => rmSync(top, { recursive: true, force: true }));
  return top;
}

let readable: string | undefined;

/** Where another user can run the commands from: the checkout itself when others can read it, else a readable copy. */
export function readableCheckout(): string {
  return (readable ??= checkoutReadable(ROOT) ? ROOT : readableCopy(ROOT));
}

/** `file` copied into `dir` (created world-readable), readable and executable by every user; returns the copy. */
export function exposed(file: string, dir: string): string {
  mkdirSync(dir, { recursive: true, mode: 0o755 });
  chmodSync(dir, 0o755);
  const out = join(dir, basename(file));
  copyFileSync(file, out);
  chmodSync(out, 0o755);
  return out;
}

/** The setpriv prefix that runs a program as `uid` (its group too, no supplementary groups). */
export const asUser = (uid: number): string[] => [
  'setpriv',
  `--reuid=${uid}`,
  `--regid=${uid}`,
  '--clear-groups',
];

/**
 * Runs a command as `uid` from readableCheckout() (or `opts.root`), with HOME and TMPDIR in
 * `home` (a folder that user may write: tsx keeps its cache there).
 */
export function runCliAs(
  uid: number,
  program: Program,
  args: string[],
  home: string,
  opts: { timeoutMs?: number; root?: string } = {},
): Run & { signal: NodeJS.Signals | null } {
  const root = opts.root ?? readableCheckout();
  const [setpriv, ...prefix] = asUser(uid);
  const r = runCommand(
    setpriv!,
    [...prefix, process.execPath, '--import', 'tsx', join(root, 'bin', `${program}.ts`), ...args],
    { cwd: root, env: { HOME: home, TMPDIR: home }, timeoutMs: opts.timeoutMs ?? 120_000 },
  );
  return { code: r.code ?? -1, signal: r.signal, stdout: r.stdout, stderr: r.stderr, json: r.json };
}
