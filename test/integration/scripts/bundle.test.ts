/**
 * The shipped ulp-pack is one esbuild bundle of tsc's output (scripts/bundle.ts,
 * lab/bundle.ts). The transpiled product every other command test runs
 * (lab/cli.ts) is bundled here the same way, into a folder of its own, and
 * the two run side by side on the same command lines: usage, version, help,
 * bad input, compatible and refused pairs, a bundle written and inspected,
 * `--pid` on a running process. Each pair of runs must end with the same
 * exit code and print the same bytes on both streams, and write the same
 * bundle. The bundle's import graph must keep the lazy parts lazy: the
 * entry sets V8's tier-up budget before it loads anything of the packer,
 * and neither koffi's native addon nor zod is loaded by a `--check`; the
 * licenses of the dependencies it carries go with it; a CPU profile of it
 * names the sources (lab/bench/profile.ts reads its source maps).
 */
import assert from 'node:assert/strict';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import type { Metafile } from 'esbuild';
import { bundlePack, LICENSES, PACK_CHUNKS } from '../../../lab/bundle.js';
import { profileIn } from '../../../lab/bench/profile.js';
import { compiledProduct, ROOT, runCommand } from '../../../lab/cli.js';
import { BUILD } from '../../../lab/compile.js';
import { buildDemo, rounds, type Demo } from '../../../lab/demo.js';
import { libfix } from '../../../lab/packer/fixtures.js';
import { tempDir } from '../../../lab/packer/run.js';

/** The outputs a `--check` loads: the entry, then every static import from the chunk it imports dynamically. */
function loadedByCheck(meta: Metafile, entry: string): string[] {
  const command = meta.outputs[entry]!.imports.find((i) => i.kind === 'dynamic-import')!.path;
  const seen = new Set<string>([entry]);
  const queue = [command];
  while (queue.length) {
    const out = queue.pop()!;
    if (seen.has(out) || !meta.outputs[out]) continue;
    seen.add(out);
    for (const i of meta.outputs[out]!.imports) if (i.kind === 'import-statement') queue.push(i.path);
  }
  return [...seen];
}

const externalsOf = (meta: Metafile, outs: string[]) =>
  outs.flatMap((o) => meta.outputs[o]!.imports.filter((i) => i.external).map((i) => i.path));
const inputsOf = (meta: Metafile, outs: string[]) =>
  outs.flatMap((o) => Object.keys(meta.outputs[o]!.inputs));

