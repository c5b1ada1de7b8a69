/**
 * A trigger killed while staging leaves a build mapped but not finished
 * (relocations missing, RELRO writable). Staging opens the build's header
 * page last (runtime/loader/stage.ts), so the next run must not take the
 * leftover for a build: it stages afresh and the process runs correct code.
 * The interrupted staging is made on purpose here, in the test's process,
 * through the same runtime calls the trigger makes, stopping where a
 * SIGKILL could have stopped it.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parseElf } from '../../elf/index.js';
import { decodeBundle } from '../../patches/index.js';
import { Session } from '../../runtime/index.js';
import { regionOf } from '../../runtime/loader/library.js';
import { buildMemfdName } from '../../runtime/loader/model.js';
import { mapBuild } from '../../runtime/loader/stage.js';
import { runCli, type Run } from '../helpers/cli.js';
import { buildDemo, rounds, type Demo } from '../helpers/demo.js';

function ok(r: Run): Run {
  assert.equal(r.code, 0, `exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r;
}

describe('ulp-trigger after a staging that never finished', function () {
  this.timeout(120_000);
  let demo: Demo;
  before(() => (demo = buildDemo({ tag: 'interrupted-stage' })));
  after(() => demo?.dispose());

  it('does not take the half-staged build for a build: stages again, switches, reports the leftover', async () => {
    const fix = demo.pack(1, 2);
    const t = demo.start(1);
    await t.waitFor((o) => rounds(o).length >= 2);

    const manifest = decodeBundle(readFileSync(fix)).manifest;
    const bytes = readFileSync(demo.lib(2));
    const elf = parseElf(bytes);
    const s = Session.open(t.pid);
    try {
      s.borrow();
      s.stub();
      // Mapped under the very name the trigger uses, then abandoned before any relocation is written.
      mapBuild(s, { bytes, elf, memfdName: buildMemfdName(manifest.patchId, 'new', manifest.soname), soname: manifest.soname, region: regionOf(elf, 'v2'), aliasedCanonicalRegion: undefined });
    } finally {
      s.detach();
    }

    const before = ok(runCli('ulp-trigger', ['--status', String(t.pid), '--json'])).json;
    assert.equal(before.abandoned.length, 1, JSON.stringify(before.abandoned));
    assert.match(before.abandoned[0].name, /:new:libdemo\.so\.1$/);
    assert.equal(before.libraries.find((l: { soname: string }) => l.soname === 'libdemo.so.1')?.builds.length ?? 1, 1, 'the leftover is not listed as a build');

    const applied = ok(runCli('ulp-trigger', [String(t.pid), fix, '--json'])).json;
    assert.equal(applied.outcome, 'applied');
    assert.equal(applied.switch.staged, true, 'the build was staged again, not reused half-made');
    const mark = t.output().length;
    const after = rounds((await t.waitFor((o) => rounds(o.slice(mark)).length >= 2)).slice(mark));
    assert.equal(after.at(-1)!.version, '2');
    assert.equal(after.at(-1)!.compute, String(3 * 12));
    assert.ok(t.alive());

    const status = ok(runCli('ulp-trigger', ['--status', String(t.pid)])).stdout;
    assert.match(status, /abandoned staging of ulp:[0-9a-f]+:new:libdemo\.so\.1/);
    assert.match(status, /libdemo\.so\.1: live build/);
  });
});
