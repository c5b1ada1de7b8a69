/**
 * Packing, minus the command line: load both builds, refuse inputs that are
 * not a pair of builds of one library, analyse both directions, and (when
 * the forward direction is not incompatible) produce the bundle bytes.
 * Writing the file is the command's job.
 */
import type { KeyObject } from 'node:crypto';
import { UlpError, isUlpError } from '../common/errors.js';
import { readRegularFile } from '../common/files.js';
import { parseElf } from '../elf/index.js';
import type { Manifest, Report } from '../patches/index.js';
import { analyzePair, type ProgressFn } from './analyze/index.js';
import { createBuild, withoutSymtab, type Build } from './model.js';
import {
  assessVersions,
  packageNote,
  type DowngradeAssessment,
  type PackageVersions,
  type VersionEvidence,
} from './version/evidence.js';
import { knownBundleEvidence, type KnownUpdate } from './version/known-bundles.js';
import type { PackageInfo } from './package-info.js';
import { dataRefMap } from './code/datarefs.js';
import { startDecodeLog } from './code/decode-log.js';
import type { BundleDataRefs, DataRefs, StoredDataRefs } from '../patches/index.js';

export interface PackOptions {
  oldPath: string;
  newPath: string;
  createdAt: Date;
  tool: { name: string; version: string };
  /** Produce the bundle bytes (false for --check). */
  bundle: boolean;
  privateKey?: KeyObject;
  progress?: ProgressFn;
  /** --debug-dir: folders with separate debug files. */
  debugDirs?: string[];
  /** Write the bundle even when the new build looks older than the old one. */
  allowDowngrade?: boolean;
  /** Bundles already written (the store, --known): evidence of which build is the later one. */
  knownBundles?: readonly KnownUpdate[];
  /** The versions of the packages the builds come from (--deb): they decide, as package notes do. */
  packageVersions?: PackageVersions;
  /** What the operator said about the update (--package, --from-version, --to-version, --fixes); the package notes fill the gaps. */
  packageInfo?: PackageInfo;
}

export interface PackResult {
  soname: string;
  old: Build;
  new: Build;
  forward: Report;
  reverse: Report;
  manifest?: Manifest;
  bytes?: Buffer;
  /** How the builds' versions compare, and on what evidence. */
  versions: DowngradeAssessment;
  /** The package facts recorded in the bundle (given, or read from the package notes). */
  packageInfo: PackageInfo | undefined;
}

/** Reads and parses one input; every failure names the file. */
export function loadBuild(label: 'old' | 'new', path: string): Build {
  let bytes: Buffer;
  try {
    bytes = readRegularFile(path);
  } catch (err) {
    const code = (err as { code?: string }).code;
    throw new UlpError(
      'PACK_INPUT_UNREADABLE',
      `cannot read the ${label} build ${path}: ${code === 'ENOENT' ? 'no such file' : (err as Error).message}`,
      'Check the path and its permissions.',
      { path, errno: code },
      { cause: err },
    );
  }
  try {
    const obj = parseElf(bytes, { expect: 'shared-object' });
    const build = createBuild(label, path, bytes, obj);
    return build;
  } catch (err) {
    if (!isUlpError(err)) throw err;
    // Keep the reader's code (docs/CLI.md lists them) but say which input it was about.
    throw new UlpError(
      err.code,
      `${label} build ${path}: ${err.message}`,
      err.hint,
      { ...err.details, path },
      { cause: err },
    );
  }
}

/** Inputs that cannot form a patch at all (as opposed to an incompatible pair). */
export function checkPair(a: Build, b: Build): string {
  for (const x of [a, b]) {
    if (!x.obj.buildId) {
      throw new UlpError(
        'PACK_NO_BUILD_ID',
        `the ${x.label} build ${x.path} has no GNU build-id note`,
        'The trigger finds builds in processes by build-id: link with -Wl,--build-id.',
        { path: x.path },
      );
    }
    if (!x.obj.soname) {
      throw new UlpError(
        'PACK_NO_SONAME',
        `the ${x.label} build ${x.path} has no DT_SONAME`,
        'Only libraries with a SONAME can be patched: link with -Wl,-soname,NAME.',
        { path: x.path },
      );
    }
  }
  if (a.obj.soname !== b.obj.soname) {
    throw new UlpError(
      'PACK_SONAME_MISMATCH',
      `the builds are of different libraries: ${a.obj.soname} (old) and ${b.obj.soname} (new)`,
      'Give two builds of the same library (the same SONAME).',
      { old: a.obj.soname, new: b.obj.soname },
    );
  }
  if (a.sha256 === b.sha256) {
    throw new UlpError(
      'PACK_SAME_BUILD',
      'the old and new files are the same build (identical bytes)',
      'Give the build to replace and the build that replaces it.',
      { sha256: a.sha256 },
    );
  }
  if (a.obj.buildId === b.obj.buildId) {
    throw new UlpError(
      'PACK_SAME_BUILD_ID',
      `both files carry build-id ${a.obj.buildId}: they are one build (perhaps one is stripped) and could not be told apart in a process`,
      'Rebuild the new version so that it gets its own build-id.',
      { buildId: a.obj.buildId },
    );
  }
  return a.obj.soname!;
}

