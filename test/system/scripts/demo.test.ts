/**
 * The README's first command, `npm run demo`, end to end: it builds the
 * project, builds two versions of a small library, patches a running
 * program and reverts it, checking every step itself (exit 0 only if all
 * behaved) and cleaning up after itself.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { ROOT } from '../../../lab/cli.js';

describe('npm run demo', function () {
  this.timeout(180_000);
  it('patches a running program, shows the change and the kept state, reverts, and cleans up', () => {
    const r = spawnSync('npm', ['run', '--silent', 'demo'], { cwd: ROOT, encoding: 'utf8' });
    assert.equal(r.status, 0, `exit ${r.status}\n${r.stdout}\n${r.stderr}`);
    for (const line of [
      'ok: the program now runs v2 code',
      'ok: the global counter kept counting through the switch',
      'ok: --status shows the patch applied',
      'ok: the program runs v1 again',
      'demo complete',
    ]) {
      assert.ok(r.stdout.includes(line), `missing "${line}" in:\n${r.stdout}`);
    }
    const dir = /(\/\S+\/ulp-demo-[^/\s]+)\/fix\.ulp/.exec(r.stdout)?.[1];
    assert.ok(dir, 'the demo names its bundle');
    assert.ok(!existsSync(dir), `the demo removed ${dir}`);
  });
});
