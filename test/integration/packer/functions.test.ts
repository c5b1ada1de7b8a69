/**
 * A build's function list (packer/model.ts functions()) on the real Debian
 * builds, which are stripped: the dynamic symbols name some functions and
 * the unwind table's ranges stand for the rest. Checked against its
 * definition: every start once and in order, each unwind range either
 * inside a named function or listed unnamed with its own end, and nothing
 * unnamed that the unwind table does not give.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parseElf } from '../../../elf/index.js';
import { unwindRanges } from '../../../packer/code/ehframe.js';
import { createBuild } from '../../../packer/model.js';
import { REAL, REAL_FILES, realBuild, realBuildsDir } from '../../../lab/real-builds.js';

describe('packer: functions of the real builds', function () {
  this.timeout(120_000);

  for (const [version, file] of [
    [REAL.ssl19, REAL_FILES.crypto],
    [REAL.ssl20, REAL_FILES.ssl],
    [REAL.expat5, REAL_FILES.expat],
    [REAL.event8, REAL_FILES.event],
  ] as const)
    it(`${version} ${file}: named functions, then the unwind ranges no named one covers`, function () {
      const dir = realBuildsDir();
      if (!dir) return this.skip();
      const bytes = readFileSync(realBuild(dir, version, file));
      const b = createBuild('old', file, bytes, parseElf(bytes, { expect: 'shared-object' }));
      const fns = b.functions();
      for (let i = 1; i < fns.length; i++) assert.ok(fns[i - 1]!.start < fns[i]!.start, `order at ${i}`);
      const named = fns.filter((f) => f.name !== undefined);
      const unnamed = fns.filter((f) => f.name === undefined);
      assert.ok(named.length > 0 && unnamed.length > 0, `${named.length} named, ${unnamed.length} unnamed`);
      const namedAt = (v: number) => named.find((f) => v >= f.start && v < f.end);
      const unwind = unwindRanges(b.obj);
      const firstAt = new Map<number, { start: number; end: number }>();
      for (const r of unwind) if (!firstAt.has(r.start)) firstAt.set(r.start, r);
      const listed = new Map(unnamed.map((f) => [f.start, f]));
      for (const r of firstAt.values()) {
        if (b.kindAt(r.start) !== 'code') continue;
        if (namedAt(r.start)) assert.ok(!listed.has(r.start), `0x${r.start.toString(16)} is named`);
        else assert.equal(listed.get(r.start)?.end, r.end, `0x${r.start.toString(16)}`);
      }
      for (const f of unnamed) {
        assert.equal(firstAt.get(f.start)?.end, f.end, `0x${f.start.toString(16)} from the unwind table`);
        assert.equal(f.exported, false);
      }
    });
});
