/**
 * A real program nobody here wrote: Debian's /usr/bin/python3, whose built-in
 * pyexpat calls the dynamically linked libexpat.so.1, parses XML in a loop
 * while the installed libexpat is swapped for a rebuild with a visible
 * change (scripts/real-libs/build-expat.sh), then reverted. Parsing must go
 * on with the same results, and the visible change must come and go.
 *
 * The builds come from Debian's source package; where the archive is out of
 * reach the script exits 77 and this test is skipped with its reason shown.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT, runCli } from '../../../lab/cli.js';
import { startTarget, type Target } from '../../../lab/target.js';

const PYTHON = '/usr/bin/python3';
const INSTALLED = '/usr/lib/x86_64-linux-gnu/libexpat.so.1';

interface Round {
  round: number;
  ok: boolean;
  digest: string;
  parsed: number;
  error_string: string;
  parse_error: string;
}

function parseRounds(out: string): Round[] {
  return out
    .split('\n')
    .filter((l) => l.startsWith('{"round"'))
    .map((l) => JSON.parse(l) as Round);
}

describe('ulp-trigger on /usr/bin/python3 parsing XML (libexpat)', function () {
  this.timeout(400_000);
  const products: Record<string, string> = {};
  let work: string;
  let target: Target | undefined;

  before(function () {
    if (!existsSync(PYTHON) || !existsSync(INSTALLED)) this.skip();
    const r = spawnSync(join(ROOT, 'scripts/real-libs/build-expat.sh'), [], {
      encoding: 'utf8',
      timeout: 360_000,
    });
    if (r.status === 77) {
      console.log(`      skipped: ${r.stderr.trim().split('\n').at(-1)}`);
      this.skip();
    }
    assert.equal(r.status, 0, `build-expat.sh failed:\n${r.stderr.slice(-3000)}`);
    for (const line of r.stdout.split('\n')) {
      const m = /^([A-Z0-9_]+)='(.*)'$/.exec(line);
      if (m) products[m[1]!] = m[2]!;
    }
    work = mkdtempSync(join(tmpdir(), 'ulp-expat-'));
  });
  after(() => {
    target?.dispose();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it("refuses Debian's own security update deb12u2 (it adds globals: the data layout changes)", () => {
    const r = runCli('ulp-pack', [INSTALLED, products.EXPAT_DEB12U2!, '--check', '--json']);
    assert.equal(r.code, 2, r.stdout + r.stderr);
    assert.equal(r.json.forward.categories.data.verdict, 'incompatible');
  });

  it('swaps libexpat under a parsing loop and back, parsing on with the same results', async () => {
    const fix = join(work, 'expat.ulp');
    const packed = runCli('ulp-pack', [INSTALLED, products.EXPAT_VISIBLE!, '-o', fix]);
    assert.equal(packed.code, 0, packed.stdout + packed.stderr);

    target = startTarget([PYTHON, join(ROOT, 'test/fixtures/real/expat_loop.py'), '--sleep', '0.02']);
    const t = target;
    await t.waitFor((o) => parseRounds(o).length >= 3, 30_000);
    const stock = products.EXPAT_STOCK_TEXT!;
    const visible = products.EXPAT_VISIBLE_TEXT!;
    assert.equal(parseRounds(t.output()).at(-1)!.error_string, stock);

    const applied = runCli('ulp-trigger', [String(t.pid), fix, '--json']);
    assert.equal(applied.code, 0, applied.stdout + applied.stderr);
    assert.equal(applied.json.outcome, 'applied');
    let mark = t.output().length;
    await t.waitFor((o) => parseRounds(o.slice(mark)).length >= 3, 30_000);
    let latest = parseRounds(t.output().slice(mark)).at(-1)!;
    assert.equal(latest.error_string, visible, 'XML_ErrorString now runs the new build');
    assert.ok(latest.parse_error.startsWith(visible), latest.parse_error);

    const reverted = runCli('ulp-trigger', [String(t.pid), fix, '--revert', '--json']);
    assert.equal(reverted.code, 0, reverted.stdout + reverted.stderr);
    mark = t.output().length;
    await t.waitFor((o) => parseRounds(o.slice(mark)).length >= 3, 30_000);
    latest = parseRounds(t.output().slice(mark)).at(-1)!;
    assert.equal(latest.error_string, stock);

    const all = parseRounds(t.output());
    assert.ok(
      all.every((r) => r.ok),
      'every parse gave the same events',
    );
    assert.equal(new Set(all.map((r) => r.digest)).size, 1);
    for (let i = 1; i < all.length; i++)
      assert.equal(all[i]!.round, all[i - 1]!.round + 1, 'parsing went on without a gap');
    assert.ok(t.alive());
  });
});
