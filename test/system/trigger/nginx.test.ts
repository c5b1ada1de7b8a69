/**
 * A forking server nobody here wrote, patched under load in CI: Debian's
 * nginx (master and workers) serves gzip'ed pages while its libz is swapped
 * for another build and back, and reloads make the patched master fork new
 * workers (lab/nginx/scenario.ts; `npm run nginx` is the long run).
 * Every response is inflated and compared; no worker may crash; workers
 * forked after the patch must run the live build on private data.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { NGINX, runScenario, zlibBuilds } from '../../../lab/nginx/scenario.js';

describe('nginx under load while libz is patched and reverted', function () {
  this.timeout(300_000);
  it('serves every request correctly, and workers forked by the patched master run the live build on their own data', async function () {
    assert.ok(
      existsSync(NGINX),
      `${NGINX} is missing: npm test installs nginx-light as root (scripts/test-deps.sh)`,
    );
    assert.equal(
      process.getuid?.(),
      0,
      'nginx workers switch users and the trigger traces them: run the suite as root',
    );
    const zlib = zlibBuilds();
    assert.ok(typeof zlib !== 'string', `the zlib builds cannot be made here: ${zlib}`);
    const lines: string[] = [];
    const r = await runScenario({
      zlib,
      phaseSeconds: 2,
      workers: 2,
      clients: 3,
      wrk: undefined,
      log: (l) => lines.push(l),
    });
    assert.deepEqual(r.problems, [], lines.join('\n'));
    assert.ok(r.ok);
    assert.ok(
      r.requests.verified > 0 && r.requests.failed === 0 && r.requests.errors === 0,
      JSON.stringify(r.requests),
    );
    assert.equal(r.crashes.length, 0);
    assert.equal(
      r.triggers.filter((t) => t.outcome === 'applied').length,
      3,
      'master and both workers patched',
    );
    assert.ok(
      r.afterPatch.length === 2 &&
        r.afterPatch.every((w) => w.liveBuildId === zlib.otherBuildId && w.forkProtection),
    );
    assert.ok(r.afterRevert.every((w) => w.liveBuildId === zlib.installedBuildId));
  });
});
