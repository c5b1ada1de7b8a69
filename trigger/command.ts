/**
 * The ulp-trigger command: options and output; exit codes come from the
 * error registry (common/error-codes.ts, docs/CLI.md). The work is in apply.ts,
 * status.ts and all.ts; this file only wires them to the command line.
 */
import { readKeyFile } from '../common/files.js';
import { Command } from 'commander';
import {
  ExitCode,
  exitCodeOf,
  printJson,
  reportError,
  progress,
  runCommand,
  versionLine,
  type ExitCodeValue,
  type Progress,
} from '../common/cli.js';
import { UlpError } from '../common/errors.js';
import { loadPublicKey, readBundleFile, type Bundle } from '../patches/index.js';
import { readUsers, runAll } from './all.js';
import { COMM_MAX, resolveUser, unitName, type Scope } from './scope.js';
import { runOne, type RunOptions } from './apply.js';
import { findOutdated } from './outdated.js';
import { outdatedOutcome } from './outdated-model.js';
import { renderOutdated } from './outdated-render.js';
import {
  packageText,
  renderAllLine,
  renderAllSummary,
  renderMatches,
  renderRun,
  renderStatus,
} from './render.js';
import { readStatus } from './status.js';
import { applyOutdated } from './upgrade.js';
import { bundleStoreDir, DEFAULT_BUNDLES_DIR } from '../patches/store.js';
import { readBundleUnderPolicy, readPolicy } from './policy.js';
import { allLines, logLine, toSyslog, worthLogging } from './syslog.js';
import { resultLine } from './upgrade-model.js';
import { readComm } from '../runtime/procfs.js';
import { renderUpgrade } from './upgrade-model.js';

const PROGRAM = 'ulp-trigger';
/**
 * Without --jobs, --all decides from the fleet and the machine (all.ts
 * autoJobs): 2 on two CPUs or more for 32 processes or more, else 1.
 */
const DEFAULT_JOBS = 'auto';

interface Options {
  revert?: boolean;
  dryRun?: boolean;
  all?: boolean;
  status?: boolean;
  outdated?: boolean;
  apply?: boolean;
  bundlesDir?: string;
  json?: boolean;
  key?: string;
  allowUnverified?: boolean;
  allowAliasing?: boolean;
  stopTimeout?: string;
  pid?: string[];
  exclude?: string[];
  user?: string[];
  comm?: string[];
  unit?: string[];
  allowPartial?: boolean;
  jobs?: string;
}

function usage(message: string, hint = `Run ${PROGRAM} --help.`): UlpError {
  return new UlpError('TRIGGER_USAGE', message, hint);
}

