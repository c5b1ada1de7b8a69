/**
 * `--outdated --apply`: after a package upgrade, patch every process that
 * still runs a replaced library. For each (running build, on-disk build) of
 * a library it packs one bundle from the process's own copy of the running
 * build (/proc/PID/map_files, readable though its file is gone) and the file
 * now on disk, keeps it in the bundles folder (so that `--revert` and later
 * runs find it), and applies it to each process through the same path as
 * `ulp-trigger PID FIX.ulp`. Then it scans again: what is left is what needs
 * a restart.
 *
 * The bundles are not signed: both builds come from this host (one from
 * the processes, one from the package manager's files), so there is no
 * third party to authenticate.
 */
import { accessSync, constants, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { asUlpError, toolVersion } from '../common/cli.js';
import { UlpError } from '../common/errors.js';
import { pack } from '../packer/pack.js';
import type { PackageInfo } from '../packer/package-info.js';
import { readBundleFile, writeFileAtomic, type Bundle } from '../patches/index.js';
import type { SessionOptions } from '../runtime/index.js';
import { ElfCache } from '../runtime/loader/index.js';
import { retainLoaderBuild } from '../runtime/retain.js';
import { ancestors } from './all.js';
import { runOne } from './apply.js';
import { findOutdated } from './outdated.js';
import { readBundleUnderPolicy, readPolicy, type Policy } from './policy.js';
import {
  bundleFileName,
  upgradeGroups,
  type UpgradeBundle,
  type UpgradeGroup,
  type UpgradeProcessResult,
  type UpgradeResult,
} from './upgrade-model.js';

export interface UpgradeOptions {
  pids?: number[];
  bundlesDir: string;
  session?: SessionOptions;
  onStep?: (message: string) => void;
}

/** Creates the bundles folder (root-only, it feeds code into processes) and checks it is writable, before anything else. */
export function prepareBundlesDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    if (!statSync(dir).isDirectory()) throw Object.assign(new Error('not a folder'), { code: 'ENOTDIR' });
    accessSync(dir, constants.W_OK);
  } catch (err) {
    throw new UlpError(
      'TRIGGER_BUNDLES_DIR_UNWRITABLE',
      `cannot use ${dir} for bundles: ${(err as Error).message}`,
      'Run as root, or give a folder you can write to with --bundles-dir (or ULP_BUNDLES_DIR).',
      { path: dir, errno: (err as { code?: string }).code },
    );
  }
}

/** A bundle from an earlier run for exactly this pair, or undefined (missing, damaged, another pair, not signed as the policy requires: packed again). */
function reusable(path: string, from: string, to: string, policy: Policy | undefined): Bundle | undefined {
  try {
    const b = policy?.requireSignature ? readBundleUnderPolicy(path, policy) : readBundleFile(path);
    const m = b.manifest;
    return m.builds.old.buildId === from && m.builds.new.buildId === to ? b : undefined;
  } catch {
    return undefined;
  }
}

