/**
 * `ulp-pack --deb OLD.deb NEW.deb -o DIR`: one bundle per shared library the
 * two packages both ship.
 *
 * The packages are unpacked with dpkg-deb into a temporary folder rather
 * than read here: a .deb is an ar archive whose data member may be
 * compressed with gzip, xz, zstd, bzip2 or lzma (Debian uses xz, Ubuntu
 * zstd), and Node has no xz decoder; dpkg-deb reads every format dpkg
 * installs, checks the archive the same way, and is on every Debian system
 * (the dpkg package is essential). Only the unpacked files are read, never
 * run.
 *
 * Libraries pair by SONAME (an upstream release renames libfoo.so.1.2.3 to
 * libfoo.so.1.2.4 and keeps the SONAME); when one package ships several
 * files with one SONAME, those pair by path.
 */
import { spawnSync } from 'node:child_process';
import { closeSync, lstatSync, mkdtempSync, openSync, readdirSync, readSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { UlpError, isUlpError } from '../common/errors.js';
import { readRegularFile } from '../common/files.js';
import { parseElf } from '../elf/index.js';

export interface DebPackage {
  path: string;
  name: string;
  version: string;
  architecture: string | undefined;
}

export interface DebLibrary {
  /** Path inside the package (usr/lib/x86_64-linux-gnu/libfoo.so.1.2.3). */
  path: string;
  /** Where it was unpacked. */
  file: string;
  soname: string;
  buildId: string | undefined;
}

export interface LibraryPair {
  soname: string;
  old: DebLibrary;
  new: DebLibrary;
}

/** Pairs the shared libraries of two packages: by SONAME, and by path among files that share one. Pure. */
export function pairLibraries(
  olds: readonly DebLibrary[],
  news: readonly DebLibrary[],
): { pairs: LibraryPair[]; onlyOld: DebLibrary[]; onlyNew: DebLibrary[] } {
  const bySoname = (libs: readonly DebLibrary[]) => {
    const m = new Map<string, DebLibrary[]>();
    for (const l of libs) m.set(l.soname, [...(m.get(l.soname) ?? []), l]);
    return m;
  };
  const o = bySoname(olds);
  const n = bySoname(news);
  const pairs: LibraryPair[] = [];
  const used = new Set<DebLibrary>();
  for (const [soname, os] of [...o.entries()].sort(([a], [b]) => a.localeCompare(b))) {
    const ns = n.get(soname) ?? [];
    if (os.length === 1 && ns.length === 1) {
      pairs.push({ soname, old: os[0]!, new: ns[0]! });
      used.add(os[0]!).add(ns[0]!);
      continue;
    }
    for (const a of os) {
      const b = ns.find((x) => x.path === a.path);
      if (b) {
        pairs.push({ soname, old: a, new: b });
        used.add(a).add(b);
      }
    }
  }
  return { pairs, onlyOld: olds.filter((l) => !used.has(l)), onlyNew: news.filter((l) => !used.has(l)) };
}

/** Parses `dpkg-deb -f DEB Package Version Architecture` output. Pure. */
export function parseControlFields(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^([A-Za-z][A-Za-z0-9-]*):\s*(.*)$/.exec(line);
    if (m) out[m[1]!] = m[2]!.trim();
  }
  return out;
}

function dpkgDeb(args: string[], deb: string): string {
  const r = spawnSync('dpkg-deb', args, { encoding: 'utf8', maxBuffer: 16 << 20 });
  if (r.error) {
    if ((r.error as NodeJS.ErrnoException).code === 'ENOENT')
      throw new UlpError(
        'PACK_DPKG_DEB_MISSING',
        'dpkg-deb is not installed: it unpacks the packages',
        'Install dpkg (Debian and its derivatives have it), or unpack the packages yourself and give ulp-pack the two library files.',
      );
    throw r.error;
  }
  if (r.status !== 0) {
    throw new UlpError(
      'PACK_DEB_INVALID',
      `${deb} is not a readable Debian package: ${(r.stderr || '').trim().split('\n').pop() ?? `dpkg-deb exited with ${r.status}`}`,
      'Give two .deb files of one package (apt-get download NAME=VERSION).',
      { path: deb },
    );
  }
  return r.stdout;
}

