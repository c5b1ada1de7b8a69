/**
 * The function matcher (packer/code/match.ts) on stripped builds: pairs it
 * makes by position between unchanged neighbours must be the pairs the
 * symbol tables name, checked on builds whose unstripped copies (same
 * addresses) tell the truth.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parseElf, symbolIndex } from '../../../elf/index.js';
import { matchFunctions } from '../../../packer/code/match.js';
import { createBuild, type Build } from '../../../packer/model.js';
import { compile } from '../../../lab/compile.js';
import { stripped } from '../../../lab/packer/fixtures.js';

function build(label: string, path: string): Build {
  const bytes = readFileSync(path);
  return createBuild(label, path, bytes, parseElf(bytes));
}

function libmany(fixed: boolean): string {
  return compile({
    sources: ['layout/libmany.c'],
    out: `libmany-${fixed ? 'fixed' : 'base'}.so`,
    flags: [
      '-shared',
      '-fPIC',
      '-O2',
      '-Wl,--build-id',
      '-Wl,-soname,libmany.so.1',
      ...(fixed ? ['-DFIXED'] : []),
    ],
  });
}

describe('packer: matching functions of stripped builds', () => {
  it('pairs the changed static functions by position, as their names say, and the rest by content', () => {
    const [full, fixed] = [libmany(false), libmany(true)];
    const m = matchFunctions(build('old', stripped(full)), build('new', stripped(fixed)));
    assert.equal(m.named, false);
    const nameAt = (path: string) => {
      const obj = parseElf(readFileSync(path));
      return (addr: number) => {
        const s = symbolIndex(obj).containing(addr);
        return s && Number(s.value) === addr ? s.name : `0x${addr.toString(16)}`;
      };
    };
    const oldName = nameAt(full);
    const newName = nameAt(fixed);
    const byPosition = m.pairs
      .filter((p) => p.by === 'position')
      .map((p) => [oldName(p.a.start), newName(p.b.start)]);
    assert.deepEqual(byPosition, [
      ['step4', 'step4'],
      ['step9', 'step9'],
    ]);
    for (const p of m.pairs.filter((x) => x.by === 'content'))
      assert.equal(oldName(p.a.start), newName(p.b.start));
    assert.ok(m.pairs.filter((x) => x.by === 'content').length >= 10);
    assert.deepEqual(
      m.onlyA.map((f) => oldName(f.start)).filter((n) => n.startsWith('step')),
      [],
    );
  });

  it('gives the same pairs in both directions', () => {
    const a = build('old', stripped(libmany(false)));
    const b = build('new', stripped(libmany(true)));
    const forward = matchFunctions(a, b).pairs.map((p) => `${p.a.start}-${p.b.start}-${p.by}`);
    const backward = matchFunctions(b, a).pairs.map((p) => `${p.b.start}-${p.a.start}-${p.by}`);
    assert.deepEqual(backward.sort(), forward.sort());
  });
});