async function bundleFor(
  g: UpgradeGroup,
  dir: string,
  policy: Policy | undefined,
): Promise<{ info: UpgradeBundle; bundle?: Bundle }> {
  const soname = g.library.soname;
  const base = { soname, library: g.library.path, from: g.from, to: g.to };
  const path = join(dir, bundleFileName(soname ?? 'unknown', g.from, g.to));
  const known = reusable(path, g.from, g.to, policy);
  if (known)
    return { info: { ...base, state: 'reused', path, patchId: known.manifest.patchId }, bundle: known };
  if (policy?.requireSignature && !policy.allowLocalPack) {
    const reason = {
      code: 'TRIGGER_POLICY_UNSIGNED',
      message: `the host's policy (${policy.path}) requires signed bundles and no bundle signed by a trusted key is at ${path}; a bundle packed here would not be signed`,
    };
    return { info: { ...base, state: 'failed', reason } };
  }
  const first = g.processes[0]!;
  // The library as that process sees it: through its root, so a container's own file is the new build.
  const pid = Number(/^\/proc\/(\d+)\//.exec(first.mapFiles)?.[1] ?? first.pid);
  const packageInfo: PackageInfo = {};
  const disk = g.library.onDisk.package;
  if (disk?.name) packageInfo.name = disk.name;
  if (first.running.package?.version && (!disk?.name || first.running.package.name === disk.name))
    packageInfo.fromVersion = first.running.package.version;
  if (disk?.version) packageInfo.toVersion = disk.version;
  try {
    const r = await pack({
      oldPath: first.mapFiles,
      newPath: `/proc/${pid}/root${g.library.path}`,
      createdAt: new Date(),
      tool: { name: 'ulp-trigger', version: toolVersion() },
      bundle: true,
      ...(Object.keys(packageInfo).length ? { packageInfo } : {}),
    });
    // The scan and the pack read the files at different moments: a second upgrade in between gives other builds.
    if (r.old.obj.buildId !== g.from || r.new.obj.buildId !== g.to) {
      throw new UlpError(
        'TRIGGER_BUILDS_CHANGED',
        `the builds changed while packing: found ${r.old.obj.buildId} -> ${r.new.obj.buildId}, expected ${g.from} -> ${g.to}`,
        'Run ulp-trigger --outdated --apply again.',
      );
    }
    if (!r.bytes || !r.manifest) {
      const reasons = Object.values(r.forward.categories).flatMap((c) =>
        c.findings.filter((f) => f.severity === 'error').map((f) => f.code),
      );
      throw new UlpError(
        'PACK_INCOMPATIBLE',
        `the on-disk build cannot replace the running one (${[...new Set(reasons)].join(', ')})`,
        'Restart these processes.',
      );
    }
    writeFileAtomic(path, r.bytes);
    // Read back through every check a host makes on a bundle, exactly as `ulp-trigger PID FILE` would.
    const bundle = readBundleFile(path);
    return { info: { ...base, state: 'packed', path, patchId: bundle.manifest.patchId }, bundle };
  } catch (e) {
    const err = asUlpError(e);
    return { info: { ...base, state: 'failed', reason: { code: err.code, message: err.message } } };
  }
}

/**
 * Moves the old build's code onto a memfd copy (runtime/retain.ts) so that
 * needrestart stops listing a process that runs the new build. A failure
 * leaves the process patched, with the old build on its deleted file.
 */
function retain(
  pid: number,
  soname: string | undefined,
  session: SessionOptions | undefined,
): Pick<UpgradeProcessResult, 'retained' | 'retainError'> {
  if (!soname) return {};
  try {
    const r = retainLoaderBuild(pid, soname, session ?? {});
    return { retained: r.moved.length > 0 || r.skipped === undefined };
  } catch (e) {
    const err = asUlpError(e);
    return { retained: false, retainError: { code: err.code, message: err.message } };
  }
}

export async function applyOutdated(opts: UpgradeOptions): Promise<UpgradeResult> {
  const t0 = performance.now();
  prepareBundlesDir(opts.bundlesDir);
  // Read before anything else: a policy file that cannot be read refuses the whole run.
  const policy = readPolicy();
  opts.onStep?.('scanning processes');
  const before = findOutdated(opts.pids ? { pids: opts.pids } : {});
  const mine = ancestors();
  const bundles: UpgradeBundle[] = [];
  const processes: UpgradeProcessResult[] = [];
  const done = new Set<string>();
  const elfCache = new ElfCache();
  for (const g of upgradeGroups(before)) {
    opts.onStep?.(`packing ${g.library.soname ?? g.library.path}`);
    const { info, bundle } = await bundleFor(g, opts.bundlesDir, policy);
    bundles.push(info);
    for (const p of g.processes) {
      done.add(`${p.pid}:${g.library.path}`);
      const base = {
        pid: p.pid,
        command: p.command,
        soname: g.library.soname,
        library: g.library.path,
        from: g.from,
        to: g.to,
      };
      if (!bundle) {
        processes.push({ ...base, result: 'refused', reason: info.reason! });
        continue;
      }
      const withBundle = { ...base, patchId: bundle.manifest.patchId, bundle: info.path! };
      if (mine.has(p.pid)) {
        processes.push({
          ...withBundle,
          result: 'skipped',
          reason: {
            code: 'TRIGGER_ANCESTOR',
            message:
              'an ancestor of ulp-trigger, waiting for it: left alone (patch it by its pid afterwards)',
          },
        });
        continue;
      }
      opts.onStep?.(`patching process ${p.pid}`);
      try {
        const r = runOne(p.pid, bundle, {
          which: 'forward',
          elfCache,
          ...(opts.session ? { session: opts.session } : {}),
        });
        const result =
          r.outcome === 'dry-run' || r.outcome === 'reverted' || r.outcome === 'reverted-partly'
            ? 'failed'
            : r.outcome;
        const kept =
          result === 'applied' || result === 'applied-partly' || result === 'already-applied'
            ? retain(p.pid, g.library.soname, opts.session)
            : {};
        processes.push({
          ...withBundle,
          result,
          ...(r.pauseMs !== undefined ? { pauseMs: r.pauseMs } : {}),
          ...kept,
        });
      } catch (e) {
        const err = asUlpError(e);
        processes.push({ ...withBundle, result: 'failed', reason: { code: err.code, message: err.message } });
      }
    }
  }
  // Refused and unreadable ones: nothing was tried, but each gets its line too.
  for (const l of before.libraries) {
    for (const p of l.processes) {
      if (done.has(`${p.pid}:${l.path}`)) continue;
      if (p.state === 'patched') {
        // Patched earlier (by hand, or a run before this one): only the old build's code may still need to move.
        if (!mine.has(p.pid)) retain(p.pid, l.soname, opts.session);
        continue;
      }
      const reason = p.reasons?.[0] ?? {
        code: 'OUTDATED_NO_BUILD_ID',
        message: 'a build without a build-id cannot be patched',
      };
      processes.push({
        pid: p.pid,
        command: p.command,
        soname: l.soname,
        library: l.path,
        from: p.running.buildId,
        to: l.onDisk.buildId,
        result: p.state === 'inaccessible' ? 'inaccessible' : 'refused',
        reason,
      });
    }
  }
  processes.sort((a, b) => a.pid - b.pid || a.library.localeCompare(b.library));
  opts.onStep?.('scanning again');
  const after = findOutdated(opts.pids ? { pids: opts.pids } : {});
  return { bundlesDir: opts.bundlesDir, bundles, processes, after, totalMs: performance.now() - t0 };
}
