/**
 * One address per datum on a real library: Debian's libcrypto 3.0.19 ->
 * 3.0.20 (../shared/real-builds) applied to a process hashing on four
 * threads through the provider store, and reverted. Every one of the 1215
 * displacements the map lists is rewritten to the loaded build's data; the
 * digests stay right and every thread keeps going.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from '../../../lab/cli.js';
import { compile } from '../../../lab/compile.js';
import { REAL, REAL_FILES, realBuildsDir } from '../../../lab/real-builds.js';
import { realBundle } from '../../../lab/real-bundles.js';
import { startTarget, type Target } from '../../../lab/target.js';

type Round = Record<string, string>;
const rounds = (out: string): Round[] =>
  out
    .slice(0, out.lastIndexOf('\n') + 1)
    .split('\n')
    .filter((l) => l.startsWith('round='))
    .map((l) => Object.fromEntries(l.split(' ').map((kv) => kv.split('=') as [string, string])));

describe('one address per datum on libcrypto 3.0.19 -> 3.0.20 (real Debian builds)', function () {
  this.timeout(300_000);
  const real = realBuildsDir();
  let dir: string;
  let target: Target | undefined;
  before(function () {
    if (!real) this.skip();
    dir = mkdtempSync(join(tmpdir(), 'ulp-datarefs-crypto-'));
  });
  after(() => {
    target?.dispose();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('applies and reverts under four hashing threads: every digest right, every thread progressing', async () => {
    const old = join(real!, REAL.ssl19, REAL_FILES.crypto);
    const lib = join(dir, 'lib');
    mkdirSync(lib);
    copyFileSync(old, join(lib, REAL_FILES.crypto));
    const exe = compile({
      sources: ['datarefs/crypto_main.c'],
      out: 'crypto_main',
      flags: ['-O2', '-pthread'],
      libs: [`-L${lib}`, `-l:${REAL_FILES.crypto}`],
    });
    const fix = realBundle(real!, REAL.ssl19, REAL.ssl20, REAL_FILES.crypto);
    target = startTarget([exe], { LD_LIBRARY_PATH: lib });
    const t = target;
    const first = rounds(await t.waitFor((o) => rounds(o).length >= 2, 30_000))[0]!;
    assert.equal(first.version, '30000130');
    for (const [args, version] of [
      [[], '30000140'],
      [['--revert'], '30000130'],
      [[], '30000140'],
    ] as const) {
      const r = runCli('ulp-trigger', [String(t.pid), fix, '--json', ...args]);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      if (r.json.switch.staged) {
        assert.equal(r.json.switch.dataRefs.mode, 'one-address');
        assert.equal(r.json.switch.dataRefs.code, 1215);
      }
      const mark = t.output().length;
      const next = rounds(
        (await t.waitFor((o) => rounds(o.slice(mark)).length >= 2, 30_000)).slice(mark),
      )[1]!;
      assert.equal(next.version, version);
    }
    const last = rounds(t.output()).at(-1)!;
    assert.equal(last.bad, '0', 'a digest came out wrong');
    for (let i = 0; i < 4; i++)
      assert.ok(Number(last[`t${i}`]) > Number(first[`t${i}`]), `thread ${i} made progress`);
    assert.ok(t.alive());
  });
});