/** Reads the package's name and version; throws PACK_INPUT_UNREADABLE or PACK_DEB_INVALID. */
export function readDebPackage(path: string): DebPackage {
  try {
    const st = lstatSync(path);
    if (!st.isFile() && !st.isSymbolicLink())
      throw Object.assign(new Error(st.isDirectory() ? 'is a directory' : 'not a regular file'), {
        code: 'EINVAL',
      });
    closeSync(openSync(path, 'r'));
  } catch (err) {
    throw new UlpError(
      'PACK_INPUT_UNREADABLE',
      `cannot read the package ${path}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (err as Error).message}`,
      'Check the path and its permissions.',
      { path },
    );
  }
  const f = parseControlFields(dpkgDeb(['-f', path, 'Package', 'Version', 'Architecture'], path));
  if (!f.Package || !f.Version)
    throw new UlpError(
      'PACK_DEB_INVALID',
      `${path} has no Package or Version field`,
      'Give two .deb files of one package.',
      { path },
    );
  return { path, name: f.Package, version: f.Version, architecture: f.Architecture };
}

function isElfSharedObject(file: string): boolean {
  const fd = openSync(file, 'r');
  try {
    const h = Buffer.alloc(18);
    return readSync(fd, h, 0, 18, 0) === 18 && h.readUInt32BE(0) === 0x7f454c46 && h.readUInt16LE(16) === 3;
  } finally {
    closeSync(fd);
  }
}

/** Every regular file of the tree that is an ELF shared object with a SONAME (symbolic links are the same files again). */
function sharedLibraries(root: string): DebLibrary[] {
  const out: DebLibrary[] = [];
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const file = join(dir, e.name);
      if (e.isDirectory()) walk(file);
      else if (e.isFile() && isElfSharedObject(file)) {
        try {
          const elf = parseElf(readRegularFile(file), { expect: 'any' });
          // Without a SONAME (plugins, the dynamic loader's executable form) a library cannot be patched.
          if (elf.soname)
            out.push({ path: relative(root, file), file, soname: elf.soname, buildId: elf.buildId });
        } catch (err) {
          if (!isUlpError(err)) throw err; // a damaged ELF: not a library we can pack
        }
      }
    }
  };
  walk(root);
  return out;
}

export interface UnpackedDebs {
  old: DebPackage;
  new: DebPackage;
  pairs: LibraryPair[];
  onlyOld: DebLibrary[];
  onlyNew: DebLibrary[];
  /** Removes the temporary folder. */
  dispose(): void;
}

/** Unpacks both packages and pairs their shared libraries; the caller disposes. */
export function unpackDebs(oldDeb: string, newDeb: string): UnpackedDebs {
  const old = readDebPackage(oldDeb);
  const neu = readDebPackage(newDeb);
  if (old.name !== neu.name) {
    throw new UlpError(
      'PACK_DEB_MISMATCH',
      `the packages are of different names: ${old.name} (old) and ${neu.name} (new)`,
      'Give two versions of one package.',
      { old: old.name, new: neu.name },
    );
  }
  const tmp = mkdtempSync(join(tmpdir(), 'ulp-pack-deb-'));
  const dispose = () => rmSync(tmp, { recursive: true, force: true });
  try {
    dpkgDeb(['-x', oldDeb, join(tmp, 'old')], oldDeb);
    dpkgDeb(['-x', newDeb, join(tmp, 'new')], newDeb);
    const p = pairLibraries(sharedLibraries(join(tmp, 'old')), sharedLibraries(join(tmp, 'new')));
    return { old, new: neu, ...p, dispose };
  } catch (e) {
    dispose();
    throw e;
  }
}
