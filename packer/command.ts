/**
 * The ulp-pack command: options and output; exit codes come from the error
 * registry (common/error-codes.ts, docs/CLI.md). Everything it does is in pack.ts and
 * patches/; this file only wires them to the command line.
 */
import { Command } from 'commander';
import {
  ExitCode,
  printJson,
  progress,
  runCommand,
  toolVersion,
  versionLine,
  type ExitCodeValue,
} from '../common/cli.js';
import { UlpError } from '../common/errors.js';
import { readKeyFile } from '../common/files.js';
import type { KeyObject } from 'node:crypto';
import { checkDebugDirs } from './analyze/layouts.js';
import { pack } from './pack.js';
import { parsePackageInfo } from './package-info.js';
import { renderInspect, renderPack } from './render.js';
import { runDebs } from './deb-command.js';
import { loadBuild } from './pack.js';
import { checkKnownDirs, knownBundles, type KnownBundles } from './known-dirs.js';

/**
 * The bundle layer, loaded only by the paths that write or read a bundle:
 * loading it builds zod and every manifest schema (about 0.2 s of CPU, more
 * than the analysis of most pairs), which `--check` does not need.
 */
const bundleLayer = () => import('../patches/index.js');

const PROGRAM = 'ulp-pack';

interface Options {
  output?: string;
  check?: boolean;
  json?: boolean;
  sign?: string;
  inspect?: string;
  key?: string;
  createdAt?: string;
  debugDir?: string[];
  allowDowngrade?: boolean;
  package?: string;
  fromVersion?: string;
  toVersion?: string;
  fixes?: string[];
  pid?: string;
  deb?: boolean;
  known?: string[];
}

const collect = (value: string, previous: string[] | undefined) => [...(previous ?? []), value];
const PACKAGE_OPTIONS = ['package', 'fromVersion', 'toVersion', 'fixes', 'allowDowngrade'] as const;
const flagOf = (o: string) => `--${o.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`;

function usage(message: string): UlpError {
  return new UlpError('PACK_USAGE', message, `Run ${PROGRAM} --help.`);
}

function buildProgram(): Command {
  return new Command(PROGRAM)
    .description(
      'Compare two builds of a shared library and, when the new build can replace the old one inside running processes, write a patch bundle for ulp-trigger.',
    )
    .usage(
      '[options] OLD.so NEW.so -o FIX.ulp\n       ulp-pack [options] --pid PID NEW.so -o FIX.ulp\n       ulp-pack [options] --deb OLD.deb NEW.deb -o DIR\n       ulp-pack --inspect FIX.ulp [--key PUB.pem] [--json]',
    )
    .argument('[old]', 'the build that running processes have loaded')
    .argument('[new]', 'the build that replaces it')
    .option(
      '-o, --output <file>',
      'write the bundle to FILE (atomically; nothing is written when the pair is incompatible)',
    )
    .option('--check', 'analyse only: print the report, write nothing')
    .option('--json', 'print the result (or the error) as JSON on stdout')
    .option('--sign <keyfile>', 'sign the bundle with an Ed25519 private key (PEM)')
    .option('--inspect <bundle>', 'verify an existing bundle and print its manifest and reports')
    .option('--key <pubkey>', 'with --inspect: require a valid signature by this Ed25519 public key (PEM)')
    .option(
      '--debug-dir <dir>',
      'a folder with separate debug files (.build-id/xx/rest.debug or NAME.debug) for structure layouts; repeatable',
      (d: string, all: string[] = []) => [...all, d],
    )
    .option(
      '--created-at <time>',
      'creation time to record (ISO 8601 or seconds since the epoch; default: $SOURCE_DATE_EPOCH, else now)',
    )
    .option(
      '--package <name>',
      "the package the builds come from, recorded in the bundle (default: the builds' package note)",
    )
    .option('--from-version <v>', "the old build's package version (default: its package note)")
    .option('--to-version <v>', "the new build's package version (default: its package note)")
    .option('--fixes <cve>', 'a CVE id the update fixes, recorded in the bundle (repeatable)', collect)
    .option(
      '--pid <pid>',
      "take OLD from this process: the build of NEW's library it runs, read through /proc/PID/map_files (even when its file was deleted by an upgrade); give only NEW.so",
    )
    .option(
      '--deb',
      'OLD and NEW are two .deb files of one package: write one bundle per shared library both ship into the folder given with -o',
    )
    .option('--allow-downgrade', 'write the bundle even when the new build looks older than the old one')
    .option(
      '--known <dir>',
      'a folder of bundles already written (besides the store, $ULP_BUNDLES_DIR or /var/lib/ulp/bundles): NEW is refused as a downgrade when they update it to OLD; repeatable',
      collect,
    )
    .version(versionLine(PROGRAM), '-V, --version', 'print the version')
    .helpOption('-h, --help', 'show this help')
    .addHelpText(
      'after',
      `
Exit codes: 0 written (or compatible with --check), 2 incompatible pair (every
reason is listed, no file written) or a downgrade without --allow-downgrade, 3 invalid input (not ELF, not a shared
object, different SONAME, same build twice, bad bundle or key), 5 a file cannot
be read or written, 4 --pid: no such process or its library cannot be read, 64 usage.
See docs/CLI.md.`,
    );
}

