/**
 * The shipped `ulp-pack` as one esbuild bundle of tsc's output, made by
 * `npm run build` (scripts/bundle.ts) and by the test that checks the bundle
 * behaves as the modules do (test/integration/scripts/bundle.test.ts).
 *
 * Why: ulp-pack is a one-shot command, and loading its modules was a
 * measurable part of every run: `--check` loaded 88 files from dist/, `-o`
 * 246 with zod's and semver's; the bundle loads 6 and 9 (docs/PERFORMANCE.md,
 * the pack section, has the figures). ulp-trigger is not bundled: its
 * `--all` worker is loaded by URL next to trigger/all.js. The rest of dist/
 * stays tsc's output, which ulp-trigger runs.
 *
 * What stays as it was:
 * - the entry is tsc's bin/ulp-pack.js: its shebang, then
 *   `setFlagsFromString('--interrupt-budget=...')`, then a dynamic import of
 *   the command, so the flag is set before any of the packer is compiled;
 * - every `await import()` of the sources stays lazy, as a chunk of its own
 *   (`--splitting`): the bundle layer (zod, the manifest schemas) loads only
 *   for the paths that write or read a bundle, the `--pid` reader and koffi's
 *   native addon only for `--pid`;
 * - koffi stays external (a native addon cannot be bundled), so it resolves
 *   from node_modules as before; the other dependencies are bundled.
 *
 * The chunks live in bin/ulp-pack-chunks/ (removed and written anew by each
 * build), with source maps that lead back to the TypeScript sources through
 * tsc's own maps, and the licenses of the dependencies whose code the bundle
 * carries (THIRD-PARTY-LICENSES.txt): their terms ask that their notice go
 * with every copy, and the bundle is one.
 */
import { chmodSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { build, type Metafile } from 'esbuild';

/** The folder, beside bin/ulp-pack.js, that holds the bundle's chunks. */
export const PACK_CHUNKS = 'ulp-pack-chunks';

/** Dependencies left to node_modules: koffi loads a native addon from its own folder. */
export const EXTERNAL = ['koffi'];

/**
 * commander, semver and tar's helpers are CommonJS; bundled into ES modules
 * they call `require` for node's built-in modules, which an ES module does
 * not have. Each output file gets its own, made from its own URL.
 */
const REQUIRE_SHIM =
  "import { createRequire as __ulpCreateRequire } from 'node:module';\n" +
  'const require = __ulpCreateRequire(import.meta.url);';

/** The file, among the chunks, that carries the bundled dependencies' licenses. */
export const LICENSES = 'THIRD-PARTY-LICENSES.txt';

/**
 * The license notices of every package under node_modules whose code went
 * into the bundle (`inputs`: esbuild's input paths, relative to `cwd`):
 * name, version, license and the text of its license file. Sorted by name.
 */
export function licenseNotices(inputs: readonly string[], cwd = process.cwd()): string {
  const roots = new Set<string>();
  for (const input of inputs) {
    const m = /^(.*\/node_modules\/(?:@[^/]+\/)?[^/]+)\//.exec(resolve(cwd, input));
    if (m) roots.add(m[1]!);
  }
  const notices = [...roots].map((root) => {
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
      name: string;
      version: string;
      license?: string;
    };
    const file = readdirSync(root).find((f) => /^(licen[cs]e|copying)(\.(md|txt))?$/i.test(f));
    if (!file) throw new Error(`${pkg.name}: no license file in ${root}, yet its code is bundled`);
    const text = readFileSync(join(root, file), 'utf8').trim();
    return {
      name: pkg.name,
      text: `${pkg.name} ${pkg.version} (${pkg.license ?? 'see below'})\n\n${text}\n`,
    };
  });
  return notices
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
    .map((n) => n.text)
    .join(`\n${'-'.repeat(72)}\n\n`);
}

export interface PackBundle {
  /** The files written, relative to `to`, sorted. */
  files: string[];
  /** esbuild's account of the bundle: which chunk imports which, statically or dynamically. */
  metafile: Metafile;
}

/**
 * Bundles `from`/bin/ulp-pack.js (tsc's output of bin/ulp-pack.ts, with the
 * rest of the product beside it) into `to`/bin/ulp-pack.js and
 * `to`/bin/ulp-pack-chunks/. `from` and `to` may be the same folder (dist/):
 * the whole bundle is made in memory before anything is written.
 */
export async function bundlePack(from: string, to: string): Promise<PackBundle> {
  const entry = join(from, 'bin', 'ulp-pack.js');
  // Bundling a bundle would give an entry that imports chunks this build just removed.
  if (!readFileSync(entry, 'utf8').includes("import('../packer/command.js')"))
    throw new Error(`${entry} is not tsc's output of bin/ulp-pack.ts: run tsc -p tsconfig.json first`);
  // Input paths are written into the bundle (comments, CommonJS wrappers' names): relative to the folder
  // above `from` and through node_modules as the checkout has it, they are the same in every checkout.
  const top = resolve(from, '..');
  const out = await build({
    absWorkingDir: top,
    preserveSymlinks: true,
    entryPoints: [entry],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20.19',
    splitting: true,
    external: EXTERNAL,
    outdir: join(to, 'bin'),
    chunkNames: `${PACK_CHUNKS}/[name]-[hash]`,
    banner: { js: REQUIRE_SHIM },
    sourcemap: 'linked',
    metafile: true,
    write: false,
    allowOverwrite: true,
    logLevel: 'warning',
  });
  rmSync(join(to, 'bin', PACK_CHUNKS), { recursive: true, force: true });
  for (const f of out.outputFiles) {
    mkdirSync(dirname(f.path), { recursive: true });
    writeFileSync(f.path, f.contents);
  }
  const licenses = join(to, 'bin', PACK_CHUNKS, LICENSES);
  writeFileSync(licenses, licenseNotices(Object.keys(out.metafile.inputs), top));
  chmodSync(join(to, 'bin', 'ulp-pack.js'), 0o755);
  return {
    files: [...out.outputFiles.map((f) => relative(to, f.path)), relative(to, licenses)].sort(),
    metafile: out.metafile,
  };
}
