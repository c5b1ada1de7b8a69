/**
 * `ulp-pack --deb OLD.deb NEW.deb -o DIR`: packs every shared library the two
 * packages share (from-deb.ts pairs them) and writes one bundle per library
 * into DIR under bundle-name.ts's name, which `ulp-trigger --outdated
 * --apply` reuses from its bundles folder. A pair that is refused gets no
 * file; the others are still written, each atomically.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { KeyObject } from 'node:crypto';
import { ExitCode, asUlpError, printJson, type ExitCodeValue } from '../common/cli.js';
import { UlpError } from '../common/errors.js';
import { bundleFileName } from './bundle-name.js';
import { unpackDebs, type LibraryPair } from './from-deb.js';
import { pack } from './pack.js';
import type { KnownUpdate } from './version/known-bundles.js';

export interface DebRunOptions {
  outputDir: string | undefined;
  check: boolean;
  json: boolean;
  createdAt: Date;
  tool: { name: string; version: string };
  privateKey?: KeyObject;
  fixes?: string[];
  debugDirs?: string[];
  allowDowngrade?: boolean;
  /** Bundles already written (the store, --known): downgrade evidence for every pair. */
  knownBundles?: readonly KnownUpdate[];
  progress: (message: string) => void;
}

export interface DebLibraryResult {
  soname: string;
  oldPath: string;
  newPath: string;
  oldBuildId: string | undefined;
  newBuildId: string | undefined;
  /** unchanged: the same build in both packages, nothing to patch; error: not a pair ulp can pack (reason). */
  verdict: 'unchanged' | 'compatible' | 'incompatible' | 'same-build' | 'error';
  output: string | null;
  patchId: string | null;
  reasons: Array<{ code: string; message: string; category?: string }>;
}

async function packPair(
  p: LibraryPair,
  pkg: { name: string; from: string; to: string },
  opts: DebRunOptions,
  writeFile: ((path: string, data: Buffer) => void) | undefined,
): Promise<DebLibraryResult> {
  const base = {
    soname: p.soname,
    oldPath: p.old.path,
    newPath: p.new.path,
    oldBuildId: p.old.buildId,
    newBuildId: p.new.buildId,
  };
  try {
    const r = await pack({
      oldPath: p.old.file,
      newPath: p.new.file,
      createdAt: opts.createdAt,
      tool: opts.tool,
      bundle: !opts.check,
      ...(opts.privateKey ? { privateKey: opts.privateKey } : {}),
      ...(opts.allowDowngrade ? { allowDowngrade: true } : {}),
      ...(opts.knownBundles ? { knownBundles: opts.knownBundles } : {}),
      packageVersions: { type: 'deb', name: pkg.name, old: pkg.from, new: pkg.to },
      ...(opts.debugDirs ? { debugDirs: opts.debugDirs } : {}),
      packageInfo: {
        name: pkg.name,
        fromVersion: pkg.from,
        toVersion: pkg.to,
        ...(opts.fixes?.length ? { fixes: opts.fixes } : {}),
      },
      progress: opts.progress,
    });
    const reasons = Object.entries(r.forward.categories).flatMap(([category, c]) =>
      c.findings
        .filter((f) => f.severity === 'error')
        .map((f) => ({ code: f.code, message: f.message, category })),
    );
    let output: string | null = null;
    if (r.bytes && writeFile && opts.outputDir) {
      output = join(opts.outputDir, bundleFileName(p.soname, r.old.obj.buildId!, r.new.obj.buildId!));
      writeFile(output, r.bytes);
    }
    return {
      ...base,
      verdict: r.forward.verdict,
      output,
      patchId: output ? r.manifest!.patchId : null,
      reasons,
    };
  } catch (e) {
    const err = asUlpError(e);
    // A library the update did not rebuild is no reason to fail the others.
    if (err.code === 'PACK_SAME_BUILD' || err.code === 'PACK_SAME_BUILD_ID')
      return { ...base, verdict: 'same-build', output: null, patchId: null, reasons: [] };
    if (err.code === 'INTERNAL_ERROR' || err.code === 'BUNDLE_WRITE_FAILED') throw err;
    return {
      ...base,
      verdict: 'error',
      output: null,
      patchId: null,
      reasons: [{ code: err.code, message: err.message }],
    };
  }
}