function parseTime(text: string | undefined, what: string): Date {
  if (text === undefined || text === '') return new Date();
  const d = /^\d+$/.test(text) ? new Date(Number(text) * 1000) : new Date(text);
  if (Number.isNaN(d.getTime()))
    throw usage(`${what} "${text}" is not a time (ISO 8601 or seconds since the epoch)`);
  return d;
}

async function runInspect(path: string, opts: Options): Promise<ExitCodeValue> {
  const { loadPublicKey, readBundleFile } = await bundleLayer();
  const publicKey: KeyObject | undefined = opts.key
    ? loadPublicKey(readKeyFile(opts.key, 'PACK_KEY_UNREADABLE'))
    : undefined;
  const bundle = readBundleFile(path, publicKey ? { publicKey } : {});
  if (opts.json) printJson({ file: path, signature: bundle.signature, manifest: bundle.manifest });
  else process.stdout.write(renderInspect(path, bundle));
  return ExitCode.OK;
}

/**
 * `--pid PID NEW.so`: OLD is the process's own build of NEW's library. The process reader is loaded
 * only here: with it come the runtime's loader modules, koffi's native addon and zod, which cost
 * every other run about 0.1 s of CPU before it had read a byte (docs/PERFORMANCE.md).
 */
async function oldFromProcess(pid: string, newPath: string): Promise<string> {
  const { findRunningBuild } = await import('../runtime/running-build.js');
  return findRunningBuild(Number(pid), loadBuild('new', newPath).obj.soname ?? '').path;
}

async function runDebPack(oldDeb: string, newDeb: string, opts: Options): Promise<ExitCodeValue> {
  const fixes = parsePackageInfo({ ...(opts.fixes ? { fixes: opts.fixes } : {}) })?.fixes;
  const createdAt =
    opts.createdAt !== undefined
      ? parseTime(opts.createdAt, '--created-at')
      : parseTime(process.env.SOURCE_DATE_EPOCH, 'SOURCE_DATE_EPOCH');
  if (opts.debugDir) checkDebugDirs(opts.debugDir);
  const privateKey = opts.sign
    ? (await bundleLayer()).loadPrivateKey(readKeyFile(opts.sign, 'PACK_KEY_UNREADABLE'))
    : undefined;
  const known = await readKnown(opts);
  const line = progress(PROGRAM);
  try {
    return await runDebs(oldDeb, newDeb, {
      knownBundles: known.heads,
      outputDir: opts.output,
      check: !!opts.check,
      json: !!opts.json,
      createdAt,
      tool: { name: PROGRAM, version: toolVersion() },
      ...(privateKey ? { privateKey } : {}),
      ...(fixes ? { fixes } : {}),
      ...(opts.debugDir ? { debugDirs: opts.debugDir } : {}),
      ...(opts.allowDowngrade ? { allowDowngrade: true } : {}),
      progress: line.update,
    });
  } finally {
    line.done();
  }
}

async function runPack(oldPath: string, newPath: string, opts: Options): Promise<ExitCodeValue> {
  const packageInfo = parsePackageInfo(opts);
  const createdAt =
    opts.createdAt !== undefined
      ? parseTime(opts.createdAt, '--created-at')
      : parseTime(process.env.SOURCE_DATE_EPOCH, 'SOURCE_DATE_EPOCH');
  const bundles = opts.output !== undefined || opts.sign !== undefined ? await bundleLayer() : undefined;
  // Fail before a long analysis if an input folder is missing or the result could not be written anyway.
  if (opts.debugDir) checkDebugDirs(opts.debugDir);
  if (opts.output) bundles!.checkWritableDestination(opts.output);
  const privateKey = opts.sign
    ? bundles!.loadPrivateKey(readKeyFile(opts.sign, 'PACK_KEY_UNREADABLE'))
    : undefined;
  const known = await readKnown(opts);
  const line = progress(PROGRAM);
  let result;
  try {
    result = await pack({
      oldPath,
      newPath,
      createdAt,
      tool: { name: PROGRAM, version: toolVersion() },
      bundle: !opts.check,
      ...(privateKey ? { privateKey } : {}),
      ...(opts.allowDowngrade ? { allowDowngrade: true } : {}),
      ...(packageInfo ? { packageInfo } : {}),
      knownBundles: known.heads,
      progress: line.update,
      ...(opts.debugDir ? { debugDirs: opts.debugDir } : {}),
    });
    if (result.bytes && opts.output) {
      line.update(`writing ${opts.output}`);
      bundles!.writeFileAtomic(opts.output, result.bytes);
    }
  } finally {
    line.done();
  }
  const incompatible = result.forward.verdict === 'incompatible';
  const written = !incompatible && !opts.check ? opts.output : undefined;
  if (opts.json) {
    printJson({
      verdict: result.forward.verdict,
      soname: result.soname,
      old: { path: oldPath, buildId: result.old.obj.buildId, sha256: result.old.sha256 },
      new: { path: newPath, buildId: result.new.obj.buildId, sha256: result.new.sha256 },
      output: written ?? null,
      patchId: result.manifest?.patchId ?? null,
      package: result.packageInfo ?? null,
      versions: result.versions,
      knownBundles: { dirs: known.dirs, read: known.heads.length, skipped: known.skipped },
      forward: result.forward,
      reverse: result.reverse,
    });
  } else {
    process.stdout.write(
      renderPack({
        soname: result.soname,
        oldPath,
        newPath,
        forward: result.forward,
        reverse: result.reverse,
        output: written,
        patchId: result.manifest?.patchId,
        size: result.bytes?.length,
        check: !!opts.check,
        packageInfo: result.packageInfo,
        versions: result.versions,
        datarefs: result.manifest?.datarefs,
      }),
    );
  }
  if (incompatible) {
    const n = Object.values(result.forward.categories).reduce(
      (k, c) => k + c.findings.filter((f) => f.severity === 'error').length,
      0,
    );
    if (!opts.json)
      process.stderr.write(
        `${PROGRAM}: refused: the new build cannot replace the old one in running processes (${n} ${n === 1 ? 'reason' : 'reasons'} above); nothing written\n`,
      );
    return ExitCode.REFUSED;
  }
  return ExitCode.OK;
}

