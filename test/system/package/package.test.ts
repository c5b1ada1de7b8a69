/**
 * The package as `npm pack` makes it, which is what `npm install -g` installs:
 * the product only (the compiled commands, man pages, completion, docs, the
 * rollout playbook), no tests or scripts; executable bins; and a packed copy
 * that runs on its own. Also the man pages and the bash completion against
 * the commands' real options.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, normalize } from 'node:path';
import { ROOT, runCli } from '../../../lab/cli.js';

interface PackedFile {
  path: string;
  mode: number;
  size: number;
}

const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
  version: string;
  license: string;
  man: string[];
  bin: Record<string, string>;
};

describe('the npm package', function () {
  this.timeout(600_000);
  let work: string;
  let files: PackedFile[];
  let tarball: string;
  before(() => {
    work = mkdtempSync(join(tmpdir(), 'ulp-pack-'));
    // npm pack runs "prepare" (tsc) first, exactly as for a publish or an install from git.
    const out = execFileSync('npm', ['pack', '--json', '--pack-destination', work], {
      cwd: ROOT,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, npm_config_update_notifier: 'false' },
    });
    const [info] = JSON.parse(out) as Array<{ files: PackedFile[]; filename: string }>;
    files = info!.files;
    tarball = join(work, info!.filename);
  });
  after(() => rmSync(work, { recursive: true, force: true }));

  it('ships the product only: no tests, scripts, CI files, sources or source maps', () => {
    const paths = files.map((f) => f.path);
    const stray = paths.filter(
      (p) =>
        /^(test|scripts|lab|\.ci|bench|dist\/test|dist\/scripts|dist\/lab)\//.test(p) ||
        p.endsWith('.ts') ||
        p.endsWith('.map') ||
        p.startsWith('.'),
    );
    assert.deepEqual(stray, []);
    for (const p of [
      'package.json',
      'README.md',
      'LICENSE',
      'dist/bin/ulp-pack.js',
      'dist/bin/ulp-trigger.js',
      'dist/trigger/outdated.js',
      'dist/packer/pack.js',
      'man/ulp-pack.1',
      'man/ulp-trigger.1',
      'completion/ulp.bash',
      'docs/CLI.md',
      'ops/ansible/ulp-rollout.yml',
    ]) {
      assert.ok(paths.includes(p), `${p} is missing from the package`);
    }
    assert.ok(paths.length < 300, `${paths.length} files`);
  });

  it('has executable bins with a node shebang, named in package.json', () => {
    for (const [name, path] of Object.entries(pkg.bin)) {
      const f = files.find((x) => x.path === path);
      assert.ok(f, `${name}: ${path} is not packed`);
      assert.equal(f.mode & 0o111, 0o111, `${path} mode ${f.mode.toString(8)}`);
      assert.match(readFileSync(join(ROOT, path), 'utf8'), /^#!\/usr\/bin\/env node\n/);
    }
  });

  it('is self-contained: every relative import of a packed file is packed too', () => {
    const paths = new Set(files.map((f) => f.path));
    const missing: string[] = [];
    let imports = 0;
    for (const p of paths) {
      if (!p.endsWith('.js')) continue;
      // tsc keeps the sources' single quotes, esbuild's bundle of ulp-pack writes double ones.
      for (const m of readFileSync(join(ROOT, p), 'utf8').matchAll(
        /(?:from|import)\s*\(?\s*(['"])(\.{1,2}\/[^'"]+)\1/g,
      )) {
        imports++;
        const target = normalize(join(dirname(p), m[2]!));
        if (!paths.has(target)) missing.push(`${p} -> ${target}`);
      }
    }
    assert.deepEqual(missing, []);
    assert.ok(imports > 100, `only ${imports} imports seen: the pattern no longer matches tsc's output`);
  });

  it('runs from the unpacked tarball', () => {
    const dir = join(work, 'unpacked');
    execFileSync('mkdir', ['-p', dir]);
    execFileSync('tar', ['-xzf', tarball, '-C', dir]);
    // Only the dependencies come from this checkout; the code is the packed copy's.
    symlinkSync(join(ROOT, 'node_modules'), join(dir, 'package', 'node_modules'));
    for (const name of Object.keys(pkg.bin)) {
      const r = spawnSync(join(dir, 'package', pkg.bin[name]!), ['--version'], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout, `${name} ${pkg.version}\n`);
    }
    const usage = spawnSync(join(dir, 'package', pkg.bin['ulp-trigger']!), ['--outdated', 'nope'], {
      encoding: 'utf8',
    });
    assert.equal(usage.status, 64);
    assert.match(usage.stderr, /^ulp-trigger: error \[TRIGGER_USAGE\]/);
  });

  it('has a LICENSE matching package.json, and man pages for both commands with every option', () => {
    assert.equal(pkg.license, 'MIT');
    assert.match(readFileSync(join(ROOT, 'LICENSE'), 'utf8'), /^MIT License\n/);
    assert.deepEqual(pkg.man.map((m) => normalize(m)).sort(), ['man/ulp-pack.1', 'man/ulp-trigger.1']);
    for (const name of ['ulp-pack', 'ulp-trigger'] as const) {
      const man = readFileSync(join(ROOT, 'man', `${name}.1`), 'utf8');
      assert.match(
        man,
        new RegExp(`^\\.TH ${name.toUpperCase()} 1 "[^"]*" "ulp ${pkg.version.replace(/\./g, '\\.')}"`),
        'the man page names this version',
      );
      const help = runCli(name, ['--help']).stdout;
      const options = [...help.matchAll(/^\s+(?:-\w, )?(--[a-z-]+)/gm)].map((m) => m[1]!);
      assert.ok(options.length > 5, help);
      // roff escapes each "-" of an option as "\-".
      for (const o of options)
        assert.ok(man.includes(o.replace(/-/g, '\\-')), `${name}.1 does not describe ${o}`);
    }
  });

  it('completes both commands in bash: options, pids after --status/--outdated', () => {
    const script = join(ROOT, 'completion', 'ulp.bash');
    const complete = (words: string[]) =>
      execFileSync(
        'bash',
        [
          '-c',
          `source "$0"; COMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; ${words[0] === 'ulp-pack' ? '_ulp_pack' : '_ulp_trigger'}; printf '%s\\n' "\${COMPREPLY[@]}"`,
          script,
        ],
        { encoding: 'utf8' },
      )
        .split('\n')
        .filter(Boolean);
    assert.deepEqual(complete(['ulp-trigger', '--out']), ['--outdated']);
    assert.deepEqual(complete(['ulp-trigger', '--st']).sort(), ['--status', '--stop-timeout']);
    assert.deepEqual(complete(['ulp-pack', '--ch']), ['--check']);
    assert.ok(complete(['ulp-trigger', '--outdated', String(process.pid)]).includes(String(process.pid)));
    assert.ok(complete(['ulp-trigger', '--status', '']).includes(String(process.pid)));
    for (const name of ['ulp-pack', 'ulp-trigger'] as const) {
      const help = runCli(name, ['--help']).stdout;
      const all = complete([name, '--']);
      for (const m of help.matchAll(/^\s+(?:-\w, )?(--[a-z-]+)/gm))
        assert.ok(all.includes(m[1]!), `${name}: no completion for ${m[1]}`);
    }
  });
});