export async function runDebs(oldDeb: string, newDeb: string, opts: DebRunOptions): Promise<ExitCodeValue> {
  const bundles = opts.check ? undefined : await import('../patches/index.js');
  if (opts.outputDir !== undefined) {
    try {
      mkdirSync(opts.outputDir, { recursive: true });
    } catch (err) {
      throw new UlpError(
        'BUNDLE_WRITE_FAILED',
        `cannot create ${opts.outputDir}: ${(err as Error).message}`,
        'Give a folder you can write to.',
        { path: opts.outputDir },
      );
    }
    bundles!.checkWritableDestination(join(opts.outputDir, '.ulp-pack-check'));
  }
  opts.progress(`unpacking ${oldDeb} and ${newDeb}`);
  const debs = unpackDebs(oldDeb, newDeb);
  const libraries: DebLibraryResult[] = [];
  try {
    if (debs.pairs.length === 0) {
      throw new UlpError(
        'PACK_DEB_NO_LIBRARIES',
        `${debs.old.name} ${debs.old.version} and ${debs.new.version} share no shared library with a SONAME`,
        'Give the packages that ship the library (libfoo1, not libfoo-dev or foo-bin).',
        { old: debs.onlyOld.map((l) => l.path), new: debs.onlyNew.map((l) => l.path) },
      );
    }
    for (const p of debs.pairs)
      libraries.push(
        await packPair(
          p,
          { name: debs.new.name, from: debs.old.version, to: debs.new.version },
          opts,
          bundles?.writeFileAtomic,
        ),
      );
  } finally {
    debs.dispose();
  }
  const refused = libraries.filter((l) => l.verdict === 'incompatible' || l.verdict === 'error');
  if (opts.json) {
    printJson({
      old: { path: oldDeb, package: debs.old.name, version: debs.old.version },
      new: { path: newDeb, package: debs.new.name, version: debs.new.version },
      outputDir: opts.outputDir ?? null,
      libraries,
      unpaired: { old: debs.onlyOld.map((l) => l.path), new: debs.onlyNew.map((l) => l.path) },
    });
  } else {
    const lines = [
      `${debs.new.name}: ${debs.old.version} -> ${debs.new.version}: ${libraries.length} shared ${libraries.length === 1 ? 'library' : 'libraries'} in both packages`,
    ];
    for (const l of libraries) {
      const head = `  ${l.soname} (${l.oldPath}${l.newPath === l.oldPath ? '' : ` -> ${l.newPath}`})`;
      if (l.verdict === 'same-build') lines.push(`${head}: the same build in both: nothing to patch`);
      else if (l.verdict === 'error' || l.verdict === 'incompatible') {
        lines.push(
          `${head}: ${l.verdict === 'error' ? 'cannot be packed' : 'incompatible'}: no bundle written`,
        );
        for (const x of l.reasons.slice(0, 8))
          lines.push(`    ${x.category ? `${x.category}: ` : ''}${x.message} [${x.code}]`);
        if (l.reasons.length > 8) lines.push(`    ... ${l.reasons.length - 8} more (--json lists them all)`);
      } else
        lines.push(
          `${head}: ${l.verdict}: ${l.output ? `wrote ${l.output} (patch ${l.patchId})` : 'nothing written (--check)'}`,
        );
    }
    for (const l of debs.onlyOld) lines.push(`  ${l.soname} (${l.path}): only in the old package`);
    for (const l of debs.onlyNew) lines.push(`  ${l.soname} (${l.path}): only in the new package`);
    const written = libraries.filter((l) => l.output).length;
    lines.push(
      `result: ${written} ${written === 1 ? 'bundle' : 'bundles'} written, ${refused.length} refused`,
    );
    process.stdout.write(lines.join('\n') + '\n');
  }
  return refused.length ? ExitCode.REFUSED : ExitCode.OK;
}
