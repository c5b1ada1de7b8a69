/**
 * The package facts of a bundle (format 1.1: package, versions, CVEs) where an
 * operator looks: the trigger's report and --json, and --status of a patched
 * process, which reads them back from the process itself (a sealed memfd
 * `ulp:meta:<patch-id>` mapped with the build), not from a file.
 */
import assert from 'node:assert/strict';
import { decodeBundleMeta } from '../../../trigger/bundle-meta.js';
import { HardLab, linesAfter, status, trigger } from '../../../lab/hard-lab.js';
import { ulpPack } from '../../../lab/packer/run.js';

describe('bundle metadata in ulp-trigger', function () {
  this.timeout(120_000);
  let lab: HardLab;
  before(() => {
    const spec = (version: string) => ({
      soname: 'libmeta.so.1',
      sources: ['hard/libstack.c'],
      flags: ['-Xlinker', `--package-metadata={"type":"deb","name":"libmeta1","version":"${version}"}`],
    });
    lab = new HardLab({ a: spec('1.0-1'), b: spec('1.0-1+deb12u1') }, 'bundle-meta');
  });
  after(() => lab?.dispose());

  it('the run report, --json and --status (text and JSON) show package, versions and CVEs, through apply and revert', async () => {
    const fix = lab.bundlePath('a', 1, 2);
    const packed = ulpPack([lab.lib('a', 1), lab.lib('b', 2), '-o', fix, '--fixes', 'CVE-2026-4242']);
    assert.equal(packed.code, 0, packed.stdout + packed.stderr);
    const want = {
      name: 'libmeta1',
      fromVersion: '1.0-1',
      toVersion: '1.0-1+deb12u1',
      fixes: ['CVE-2026-4242'],
    };
    const exe = lab.exe('stack_main', { sources: ['hard/stack_main.c'], needs: ['a'] });
    const t = lab.start(exe, { a: 1 });
    await linesAfter(t, 0, (ls) => ls.length >= 1);

    const r = trigger(String(t.pid), fix, '--json').json;
    assert.equal(r.outcome, 'applied');
    assert.deepEqual(r.package, want);
    const st = status(t.pid);
    const lib = st.libraries.find((l: { soname: string }) => l.soname === 'libmeta.so.1');
    assert.deepEqual(lib.patches, [{ patchId: r.patchId, state: 'applied', package: want }]);
    const text = trigger('--status', String(t.pid)).stdout;
    assert.match(
      text,
      /patch [0-9a-f]{12}: applied \(package libmeta1 1\.0-1 -> 1\.0-1\+deb12u1, fixes CVE-2026-4242\)/,
    );
    assert.match(
      trigger(String(t.pid), fix).stdout,
      /package libmeta1 1\.0-1 -> 1\.0-1\+deb12u1, fixes CVE-2026-4242/,
    );

    trigger(String(t.pid), fix, '--revert');
    const after = status(t.pid).libraries.find((l: { soname: string }) => l.soname === 'libmeta.so.1');
    assert.deepEqual(
      after.patches.map((p: any) => p.package),
      [want],
      'the facts stay with the patch after a revert',
    );
  });

  it('what a process holds is read defensively: garbage, another patch id or a wrong shape shows nothing', () => {
    const id = 'ab'.repeat(16);
    const good = Buffer.from(
      JSON.stringify({
        kind: 'ulp-bundle-meta',
        version: 1,
        patchId: id,
        soname: 'libx.so.1',
        package: { name: 'x', fixes: ['CVE-2026-1111', 'nonsense'] },
      }) + '\0\0\0',
    );
    assert.deepEqual(decodeBundleMeta(good, id)?.package, { name: 'x', fixes: ['CVE-2026-1111'] });
    assert.equal(decodeBundleMeta(good, 'cd'.repeat(16)), undefined);
    assert.equal(decodeBundleMeta(Buffer.from('{not json'), id), undefined);
    assert.equal(
      decodeBundleMeta(Buffer.from(JSON.stringify({ kind: 'other', patchId: id, package: {} })), id),
      undefined,
    );
    assert.equal(decodeBundleMeta(Buffer.alloc(4096), id), undefined);
  });
});