function buildProgram(): Command {
  return new Command(PROGRAM)
    .description(
      'Apply a patch bundle made by ulp-pack to running processes, revert it, or show what is live. The process needs no preparation; it is paused only for the final switch.',
    )
    .usage(
      '[options] PID FIX.ulp\n       ulp-trigger --all [options] FIX.ulp\n       ulp-trigger --status PID\n       ulp-trigger --outdated [PID...]\n       ulp-trigger --outdated --apply [--bundles-dir DIR] [PID...]',
    )
    .argument(
      '[args...]',
      'PID and FIX.ulp; FIX.ulp alone with --all; PID alone with --status; PIDs (default all) with --outdated',
    )
    .option('--revert', "switch back to the bundle's old build (its reverse patch)")
    .option(
      '--dry-run',
      'do everything up to the switch (checks, symbol resolution, plan) and change nothing',
    )
    .option('--all', "every process that has one of the bundle's builds loaded")
    .option(
      '--pid <pid>',
      "with --all: only this process (repeat for several), e.g. one service's master and workers",
      (v: string, acc: string[]) => [...acc, v],
      [] as string[],
    )
    .option(
      '--exclude <pid>',
      'with --all: leave this process alone (repeat for several)',
      (v: string, acc: string[]) => [...acc, v],
      [] as string[],
    )
    .option(
      '--user <name|uid>',
      'with --all: only processes whose real user is this one (repeat for several)',
      (v: string, acc: string[]) => [...acc, v],
      [] as string[],
    )
    .option(
      '--comm <name>',
      'with --all: only processes with this command name, exactly as in /proc/PID/comm (repeat for several)',
      (v: string, acc: string[]) => [...acc, v],
      [] as string[],
    )
    .option(
      '--unit <unit>',
      'with --all: only processes of this systemd unit, from their cgroup; "nginx" means nginx.service (repeat for several)',
      (v: string, acc: string[]) => [...acc, v],
      [] as string[],
    )
    .option(
      '--allow-partial',
      'with --all, not as root: exit 0 even when some processes could not be inspected (they may run the library)',
    )
    .option(
      '--status',
      'show the live build of each patched library, its patches, and references still pointing at old code',
    )
    .option(
      '--outdated',
      'list the processes that run a shared library replaced on disk (after a package upgrade): the running and on-disk builds, and whether each is patched, patchable or refused; reads only, attaches to nothing',
    )
    .option(
      '--apply',
      'with --outdated: pack each replaced library once per (running, on-disk) build pair, keep the bundle in the bundles folder and apply it to every process running that build; prints what still needs a restart',
    )
    .option(
      '--bundles-dir <dir>',
      `with --outdated --apply: where the bundles are kept (default $ULP_BUNDLES_DIR, else ${DEFAULT_BUNDLES_DIR})`,
    )
    .option('--json', 'print the result (or the error) as JSON on stdout')
    .option('--key <pubkey>', 'require a valid Ed25519 signature by this public key (PEM)')
    .option(
      '--allow-unverified',
      'accept a signed bundle without checking its signature (when no --key is at hand)',
    )
    .option(
      '--allow-aliasing',
      "stage a build even where the bundle's data-reference map does not cover its code (older bundles, uncovered ranges): the library's data is then reached through a second address from there",
    )
    .option('--stop-timeout <ms>', 'how long a thread may take to stop before the trigger gives up', '2000')
    .option(
      '--jobs <n>',
      `with --all: how many processes are worked on at once, each by its own thread (default: 2 for 32 processes or more on 2 CPUs or more, else 1)`,
    )
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
process that failed, 9 when run as another user than root some processes
could not be inspected (unless --allow-partial), 8 when SIGINT, SIGTERM or SIGHUP stopped it (after the process at
hand; the rest are listed as not attempted). With --outdated: 0 nothing left to do, 7 some process
runs a replaced library that is not patched, 4 nothing found but some
processes could not be inspected; with --outdated --apply the same, counted
after the apply. See docs/CLI.md.`,
    );
}

function pidOf(text: string | undefined): number {
  if (!isPid(text)) throw usage(`"${text ?? ''}" is not a process id`);
  return Number(text);
}

function loadBundle(path: string, opts: Options): Bundle {
  const publicKey = opts.key ? loadPublicKey(readKeyFile(opts.key, 'TRIGGER_KEY_UNREADABLE')) : undefined;
  // The host's policy first: with it, only a bundle signed by a trusted key is applied, whatever the options say.
  const policy = readPolicy();
  if (policy?.requireSignature) {
    if (opts.allowUnverified)
      throw new UlpError(
        'TRIGGER_POLICY_UNSIGNED',
        `--allow-unverified is not allowed: the host's policy (${policy.path}) requires a verified signature`,
        "Drop --allow-unverified; the policy's trusted keys verify the bundle.",
        { policy: policy.path },
      );
    const trusted = readBundleUnderPolicy(path, policy);
    // A --key given as well must be the signer too.
    if (publicKey) readBundleFile(path, { publicKey });
    return trusted;
  }
  const bundle = readBundleFile(path, publicKey ? { publicKey } : {});
  if (bundle.signature.state === 'unverified' && !opts.allowUnverified) {
    throw new UlpError(
      'TRIGGER_SIGNATURE_UNVERIFIED',
      `${path} is signed (key ${bundle.signature.keyId}) but no public key was given to verify it`,
      'Pass --key PUB.pem to verify the signature, or --allow-unverified to apply it unchecked.',
      { keyId: bundle.signature.keyId },
    );
  }
  return bundle;
}