describe('the shipped ulp-pack: one esbuild bundle (scripts/bundle.ts)', function () {
  this.timeout(600_000);
  let bundled: string;
  let meta: Metafile;
  let entryKey: string;
  let demo: Demo;
  const dir = tempDir();
  const modules = () => join(compiledProduct(), 'bin', 'ulp-pack.js');
  const bundle = () => join(bundled, 'bin', 'ulp-pack.js');

  before(async () => {
    // Inside the checkout, as dist/ is, so that koffi resolves from its node_modules.
    const product = compiledProduct();
    mkdirSync(BUILD, { recursive: true });
    bundled = mkdtempSync(join(BUILD, 'pack-bundle-'));
    copyFileSync(join(ROOT, 'package.json'), join(bundled, 'package.json'));
    ({ metafile: meta } = await bundlePack(product, bundled));
    entryKey = Object.keys(meta.outputs).find((o) => o.endsWith('/bin/ulp-pack.js'))!;
    demo = buildDemo({ tag: 'pack-bundle' });
  });
  after(() => {
    demo?.dispose();
    dir.dispose();
    if (bundled) rmSync(bundled, { recursive: true, force: true });
  });

  it('is an executable entry that sets the tier-up budget, then loads the packer from its chunks', () => {
    const text = readFileSync(bundle(), 'utf8');
    assert.match(text, /^#!\/usr\/bin\/env node\n/);
    assert.equal(statSync(bundle()).mode & 0o755, 0o755);
    const flag = text.indexOf("setFlagsFromString('--interrupt-budget=".replace(/'/g, '"'));
    const load = text.indexOf(`import("./${PACK_CHUNKS}/command-`);
    assert.ok(flag > 0 && load > flag, text);
    // Nothing of the product is imported statically by the entry: only node's own modules.
    const statics = meta.outputs[entryKey]!.imports.filter((i) => i.kind === 'import-statement');
    assert.deepEqual(
      statics.filter((i) => !i.path.startsWith('node:')),
      [],
    );
  });

  it('keeps koffi external and lazy, and zod out of --check', () => {
    const check = loadedByCheck(meta, entryKey);
    assert.ok(check.length > 2, `${check}`);
    assert.deepEqual(
      externalsOf(meta, check).filter((p) => !p.startsWith('node:')),
      [],
    );
    assert.deepEqual(
      inputsOf(meta, check).filter((p) => /node_modules\/(zod|koffi)\//.test(p)),
      [],
    );
    // The --pid reader does import koffi, and only from node_modules (a native addon cannot be bundled).
    const all = Object.keys(meta.outputs).filter((o) => o.endsWith('.js'));
    assert.ok(externalsOf(meta, all).includes('koffi'));
    assert.deepEqual(
      inputsOf(meta, all).filter((p) => /node_modules\/koffi\//.test(p)),
      [],
    );
    // The bundle layer is there, reached only dynamically.
    assert.ok(inputsOf(meta, all).some((p) => /node_modules\/zod\//.test(p)));
  });

  it('carries the license of every dependency whose code it holds, and only those', () => {
    const text = readFileSync(join(bundled, 'bin', PACK_CHUNKS, LICENSES), 'utf8');
    const packages = new Set(
      Object.keys(meta.inputs).flatMap((p) => /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(p)?.[1] ?? []),
    );
    const declared = Object.keys(JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).dependencies);
    assert.ok(packages.size > 0);
    for (const p of packages)
      assert.ok(declared.includes(p), `${p} is bundled but not a declared dependency`);
    assert.ok(!packages.has('koffi'));
    const headers = [...text.matchAll(/^(\S+) \d+\.\d+\.\d+\S* \((.+)\)$/gm)].map((m) => m[1]);
    assert.deepEqual(headers, [...packages].sort());
    for (const notice of text.split(/^-{72}$/m)) assert.match(notice, /Permission|copyright|Copyright/);
  });

  /** Runs the same command line through the modules and through the bundle; both must do the same. */
  function same(args: string[], what: string): { code: number | null; stdout: string } {
    const a = runCommand(process.execPath, [modules(), ...args]);
    const b = runCommand(process.execPath, [bundle(), ...args]);
    assert.deepEqual(
      { code: b.code, signal: b.signal, stdout: b.stdout, stderr: b.stderr },
      { code: a.code, signal: a.signal, stdout: a.stdout, stderr: a.stderr },
      what,
    );
    return a;
  }

  it('prints the same version, help and usage errors, with the same exit codes', () => {
    assert.equal(
      same(['--version'], '--version').stdout,
      `ulp-pack ${JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version}\n`,
    );
    same(['-V'], '-V');
    assert.equal(same(['--help'], '--help').code, 0);
    assert.equal(same([], 'no operands').code, 64);
    assert.equal(same(['--no-such-option'], 'an unknown option').code, 64);
    assert.equal(same([demo.lib(1)], 'one operand').code, 64);
    assert.equal(same(['--pid', 'x', demo.lib(1), '--check'], '--pid not a number').code, 64);
  });

  it('refuses bad input the same way', () => {
    const text = join(dir.path, 'not-elf.so');
    writeFileSync(text, 'not an ELF file\n');
    assert.equal(same([text, demo.lib(2), '--check'], 'OLD not ELF').code, 3);
    assert.equal(same([join(dir.path, 'nope.so'), demo.lib(2), '--check'], 'OLD missing').code, 5);
    assert.equal(same(['--inspect', join(dir.path, 'nope.ulp')], '--inspect of no file').code, 5);
    assert.notEqual(same(['--deb', text, text, '--check'], '--deb of no package').code, 0);
  });

  it('gives the same verdicts and reports, and writes the same bundle', () => {
    const [v1, v2] = [demo.lib(1), demo.lib(2)];
    assert.equal(same([v1, v2, '--check'], 'compatible, text').code, 0);
    assert.equal(same([v1, v2, '--check', '--json'], 'compatible, json').code, 0);
    same([v2, v1, '--check'], 'the other way round');
    const refused = [libfix({}), libfix({ defines: ['EXTRA_GLOBAL'] })];
    assert.equal(same([...refused, '--check', '--json'], 'incompatible, json').code, 2);
    assert.equal(same([...refused, '-o', join(dir.path, 'no.ulp')], 'incompatible, -o').code, 2);
    assert.ok(!existsSync(join(dir.path, 'no.ulp')));

    const out = join(dir.path, 'fix.ulp');
    const written: Buffer[] = [];
    for (const bin of [modules(), bundle()]) {
      rmSync(out, { force: true });
      const r = runCommand(process.execPath, [
        bin,
        v1,
        v2,
        '-o',
        out,
        '--created-at',
        '0',
        '--package',
        'demo',
      ]);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      written.push(readFileSync(out));
    }
    assert.ok(written[0]!.equals(written[1]!), 'the bundle wrote other bytes');
    assert.equal(same(['--inspect', out], '--inspect').code, 0);
    assert.equal(same(['--inspect', out, '--json'], '--inspect --json').code, 0);
  });

  it("profiles by the sources' names: the benchmarks' CPU profiles read the chunks' source maps", () => {
    const prof = join(dir.path, 'prof');
    const r = runCommand(process.execPath, [
      '--cpu-prof',
      '--cpu-prof-dir',
      prof,
      '--cpu-prof-interval',
      '100',
      bundle(),
      demo.lib(1),
      demo.lib(2),
      '--check',
    ]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    // Here the bundle's sources are the transpiled product's files (dist/'s maps lead on to the .ts files).
    const p = profileIn(prof, Infinity);
    assert.ok(
      p.functions.some((f) => /^runPack \S*\/packer\/command\.js:\d+$/.test(f.name)),
      p.functions.map((f) => f.name).join('\n'),
    );
    // What stays in a chunk has no source: a module's top level (line 1) and esbuild's helpers (`__name`).
    assert.deepEqual(
      p.functions
        .map((f) => f.name)
        .filter((f) => f.includes(PACK_CHUNKS) && !/^(\(anonymous\) \S+:1|__\w+ \S+:\d+)$/.test(f)),
      [],
    );
  });

  it('packs a running process with --pid (koffi loaded from its chunk), and refuses a pid that is not there', async () => {
    const t = demo.start(1, ['100']);
    await t.waitFor((o) => rounds(o).length >= 1);
    const r = same(['--pid', String(t.pid), demo.lib(2), '--check', '--json'], '--pid');
    assert.equal(r.code, 0, r.stdout);
    assert.match(JSON.parse(r.stdout).old.path, new RegExp(`^/proc/${t.pid}/map_files/`));
    assert.equal(same(['--pid', '999999999', demo.lib(2), '--check'], '--pid of no process').code, 4);
  });
});
