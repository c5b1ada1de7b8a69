/**
 * ops/apt on its own (the real upgrade is test/system/trigger/upgrade.test.ts):
 * install.sh writes the snippet with the script's path and removes both
 * again; the hook logs ulp-trigger's result lines, logs an error whole, never
 * fails apt, and can be turned off. The hook runs against a stand-in for
 * ulp-trigger (ULP_TRIGGER), a script printing what ulp-trigger prints.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from '../../../lab/cli.js';

describe('ops/apt: the apt hook and its installer', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ulp-apt-hook-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  const libdir = join(dir, 'lib');
  const confdir = join(dir, 'apt.conf.d');
  const install = (...args: string[]) => spawnSync('sh', [join(ROOT, 'ops/apt/install.sh'), '--libdir', libdir, '--confdir', confdir, ...args], { encoding: 'utf8' });

  /** A stand-in for ulp-trigger that prints `out` and exits with `code`, recording its arguments. */
  function fakeTrigger(out: string, code: number): string {
    const p = join(dir, `fake-${code}.sh`);
    writeFileSync(p, `#!/bin/sh\necho "$@" > ${join(dir, 'args')}\necho "ULP_BUNDLES_DIR=$ULP_BUNDLES_DIR" >> ${join(dir, 'args')}\ncat <<'EOF'\n${out}EOF\nexit ${code}\n`);
    chmodSync(p, 0o755);
    return p;
  }

  function runHook(env: Record<string, string>): { status: number | null; stdout: string } {
    const r = spawnSync(join(libdir, 'ulp-apt-hook'), [], { encoding: 'utf8', env: { PATH: process.env.PATH!, ULP_HOOK_DEFAULTS: join(dir, 'none'), ...env } });
    return { status: r.status, stdout: r.stdout };
  }

  it('installs the script and a DPkg::Post-Invoke snippet naming it, and uninstalls both', () => {
    const r = install();
    assert.equal(r.status, 0, r.stderr);
    const hook = join(libdir, 'ulp-apt-hook');
    assert.equal(readFileSync(join(confdir, '80ulp-upgrade'), 'utf8').split('\n').find((l) => l.startsWith('DPkg::')), `DPkg::Post-Invoke { "if [ -x ${hook} ]; then ${hook} || true; fi"; };`);
    assert.ok(existsSync(hook));
    assert.equal(install('--bogus').status, 64);
    assert.equal(install('--uninstall').status, 0);
    assert.ok(!existsSync(hook) && !existsSync(join(confdir, '80ulp-upgrade')));
    assert.equal(install().status, 0);
  });

  it('logs one line per result line and the exit code, shows apt what was not patched, passes the settings on', () => {
    const log = join(dir, 'log', 'a.log');
    const out = 'result: 1 patched; still to restart: 1 processes (--outdated says why)\n\nULP-RESULT: pid=10 comm=a lib=libx.so.1 result=applied from=1 to=2 patch=3 old_code=memfd\nULP-RESULT: pid=11 comm=b lib=libx.so.1 result=refused from=1 to=2 code=DATA_X reason="moved"\nNEEDRESTART-PID: b=11\n';
    const r = runHook({ ULP_TRIGGER: fakeTrigger(out, 7), ULP_LOG: log, ULP_BUNDLES_DIR: join(dir, 'b'), ULP_HOOK_PIDS: '10 11' });
    assert.equal(r.status, 0, 'exit 7 (something left) is no failure of apt');
    assert.equal(readFileSync(join(dir, 'args'), 'utf8'), `--outdated --apply 10 11\nULP_BUNDLES_DIR=${join(dir, 'b')}\n`);
    const lines = readFileSync(log, 'utf8').trimEnd().split('\n');
    assert.equal(lines.length, 4);
    assert.match(lines[0]!, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ ulp-apt-hook: ULP-RESULT: pid=10 .*result=applied/);
    assert.match(lines[1]!, /ulp-apt-hook: ULP-RESULT: pid=11 .*result=refused/);
    assert.match(lines[2]!, /ulp-apt-hook: NEEDRESTART-PID: b=11$/);
    assert.match(lines[3]!, /ulp-apt-hook: exit=7$/);
    assert.equal(r.stdout, 'ulp: result: 1 patched; still to restart: 1 processes (--outdated says why)\nulp: ULP-RESULT: pid=11 comm=b lib=libx.so.1 result=refused from=1 to=2 code=DATA_X reason="moved"\nulp: NEEDRESTART-PID: b=11\n');
  });

  it('logs an error whole, never fails apt, and does nothing when turned off', () => {
    const log = join(dir, 'err.log');
    const r = runHook({ ULP_TRIGGER: fakeTrigger('ulp-trigger: error [TRIGGER_BUNDLES_DIR_UNWRITABLE]: cannot use /x\n  hint: run as root\n', 5), ULP_LOG: log });
    assert.equal(r.status, 0);
    assert.match(readFileSync(log, 'utf8'), /ulp-apt-hook: error: ulp-trigger: error \[TRIGGER_BUNDLES_DIR_UNWRITABLE\]: cannot use \/x\n.*ulp-apt-hook: error: {3}hint: run as root\n.*ulp-apt-hook: exit=5\n$/);
    assert.match(r.stdout, /^ulp: ulp-trigger: error \[TRIGGER_BUNDLES_DIR_UNWRITABLE\]/m);
    const missing = runHook({ ULP_TRIGGER: join(dir, 'no-such-command'), ULP_LOG: log });
    assert.equal(missing.status, 0, 'a missing ulp-trigger does not fail apt either');
    assert.match(readFileSync(log, 'utf8'), /exit=127\n$/);
    const off = join(dir, 'off.log');
    assert.equal(runHook({ ULP_TRIGGER: fakeTrigger('', 0), ULP_LOG: off, ULP_HOOK_DISABLE: '1' }).status, 0);
    assert.ok(!existsSync(off));
  });
});