/** The store and the --known folders, read before the analysis; what cannot be read is a warning on stderr, never fatal. */
async function readKnown(opts: Options): Promise<KnownBundles> {
  if (opts.known) checkKnownDirs(opts.known);
  const known = await knownBundles(opts.known ?? []);
  for (const s of known.skipped)
    process.stderr.write(
      `${PROGRAM}: warning: skipped ${s.path} (${s.code}: ${s.message}); it is not used as downgrade evidence\n`,
    );
  return known;
}

function validate(args: string[], opts: Options): void {
  if (opts.inspect !== undefined) {
    if (args.length > 0) throw usage('--inspect takes no OLD/NEW arguments');
    for (const o of [
      'output',
      'check',
      'sign',
      'createdAt',
      'debugDir',
      'pid',
      'deb',
      'known',
      ...PACKAGE_OPTIONS,
    ] as const)
      if (opts[o] !== undefined) throw usage(`${flagOf(o)} cannot be used with --inspect`);
    return;
  }
  // Bad option values are refused before any file is read.
  parsePackageInfo(opts);
  if (opts.pid !== undefined && opts.deb) throw usage('--pid and --deb cannot be combined');
  if (opts.pid !== undefined) {
    if (!/^\d+$/.test(opts.pid) || Number(opts.pid) <= 0)
      throw usage(`--pid "${opts.pid}" is not a process id`);
    if (args.length !== 1)
      throw usage(`with --pid, give only NEW.so (OLD is the process's build), got ${args.length} arguments`);
    if (opts.key !== undefined) throw usage('--key is for --inspect; to sign, use --sign');
    if (opts.check && (opts.output !== undefined || opts.sign !== undefined))
      throw usage('--check writes nothing: drop -o/--sign, or drop --check');
    if (!opts.check && opts.output === undefined) throw usage('missing -o FILE (or --check to analyse only)');
    return;
  }
  if (opts.deb) {
    for (const o of ['package', 'fromVersion', 'toVersion'] as const)
      if (opts[o] !== undefined)
        throw usage(`${flagOf(o)} cannot be used with --deb: the packages' control fields give it`);
  }
  if (args.length !== 2)
    throw usage(
      `expected OLD.so and NEW.so, got ${args.length} ${args.length === 1 ? 'argument' : 'arguments'}`,
    );
  if (opts.key !== undefined) throw usage('--key is for --inspect; to sign, use --sign');
  if (opts.check && (opts.output !== undefined || opts.sign !== undefined))
    throw usage('--check writes nothing: drop -o/--sign, or drop --check');
  if (!opts.check && opts.output === undefined)
    throw usage(`missing -o ${opts.deb ? 'DIR' : 'FILE'} (or --check to analyse only)`);
}

/** Runs ulp-pack with `argv` (without node and script); sets process.exitCode. */
export async function main(argv: string[]): Promise<void> {
  await runCommand<Options>(
    PROGRAM,
    buildProgram(),
    argv,
    async (args, opts) => {
      validate(args, opts);
      if (opts.inspect !== undefined) return await runInspect(opts.inspect, opts);
      if (opts.deb) return await runDebPack(args[0]!, args[1]!, opts);
      if (opts.pid !== undefined)
        return await runPack(await oldFromProcess(opts.pid, args[0]!), args[0]!, opts);
      return await runPack(args[0]!, args[1]!, opts);
    },
    'PACK_USAGE',
  );
}