function validate(args: string[], opts: Options): void {
  const modes = [opts.all, opts.status, opts.outdated].filter(Boolean).length;
  if (modes > 1) throw usage('--all, --status and --outdated cannot be combined');
  if (opts.pid?.length && !opts.all)
    throw usage('--pid limits --all to some processes: without --all, give the PID as the first argument');
  for (const p of opts.pid ?? []) pidOf(p);
  for (const o of ['exclude', 'user', 'comm', 'unit'] as const)
    if (opts[o]?.length && !opts.all)
      throw usage(`--${o} limits --all to some processes: it has no meaning without --all`);
  if (opts.allowPartial && !opts.all) throw usage('--allow-partial goes with --all');
  for (const p of opts.exclude ?? []) pidOf(p);
  for (const c of opts.comm ?? []) {
    if (c === '' || Buffer.byteLength(c) > COMM_MAX)
      throw usage(
        `--comm "${c}" can never match: a command name is 1 to ${COMM_MAX} bytes (the kernel cuts longer ones)`,
        `Give the name as /proc/PID/comm shows it, e.g. "${c.slice(0, COMM_MAX)}".`,
      );
  }
  for (const u of opts.unit ?? [])
    if (!/^[\w:.@\\-]+$/.test(u)) throw usage(`--unit "${u}" is not a systemd unit name`);
  if (opts.jobs !== undefined && !opts.all) throw usage('--jobs has no meaning without --all');
  if (opts.apply && !opts.outdated)
    throw usage('--apply goes with --outdated (to apply one bundle, give PID and FIX.ulp)');
  if (opts.bundlesDir !== undefined && !opts.apply) throw usage('--bundles-dir goes with --outdated --apply');
  if (opts.status || opts.outdated) {
    const mode = opts.status ? '--status' : '--outdated';
    if (opts.status && args.length !== 1) throw usage('--status takes one PID');
    for (const o of ['revert', 'dryRun', 'key', 'allowUnverified', 'allowAliasing'] as const) {
      if (opts[o])
        throw usage(
          `--${{ dryRun: 'dry-run', allowUnverified: 'allow-unverified', allowAliasing: 'allow-aliasing' }[o as string] ?? o} has no meaning with ${mode}`,
        );
    }
    for (const a of args) pidOf(a);
    return;
  }
  if (opts.all && args.length !== 1) throw usage('--all takes one argument: the bundle');
  if (!opts.all && args.length !== 2)
    throw usage(
      `expected PID and FIX.ulp, got ${args.length} ${args.length === 1 ? 'argument' : 'arguments'}`,
    );
  if (!opts.all && !isPid(args[0]) && isPid(args[1])) {
    throw usage(
      `"${args[0]}" is not a process id: the PID comes first`,
      `Did you mean: ${PROGRAM} ${args[1]} ${args[0]}${opts.revert ? ' --revert' : ''}${opts.dryRun ? ' --dry-run' : ''}`,
    );
  }
  if (!/^\d+$/.test(opts.stopTimeout ?? '2000')) throw usage('--stop-timeout takes a number of milliseconds');
  if (
    opts.jobs !== undefined &&
    !(/^\d+$/.test(opts.jobs) && Number(opts.jobs) >= 1 && Number(opts.jobs) <= 64)
  )
    throw usage('--jobs takes a number of processes from 1 to 64');
}

const isPid = (text: string | undefined) =>
  text !== undefined && /^\d+$/.test(text) && Number(text) > 0 && Number(text) <= 2 ** 22;

