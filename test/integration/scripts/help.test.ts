/**
 * Every script (scripts/*.ts) run as a user runs it: `--help` prints its
 * usage and exits 0 without starting anything (a benchmark would build
 * fixtures and start processes), and an unknown option exits 64 naming it.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from '../../../lab/root.js';
import { headerComment } from '../../../lab/script-args.js';

const run = (script: string, args: string[]) =>
  spawnSync(process.execPath, ['--import', 'tsx', join(ROOT, 'scripts', script), ...args], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 120_000,
  });

describe('scripts: --help and unknown options', function () {
  this.timeout(5 * 60_000);
  const scripts = readdirSync(join(ROOT, 'scripts')).filter((n) => n.endsWith('.ts'));

  for (const name of scripts) {
    const commander = /from 'commander'/.test(readFileSync(join(ROOT, 'scripts', name), 'utf8'));

    it(`${name} --help prints its usage (and nothing else ran) and exits 0`, () => {
      const help = run(name, ['--help']);
      assert.equal(help.status, 0, help.stdout + help.stderr);
      if (commander) assert.match(help.stdout, /^Usage: /m);
      // Exactly the header: nothing else ran.
      else assert.equal(help.stdout, headerComment(readFileSync(join(ROOT, 'scripts', name), 'utf8')));
      assert.equal(help.stderr, '');
    });
  }

  // Every script refuses what it does not take through the same call (test/unit/lab/script-args.test.ts
  // checks each script makes it with its own options): one script of each kind is run to show it exits first.
  for (const name of ['bench-all.ts', 'soak.ts']) {
    it(`${name} --no-such-option exits 64 before it starts anything`, () => {
      const bad = run(name, ['--no-such-option']);
      assert.equal(bad.status, 64, bad.stdout + bad.stderr);
      assert.match(bad.stderr, /unknown option '?--no-such-option/);
      assert.equal(bad.stdout, '');
    });
  }
});
