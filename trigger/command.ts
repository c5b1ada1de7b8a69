/**
 * The ulp-trigger command: options and output; exit codes come from the
 * error registry (common/error-codes.ts, docs/CLI.md). The work is in apply.ts,
 * status.ts and all.ts; this file only wires them to the command line.
 */
import { readKeyFile } from '../common/files.js';
import { Command } from 'commander';
import { ExitCode, exitCodeOf, printJson, progress, runCommand, versionLine, type ExitCodeValue } from '../common/cli.js';
import { UlpError } from '../common/errors.js';
import { loadPublicKey, readBundleFile, type Bundle } from '../patches/index.js';
import { runAll } from './all.js';
import { runOne } from './apply.js';
import { findOutdated } from './outdated.js';
import { outdatedOutcome } from './outdated-model.js';
import { renderOutdated } from './outdated-render.js';
import { renderAll, renderRun, renderStatus } from './render.js';
import { readStatus } from './status.js';

const PROGRAM = 'ulp-trigger';

interface Options {
  revert?: boolean;
  dryRun?: boolean;
  all?: boolean;
  status?: boolean;
  outdated?: boolean;
  json?: boolean;
  key?: string;
  allowUnverified?: boolean;
  allowAliasing?: boolean;
  stopTimeout?: string;
}

function usage(message: string, hint = `Run ${PROGRAM} --help.`): UlpError {
  return new UlpError('TRIGGER_USAGE', message, hint);
}

function buildProgram(): Command {
  return new Command(PROGRAM)
    .description('Apply a patch bundle made by ulp-pack to running processes, revert it, or show what is live. The process needs no preparation; it is paused only for the final switch.')
    .usage('[options] PID FIX.ulp\n       ulp-trigger --all [options] FIX.ulp\n       ulp-trigger --status PID\n       ulp-trigger --outdated [PID...]')
    .argument('[args...]', 'PID and FIX.ulp; FIX.ulp alone with --all; PID alone with --status; PIDs (default all) with --outdated')
    .option('--revert', "switch back to the bundle's old build (its reverse patch)")
    .option('--dry-run', 'do everything up to the switch (checks, symbol resolution, plan) and change nothing')
    .option('--all', "every process that has one of the bundle's builds loaded")
    .option('--status', 'show the live build of each patched library, its patches, and references still pointing at old code')
    .option('--outdated', 'list the processes that run a shared library replaced on disk (after a package upgrade): the running and on-disk builds, and whether each is patched, patchable or refused; reads only, attaches to nothing')
    .option('--json', 'print the result (or the error) as JSON on stdout')
    .option('--key <pubkey>', 'require a valid Ed25519 signature by this public key (PEM)')
    .option('--allow-unverified', 'accept a signed bundle without checking its signature (when no --key is at hand)')
    .option('--allow-aliasing', "stage a build even where the bundle's data-reference map does not cover its code (older bundles, uncovered ranges): the library's data is then reached through a second address from there")
    .option('--stop-timeout <ms>', 'how long a thread may take to stop before the trigger gives up', '2000')
    .version(versionLine(PROGRAM), '-V, --version', 'print the version')
    .helpOption('-h, --help', 'show this help')
    .addHelpText(
      'after',
      `
Exit codes: 0 done (also "already applied" / "runs the new build already" /
"not applied"), 2 refused (wrong build, library not loaded, incompatible,
glibc, unresolvable symbol, an export in use that the target lacks), 3 invalid
bundle (damaged, tampered, bad signature), 4 process problem (no such process,
permission denied, already traced, exited), 5 file unreadable, 6 the switch
failed and was rolled back, 64 usage. With --all: the exit code of the first
process that failed. With --outdated: 0 nothing left to do, 7 some process
runs a replaced library that is not patched, 4 nothing found but some
processes could not be inspected. See docs/CLI.md.`,
    );
}

function pidOf(text: string | undefined): number {
  if (!isPid(text)) throw usage(`"${text ?? ''}" is not a process id`);
  return Number(text);
}

function loadBundle(path: string, opts: Options): Bundle {
  const publicKey = opts.key ? loadPublicKey(readKeyFile(opts.key, 'TRIGGER_KEY_UNREADABLE')) : undefined;
  const bundle = readBundleFile(path, publicKey ? { publicKey } : {});
  if (bundle.signature.state === 'unverified' && !opts.allowUnverified) {
    throw new UlpError('TRIGGER_SIGNATURE_UNVERIFIED', `${path} is signed (key ${bundle.signature.keyId}) but no public key was given to verify it`, 'Pass --key PUB.pem to verify the signature, or --allow-unverified to apply it unchecked.', { keyId: bundle.signature.keyId });
  }
  return bundle;
}

