/**
 * The code comparison's walk in step (packer/code/compare.ts sameDigest)
 * against the digests it replaces (fingerprint), on Debian's real builds:
 * for every pair the matcher makes and for every function of one build
 * against the function of the same size next in the other, both give the
 * same answer. And the property the walk rests on: the decoder finds the
 * same instruction whatever the bytes of its PC-relative fields, checked on
 * every instruction of libcrypto.
 */
import assert from 'node:assert/strict';
import { decode, newInsn } from '../../../elf/x86/decode.js';
import { fingerprint, sameDigest, type CodeRef } from '../../../packer/code/compare.js';
import { matchFunctions } from '../../../packer/code/match.js';
import type { Build, FunctionInfo } from '../../../packer/model.js';
import { loadBuild } from '../../../packer/pack.js';
import { REAL, REAL_FILES, realBuild, realBuildsDir } from '../../../lab/real-builds.js';

const PAIRS: Array<[string, string, string]> = [
  [REAL.ssl19, REAL.ssl20, REAL_FILES.crypto],
  [REAL.ssl20, REAL.ssl22, REAL_FILES.ssl],
  [REAL.expat2, REAL.expat5, REAL_FILES.expat],
  [REAL.event8, REAL.event8u1, REAL_FILES.event],
];

const ref = (build: Build, f: FunctionInfo): CodeRef => ({ build, start: f.start, end: f.end });

describe('packer: comparing functions in step gives the digests answer, on the real builds', function () {
  this.timeout(600_000);
  const dir = realBuildsDir();
  before(function () {
    if (!dir) this.skip();
  });

  for (const [from, to, file] of PAIRS) {
    it(`${file} ${from} -> ${to}: every matched pair, and functions of one size that are not a pair`, () => {
      const a = loadBuild('old', realBuild(dir!, from, file));
      const b = loadBuild('new', realBuild(dir!, to, file));
      const digests = new Map<CodeRef['build'], Map<number, string>>([
        [a, new Map()],
        [b, new Map()],
      ]);
      const digest = (r: CodeRef) => {
        const m = digests.get(r.build)!;
        let d = m.get(r.start);
        if (d === undefined) m.set(r.start, (d = fingerprint(r)));
        return d;
      };
      const check = (x: CodeRef, y: CodeRef) => {
        const walked = sameDigest(x, y);
        assert.equal(
          walked,
          digest(x) === digest(y),
          `0x${x.start.toString(16)} / 0x${y.start.toString(16)}`,
        );
        return walked;
      };
      const m = matchFunctions(a, b);
      let same = 0;
      for (const p of m.pairs) if (check(ref(a, p.a), ref(b, p.b))) same++;
      // Most pairs are the same code, moved: the walk has both answers to give.
      assert.ok(same > m.pairs.length / 2 && same < m.pairs.length, `${same} of ${m.pairs.length}`);
      // Functions that are not each other's pair, of the same size: what matching by content walks through.
      const bySize = new Map<number, FunctionInfo[]>();
      for (const f of b.functions()) bySize.set(f.end - f.start, [...(bySize.get(f.end - f.start) ?? []), f]);
      const partner = new Map(m.pairs.map((p) => [p.a, p.b]));
      let others = 0;
      for (const f of a.functions()) {
        const g = bySize.get(f.end - f.start)?.find((x) => x !== partner.get(f));
        if (!g) continue;
        check(ref(a, f), ref(b, g));
        others++;
      }
      assert.ok(others > 0);
    });
  }

  it('the decoder finds the same instruction whatever its PC-relative fields hold (libcrypto)', () => {
    const build = loadBuild('old', realBuild(dir!, REAL.ssl19, REAL_FILES.crypto));
    const x = newInsn();
    const y = newInsn();
    let fields = 0;
    for (const f of build.functions()) {
      const bytes = build.bytesAt(f.start, f.end - f.start);
      const copy = Buffer.from(bytes);
      let p = 0;
      while (p < bytes.length && decode(bytes, p, bytes.length, x)) {
        const masked = [
          [x.relOff, x.relSize],
          [x.ripOff, 4],
        ].filter(([off]) => off! >= 0);
        if (masked.length) {
          fields += masked.length;
          // Every bit of each field flipped, then the field cleared: neither may change what is decoded.
          for (const fill of [(v: number) => ~v & 0xff, () => 0]) {
            for (const [off, size] of masked)
              for (let i = 0; i < size!; i++) copy[p + off! + i] = fill(bytes[p + off! + i]!);
            assert.ok(decode(copy, p, copy.length, y), `0x${(f.start + p).toString(16)}`);
            for (const k of ['length', 'relOff', 'relSize', 'ripOff', 'lea'] as const)
              assert.equal(y[k], x[k], `0x${(f.start + p).toString(16)} ${k}`);
          }
          bytes.copy(copy, p, p, p + x.length);
        }
        p += x.length;
      }
    }
    assert.ok(fields > 100_000, `${fields} fields`);
  });
});