/**
 * A stripped build names only its exports. Compared with an unstripped one
 * (a distribution's library against a local rebuild), local names would make
 * identical things look different, so both sides use the dynamic symbols.
 */
export function sameSymbolLevel(a: Build, b: Build): [Build, Build] {
  if (a.stripped === b.stripped) return [a, b];
  const dynamicOnly = (x: Build) =>
    x.stripped ? x : createBuild(x.label, x.path, x.bytes, withoutSymtab(x.obj), { stripped: false });
  return [dynamicOnly(a), dynamicOnly(b)];
}

export async function pack(opts: PackOptions): Promise<PackResult> {
  const progress = opts.progress ?? (() => {});
  progress(`reading ${opts.oldPath}`);
  const loadedOld = loadBuild('old', opts.oldPath);
  progress(`reading ${opts.newPath}`);
  const loadedNew = loadBuild('new', opts.newPath);
  const soname = checkPair(loadedOld, loadedNew);
  const known = knownBundleEvidence(loadedOld.obj.buildId!, loadedNew.obj.buildId!, opts.knownBundles ?? []);
  const versions = assessVersions(loadedOld, loadedNew, known, opts.packageVersions);
  if (versions.downgrade && !opts.allowDowngrade) throw downgradeError(versions.evidence);
  const packageInfo = withNoteDefaults(opts.packageInfo, loadedOld, loadedNew);
  const [old, neu] = sameSymbolLevel(loadedOld, loadedNew);
  // The bundle layer (zod, schemas) is loaded only to write a bundle, and before the analysis:
  // compressing the builds starts now, on the thread pool, and overlaps with the analysis.
  const bundles = opts.bundle ? await import('../patches/index.js') : undefined;
  const encoder = bundles ? new bundles.BundleEncoder(old.bytes, neu.bytes, opts.createdAt) : undefined;
  const analysis = opts.debugDirs ? { debugDirs: opts.debugDirs } : {};
  // The code comparison decodes nearly every function of both builds: with a bundle to make, what it
  // finds is kept so that the data-reference maps replay it instead of decoding it all again.
  if (encoder) for (const b of [old, neu]) startDecodeLog(b);
  const forward = analyzePair(old, neu, progress, analysis);
  const reverse = analyzePair(neu, old, progress, analysis);
  const result: PackResult = { soname, old, new: neu, forward, reverse, versions, packageInfo };
  if (forward.verdict === 'incompatible' || !encoder || !bundles) return result;
  progress('compressing the bundle');
  result.manifest = bundles.createManifest({
    soname,
    oldBuild: old.bytes,
    newBuild: neu.bytes,
    oldBuildId: old.obj.buildId!,
    newBuildId: neu.obj.buildId!,
    createdAt: opts.createdAt,
    tool: opts.tool,
    forward,
    reverse,
    ...(packageInfo ? { package: packageInfo } : {}),
    ...(versions.downgrade ? { downgrade: true } : {}),
    datarefs: dataRefsOf(old, neu, bundles.encodeDataRefs, progress),
  });
  result.bytes = await encoder.finish(
    result.manifest,
    opts.privateKey ? { privateKey: opts.privateKey } : {},
  );
  return result;
}

function downgradeError(evidence: VersionEvidence[]): UlpError {
  const older = evidence.filter((e) => e.order === 'older');
  const shown = older.map((e) => `${e.source} ${e.what}: ${e.old} -> ${e.new}`);
  return new UlpError(
    'PACK_DOWNGRADE',
    `the new build looks older than the old one (${shown.join('; ')}); a bundle would put the older build into processes, and ulp-trigger would take every process still running it for patched`,
    'Swap OLD and NEW if they were given the wrong way round; to ship a downgrade on purpose, pass --allow-downgrade.',
    { evidence },
  );
}

/** Package facts the operator left out, from the builds' package notes when both name the same package. */
function withNoteDefaults(given: PackageInfo | undefined, old: Build, neu: Build): PackageInfo | undefined {
  const on = packageNote(old.obj);
  const nn = packageNote(neu.obj);
  const same = on && nn && on.name === nn.name ? nn.name : undefined;
  const info: PackageInfo = { ...given };
  const name = info.name ?? same ?? nn?.name ?? on?.name;
  if (name !== undefined) info.name = name;
  if (info.fromVersion === undefined && on && (!info.name || on.name === info.name))
    info.fromVersion = on.version;
  if (info.toVersion === undefined && nn && (!info.name || nn.name === info.name))
    info.toVersion = nn.version;
  return Object.keys(info).length > 0 ? info : undefined;
}

/** Both builds' data-reference maps: the new one for the patch, the old one for a revert that stages the old build. */
function dataRefsOf(
  old: Build,
  neu: Build,
  encode: (m: DataRefs) => StoredDataRefs,
  progress: ProgressFn,
): BundleDataRefs {
  const one = (b: Build) => {
    progress(`${b.label}: data-reference map`);
    const m = dataRefMap(b);
    return m ? encode(m) : null;
  };
  return { old: one(old), new: one(neu) };
}