async function run(args: string[], opts: Options): Promise<ExitCodeValue> {
  if (opts.outdated && opts.apply) {
    const line = progress(PROGRAM);
    try {
      const bundlesDir = opts.bundlesDir ?? bundleStoreDir();
      const result = await applyOutdated({
        ...(args.length ? { pids: args.map(pidOf) } : {}),
        bundlesDir,
        session: { stopTimeoutMs: Number(opts.stopTimeout ?? 2000) },
        onStep: line.update,
      });
      line.done();
      toSyslog(result.processes.map((p) => resultLine(p).replace(/^ULP-RESULT: /, 'outdated-apply ')));
      if (opts.json) printJson(result);
      else process.stdout.write(renderUpgrade(result));
      return { current: ExitCode.OK, outdated: ExitCode.OUTDATED, uninspected: ExitCode.TARGET }[
        outdatedOutcome(result.after)
      ];
    } finally {
      line.done();
    }
  }
  if (opts.outdated) {
    const line = progress(PROGRAM);
    try {
      const report = findOutdated({
        ...(args.length ? { pids: args.map(pidOf) } : {}),
        onProcess: (i, n) => line.update(`process ${i + 1} of ${n}`),
      });
      line.done();
      if (opts.json) printJson(report);
      else process.stdout.write(renderOutdated(report));
      return { current: ExitCode.OK, outdated: ExitCode.OUTDATED, uninspected: ExitCode.TARGET }[
        outdatedOutcome(report)
      ];
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
    // The scope first: an unknown --user is a usage error whatever the bundle.
    if (opts.all)
      return await runAllCommand(
        scopeOf(opts),
        loadBundle(args[0]!, opts),
        opts,
        { which, dryRun: !!opts.dryRun, session, allowAliasing: !!opts.allowAliasing },
        line,
      );
    const pid = pidOf(args[0]);
    const bundle = loadBundle(args[1]!, opts);
    const m = bundle.manifest;
    const ids =
      which === 'forward'
        ? { from: m.builds.old.buildId, to: m.builds.new.buildId, patchId: m.patchId }
        : { from: m.builds.new.buildId, to: m.builds.old.buildId, patchId: m.patchId };
    const comm = readComm(pid);
    let result;
    try {
      result = runOne(pid, bundle, {
        which,
        dryRun: !!opts.dryRun,
        session,
        allowAliasing: !!opts.allowAliasing,
        progress: line.update,
      });
    } catch (e) {
      if (!opts.dryRun && e instanceof UlpError)
        toSyslog([logLine(which, pid, comm, m.soname, { error: { code: e.code, message: e.message } }, ids)]);
      throw e;
    }
    if (worthLogging(result.outcome)) toSyslog([logLine(which, pid, comm, m.soname, { result }, ids)]);
    line.done();
    if (opts.json) printJson(result);
    else process.stdout.write(renderRun(result));
    return ExitCode.OK;
  } finally {
    line.done();
  }
}

/**
 * `--all`: text output prints each process's line as it finishes (also into
 * a pipe or a log); --json prints one document at the end. SIGINT,
 * SIGTERM and SIGHUP (a closed terminal) stop the run after the process at hand (never half done) with the
 * summary of what was and was not done, and exit code 8.
 */
async function runAllCommand(
  scope: Scope,
  bundle: Bundle,
  opts: Options,
  runOpts: RunOptions,
  line: Progress,
): Promise<ExitCodeValue> {
  let stopSignal: string | undefined;
  const onSignal = (sig: NodeJS.Signals) => {
    stopSignal ??= sig;
  };
  // SIGHUP too: left to the sessions' hold (runtime/signal-hold.ts), it would end the process between two
  // processes without a summary, and with --jobs while a worker is in the middle of one.
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const sig of signals) process.on(sig, onSignal);
  try {
    const pkg = bundle.manifest.package;
    if (!opts.json && pkg) process.stdout.write(packageText(pkg) + '\n');
    const result = await runAll(bundle, {
      ...runOpts,
      jobs: opts.jobs === undefined ? DEFAULT_JOBS : Number(opts.jobs),
      ...(opts.pid?.length ? { among: opts.pid.map(pidOf) } : {}),
      scope,
      ...(runOpts.dryRun && !opts.json ? { onMatches: (m) => process.stdout.write(renderMatches(m)) } : {}),
      stopRequested: () => stopSignal,
      onProcess: (i, n) =>
        line.update(
          `process ${i + 1} of ${n}${stopSignal ? ` (${stopSignal}: stopping after this one)` : ''}`,
        ),
      onResult: (p) => {
        if (opts.json) return;
        line.done();
        process.stdout.write(renderAllLine(p));
      },
    });
    line.done();
    if (!runOpts.dryRun)
      toSyslog(
        allLines(
          runOpts.which,
          result.soname,
          { from: result.fromBuildId, to: result.toBuildId, patchId: result.patchId },
          result.processes,
        ),
      );
    if (opts.json) printJson(result);
    else process.stdout.write(renderAllSummary(result));
    if (result.interrupted) return exitCodeOf('TRIGGER_INTERRUPTED');
    const failed = result.processes.find((p) => !p.ok);
    if (failed && !failed.ok) return exitCodeOf(failed.error.code);
    // Root's uninspectable processes belong to an outer container or a security module: nothing to do about them here.
    if (result.inaccessible && !opts.allowPartial && process.geteuid?.() !== 0) {
      // The result is printed already (JSON has `inaccessible`); the text form gets the error's usual report beside it.
      if (!opts.json) reportError(PROGRAM, partialScan(result.inaccessible, result.soname), false);
      return exitCodeOf('TRIGGER_PARTIAL_SCAN');
    }
    return ExitCode.OK;
  } finally {
    for (const sig of signals) process.off(sig, onSignal);
  }
}

function partialScan(n: number, soname: string): UlpError {
  return new UlpError(
    'TRIGGER_PARTIAL_SCAN',
    `${n} process${n === 1 ? '' : 'es'} in scope could not be inspected (another user's) and may run ${soname}: they were not patched`,
    'Run as root to include them, narrow the run (--user, --unit, --comm, --pid), or pass --allow-partial to accept a partial run.',
    { inaccessible: n },
  );
}

/** The scope of --all from its filters; an unknown user name is a usage error. */
function scopeOf(opts: Options): Scope {
  const users = opts.user?.length ? readUsers() : new Map<string, number>();
  const uids = (opts.user ?? []).map((u) => {
    const uid = resolveUser(u, users);
    if (uid === undefined)
      throw usage(
        `--user "${u}": no such user in /etc/passwd`,
        'Give a user name from /etc/passwd or a numeric uid.',
      );
    return uid;
  });
  return {
    exclude: (opts.exclude ?? []).map(pidOf),
    uids,
    comms: opts.comm ?? [],
    units: (opts.unit ?? []).map(unitName),
  };
}

/** Runs ulp-trigger with `argv` (without node and script); sets process.exitCode. */
export async function main(argv: string[]): Promise<void> {
  await runCommand<Options>(
    PROGRAM,
    buildProgram(),
    argv,
    async (args, opts) => {
      validate(args, opts);
      return await run(args, opts);
    },
    'TRIGGER_USAGE',
  );
}
