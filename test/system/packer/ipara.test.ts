/**
 * The in-flight caller check (packer/code/ipara.ts) on Debian's real
 * builds. Their code relies on -fipa-ra (thousands of direct calls keep a
 * call-clobbered register live across a callee that leaves it alone), but
 * in these updates no changed function clobbers a register its counterpart
 * leaves alone, except one of libexpat's in the revert direction, which no
 * function calls directly: nothing is listed.
 */
import assert from 'node:assert/strict';
import { instructionsOf } from '../../../packer/code/align.js';
import { clobbersOf, lazyClobbersOf } from '../../../packer/code/clobbers.js';
import { functionCodeOf } from '../../../packer/code/function-code.js';
import { inFlightHazards } from '../../../packer/code/ipara.js';
import { liveness } from '../../../packer/code/liveness.js';
import { matchFunctions } from '../../../packer/code/match.js';
import { programOf } from '../../../packer/code/program.js';
import { CALL_CLOBBERED, RETURN_READS } from '../../../elf/x86/registers.js';
import { loadBuild } from '../../../packer/pack.js';
import { REAL, REAL_FILES, realBuild, realBuildsDir } from '../../../lab/real-builds.js';

/** [old, new, file, the new build's changed functions that clobber more than their old counterparts] */
const PAIRS: Array<[string, string, string, number[]]> = [
  [REAL.ssl19, REAL.ssl20, REAL_FILES.crypto, []],
  [REAL.ssl20, REAL.ssl22, REAL_FILES.crypto, []],
  [REAL.ssl19, REAL.ssl20, REAL_FILES.ssl, []],
  // An unnamed function paired by position: every call-clobbered register before, no r11 or xmm after.
  [REAL.expat2, REAL.expat5, REAL_FILES.expat, [0x17270]],
  [REAL.event8, REAL.event8u1, REAL_FILES.event, []],
];

describe('packer: callers in flight that rely on -fipa-ra, on the real builds', function () {
  this.timeout(600_000);
  const dir = realBuildsDir();
  before(function () {
    if (!dir) this.skip();
  });

  it('libcrypto relies on -fipa-ra: direct calls with a call-clobbered register live across a callee that keeps it', () => {
    const p = programOf(loadBuild('old', realBuild(dir!, REAL.ssl19, REAL_FILES.crypto)));
    const clobbers = clobbersOf(p);
    const live = liveness(p, clobbers);
    let relying = 0;
    for (let i = 0; i < p.count; i++) {
      const f = p.callee[i]!;
      const n = p.next[i]!;
      // Return registers left out: a return reads them whatever the function's type.
      if (f >= 0 && n >= 0 && live[n]! & CALL_CLOBBERED & ~RETURN_READS & ~clobbers[f]!) relying++;
    }
    // 2466 measured: the rule has work to do on real code.
    assert.ok(relying > 1000, `${relying} call sites`);
  });

  for (const [from, to, file, shrinks] of PAIRS) {
    it(`${file} ${from} -> ${to}: no new function clobbers more than its old counterpart, nothing is listed`, () => {
      const a = loadBuild('old', realBuild(dir!, from, file));
      const b = loadBuild('new', realBuild(dir!, to, file));
      const m = matchFunctions(a, b);
      const [pa, pb] = [programOf(a), programOf(b)];
      const [ca, cb] = [clobbersOf(pa), clobbersOf(pb)];
      const ia = new Map(pa.functions.map((f, i) => [f, i]));
      const ib = new Map(pb.functions.map((f, i) => [f, i]));
      const more = (x: number, y: number) => (x & ~y & CALL_CLOBBERED) !== 0;
      const changed = m.pairs.filter((p) => !p.same);
      const grows = changed.filter((p) => more(cb[ib.get(p.b)!]!, ca[ia.get(p.a)!]!));
      const shrink = changed.filter((p) => more(ca[ia.get(p.a)!]!, cb[ib.get(p.b)!]!));
      assert.deepEqual(grows, [], 'apply: no new function writes more');
      assert.deepEqual(
        shrink.map((p) => p.a.start),
        shrinks,
        'revert: old functions that write more',
      );
      assert.deepEqual(inFlightHazards(a, b, m), { apply: [], revert: [] });
      // The pack's early exit reads the sets of the reached functions alone: the same as the whole table's.
      for (const [build, whole] of [
        [a, ca],
        [b, cb],
      ] as const) {
        const lazy = lazyClobbersOf(build)!;
        assert.ok(lazy, 'function ranges do not overlap');
        const differ = whole.findIndex((w, f) => lazy(f) !== w);
        assert.equal(differ, -1, `${build.label}: function ${differ}`);
      }
      // The length decoder's answer from the layout check's decoding (align.ts) is its own, for every function.
      const own = functionCodeOf(a)!;
      const again = loadBuild('old', realBuild(dir!, from, file));
      const shared = functionCodeOf(again)!;
      again
        .functions()
        .forEach((fn, f) => shared.decodedElsewhere(f, () => instructionsOf(again, fn.start, fn.end)));
      const disagree = a.functions().findIndex((_, f) => shared.writesAll(f) !== own.writesAll(f));
      assert.equal(disagree, -1, `writesAll of function ${disagree}`);
    });
  }
});
