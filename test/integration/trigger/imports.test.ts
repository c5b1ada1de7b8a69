/**
 * A new build that imports libc functions the old build never used
 * (test/fixtures/hard/libimp.c): the trigger resolves them itself, in scope
 * order and by symbol version. regexec is imported in two versions whose
 * behaviour differs visibly (REG_STARTEND), so a lookup by name alone gives
 * a wrong answer for one of them. The expected output is what ld.so itself
 * produces in a process started on the new build.
 */
import assert from 'node:assert/strict';
import { runCli } from '../../../lab/cli.js';
import { HardLab, linesAfter, trigger, type Line } from '../../../lab/hard-lab.js';
import type { Target } from '../../../lab/target.js';

const SONAME = 'libimp.so.1';
const ADDED = [
  { name: 'regcomp', version: 'GLIBC_2.2.5' },
  { name: 'regexec', version: 'GLIBC_2.2.5' },
  { name: 'regexec', version: 'GLIBC_2.3.4' },
  { name: 'regfree', version: 'GLIBC_2.2.5' },
];
const byName = (a: { name: string; version?: string }, b: { name: string; version?: string }) =>
  `${a.name}@${a.version}`.localeCompare(`${b.name}@${b.version}`);

/** The rounds printed after `mark`, without the first (it may have begun before a switch). */
async function settled(t: Target, mark: number): Promise<Line[]> {
  return (await linesAfter(t, mark, (ls) => ls.length >= 3)).slice(1);
}

describe('new imports across a patch', function () {
  this.timeout(180_000);
  let lab: HardLab;
  before(() => {
    lab = new HardLab(
      {
        full: { soname: SONAME, sources: ['hard/libimp.c'] },
        partial: { soname: SONAME, sources: ['hard/libimp.c'], relro: 'partial' },
      },
      'imports',
    );
  });
  after(() => lab?.dispose());

  it('resolves imports the old build lacked with their symbol versions (full RELRO)', async () => {
    const exe = lab.exe('imp_main', { sources: ['hard/imp_main.c'], needs: ['full'] });
    const fix = lab.pack('full', 1, 2);

    // ld.so's own answer, from a process that loaded the new build at startup.
    const fresh = lab.start(exe, { full: 2 });
    const truth = (await settled(fresh, 0))[0]!;
    fresh.dispose();
    assert.deepEqual(
      [truth.version, truth.re, truth.compat],
      ['2', '3', '0'],
      'the two regexec versions differ on REG_STARTEND',
    );

    const t = lab.start(exe, { full: 1 });
    assert.deepEqual((await settled(t, 0)).map((l) => [l.version, l.re, l.compat])[0], ['1', '-1', '-1']);
    const r = trigger(String(t.pid), fix, '--json').json;
    assert.deepEqual(
      [...r.switch.newImports].sort(byName),
      ADDED.map((a) => ({ ...a, from: 'libc.so.6' })),
    );
    for (const l of await settled(t, t.output().length))
      assert.deepEqual(
        [l.version, l.re, l.compat],
        [truth.version, truth.re, truth.compat],
        `round ${l.round}`,
      );

    trigger(String(t.pid), fix, '--revert');
    for (const l of await settled(t, t.output().length))
      assert.deepEqual([l.version, l.re, l.compat], ['1', '-1', '-1']);
    trigger(String(t.pid), fix);
    for (const l of await settled(t, t.output().length))
      assert.deepEqual([l.version, l.re, l.compat], ['2', '3', '0']);
  });

  it('the same pair under partial RELRO is refused by ulp-pack, every new import named with its version', () => {
    // test/integration/packer/rules.test.ts covers the rule itself; this checks that versioned imports of one name are each reported.
    const out = lab.bundlePath('partial', 1, 2);
    const r = runCli('ulp-pack', [lab.lib('partial', 1), lab.lib('partial', 2), '-o', out, '--json']);
    assert.equal(r.code, 2, r.stdout + r.stderr);
    const f = r.json.forward.categories.data.findings.find(
      (x: { code: string }) => x.code === 'DATA_NEW_IMPORT_PARTIAL_RELRO',
    );
    assert.ok(f, JSON.stringify(r.json.forward.categories.data.findings));
    assert.deepEqual(
      [...f.symbols].sort(),
      ADDED.map((a) => `${a.name}@${a.version}`).sort(),
      'each version of regexec is its own import',
    );
    assert.deepEqual(
      [...r.json.forward.imports.added]
        .map((a: { name: string; version: string }) => ({ name: a.name, version: a.version }))
        .sort(byName),
      ADDED,
    );
  });
});