function validate(args: string[], opts: Options): void {
  const modes = [opts.all, opts.status, opts.outdated].filter(Boolean).length;
  if (modes > 1) throw usage('--all, --status and --outdated cannot be combined');
  if (opts.status || opts.outdated) {
    const mode = opts.status ? '--status' : '--outdated';
    if (opts.status && args.length !== 1) throw usage('--status takes one PID');
    for (const o of ['revert', 'dryRun', 'key', 'allowUnverified', 'allowAliasing'] as const) {
      if (opts[o]) throw usage(`--${{ dryRun: 'dry-run', allowUnverified: 'allow-unverified', allowAliasing: 'allow-aliasing' }[o as string] ?? o} has no meaning with ${mode}`);
    }
    for (const a of args) pidOf(a);
    return;
  }
  if (opts.all && args.length !== 1) throw usage('--all takes one argument: the bundle');
  if (!opts.all && args.length !== 2) throw usage(`expected PID and FIX.ulp, got ${args.length} ${args.length === 1 ? 'argument' : 'arguments'}`);
  if (!opts.all && !isPid(args[0]) && isPid(args[1])) {
    throw usage(`"${args[0]}" is not a process id: the PID comes first`, `Did you mean: ${PROGRAM} ${args[1]} ${args[0]}${opts.revert ? ' --revert' : ''}${opts.dryRun ? ' --dry-run' : ''}`);
  }
  if (!/^\d+$/.test(opts.stopTimeout ?? '2000')) throw usage('--stop-timeout takes a number of milliseconds');
}

const isPid = (text: string | undefined) => text !== undefined && /^\d+$/.test(text) && Number(text) > 0 && Number(text) <= 2 ** 22;

function run(args: string[], opts: Options): ExitCodeValue {
  if (opts.outdated) {
    const line = progress(PROGRAM);
    try {
      const report = findOutdated({ ...(args.length ? { pids: args.map(pidOf) } : {}), onProcess: (i, n) => line.update(`process ${i + 1} of ${n}`) });
      line.done();
      if (opts.json) printJson(report);
      else process.stdout.write(renderOutdated(report));
      return { current: ExitCode.OK, outdated: ExitCode.OUTDATED, uninspected: ExitCode.TARGET }[outdatedOutcome(report)];
    } finally {
      line.done();
    }
  }
  if (opts.status) {
    const st = readStatus(pidOf(args[0]));
    if (opts.json) printJson(st);
    else process.stdout.write(renderStatus(st));
    return ExitCode.OK;
  }
  const which = opts.revert ? 'reverse' : 'forward';
  const session = { stopTimeoutMs: Number(opts.stopTimeout ?? 2000) };
  const line = progress(PROGRAM);
  try {
    if (opts.all) {
      const bundle = loadBundle(args[0]!, opts);
      const result = runAll(bundle, { which, dryRun: !!opts.dryRun, session, allowAliasing: !!opts.allowAliasing, onProcess: (i, n) => line.update(`process ${i + 1} of ${n}`) });
      line.done();
      if (opts.json) printJson(result);
      else process.stdout.write(renderAll(result));
      const failed = result.processes.find((p) => !p.ok);
      return failed && !failed.ok ? exitCodeOf(failed.error.code) : ExitCode.OK;
    }
    const pid = pidOf(args[0]);
    const bundle = loadBundle(args[1]!, opts);
    const result = runOne(pid, bundle, { which, dryRun: !!opts.dryRun, session, allowAliasing: !!opts.allowAliasing, progress: line.update });
    line.done();
    if (opts.json) printJson(result);
    else process.stdout.write(renderRun(result));
    return ExitCode.OK;
  } finally {
    line.done();
  }
}

/** Runs ulp-trigger with `argv` (without node and script); sets process.exitCode. */
export async function main(argv: string[]): Promise<void> {
  await runCommand<Options>(PROGRAM, buildProgram(), argv, (args, opts) => {
    validate(args, opts);
    return run(args, opts);
  }, 'TRIGGER_USAGE');
}
