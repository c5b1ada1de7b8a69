/**
 * The register analyses behind the in-flight caller check, on code given as
 * bytes (gcc -O2 -fPIC output of test/fixtures/ipara/libipara.c's first
 * form, copied from objdump): transitive clobber sets (clobbers.ts),
 * liveness after a call (liveness.ts) and the verdict (ipara.ts). The same
 * rules on builds gcc makes in the test: test/integration/packer/ipara.test.ts.
 */
import assert from 'node:assert/strict';
import { clobbersOf } from '../../../../packer/code/clobbers.js';
import { inFlightCallers, inFlightHazards } from '../../../../packer/code/ipara.js';
import { liveness } from '../../../../packer/code/liveness.js';
import type { Matching } from '../../../../packer/code/match.js';
import { programOf } from '../../../../packer/code/program.js';
import { CALL_CLOBBERED, regNames } from '../../../../elf/x86/registers.js';
import type { Build, FunctionInfo } from '../../../../packer/model.js';

/** lea 0x1(%rdi,%rdi,2),%rax; ret */
const F_RAX = '488d447f01c3';
/** mov %edi,%ecx; and $0xf,%ecx; shl %cl,%rdi; lea 0x1(%rdi),%rax; ret */
const F_RCX = '89f983e10f48d3e7488d4701c3';
/** emms (MMX, not in the register table); lea 0x1(%rdi,%rdi,2),%rax; ret */
const F_UNKNOWN = '0f77488d447f01c3';
/**
 * g(a, b, c): s += f(i) ^ b ^ c for i < a, with b ^ c in %rsi, i in %rcx, a in %r9 and s
 * in %r8 across `call f` (at 0x1127; f at 0x1100).
 */
const G =
  '4989f94885ff7e284831d631c94531c04889cf4883c101e8d4ffffff4831f04901c04939c975e94c89c0c30f1f4400004531c04c89c0c3';
const CALL_IN_G = 0x1127;

/** The parts of a Build the analyses read, over functions given as hex at their addresses. */
function fakeBuild(label: string, fns: Array<[name: string, start: number, hex: string]>): Build {
  const base = 0x1000;
  const image = Buffer.alloc(0x1000, 0xcc);
  const functions: FunctionInfo[] = fns.map(([name, start, hex]) => {
    const code = Buffer.from(hex, 'hex');
    code.copy(image, start - base);
    return { name, start, end: start + code.length, exported: name === 'g' };
  });
  const inside = (v: number) => v >= base && v < base + image.length;
  return {
    label,
    stripped: false,
    obj: { sections: [] },
    functions: () => functions,
    bytesAt: (v: number, n: number) => {
      if (!inside(v) || !inside(v + n - 1)) throw new Error(`unmapped 0x${v.toString(16)}`);
      return image.subarray(v - base, v - base + n);
    },
    kindAt: (v: number) => (inside(v) ? 'code' : 'none'),
    extentAt: (v: number) => (inside(v) ? base + image.length - v : 0),
  } as unknown as Build;
}

const pair = (f: string) =>
  fakeBuild('x', [
    ['f', 0x1100, f],
    ['g', 0x1110, G],
  ]);

function matching(a: Build, b: Build, same: { f: boolean; g: boolean }): Matching {
  const [fa, ga] = a.functions();
  const [fb, gb] = b.functions();
  return {
    named: true,
    pairs: [
      { a: fa!, b: fb!, same: same.f, by: 'name' },
      { a: ga!, b: gb!, same: same.g, by: 'name' },
    ],
    onlyA: [],
    onlyB: [],
  };
}

const names = (set: number) => regNames(set).join(' ');

describe('packer/code: clobbers, liveness and callers in flight (-fipa-ra)', () => {
  it('clobber sets are transitive and limited to the call-clobbered registers', () => {
    const p = programOf(pair(F_RCX));
    const c = clobbersOf(p);
    assert.equal(names(c[0]!), 'rax rcx rdi');
    // g's own writes (rax, rcx, rsi, rdi, r8, r9) and f's
    assert.equal(names(c[1]!), 'rax rcx rsi rdi r8 r9');
  });

  it('an instruction the table does not know clobbers every call-clobbered register', () => {
    const c = clobbersOf(programOf(pair(F_UNKNOWN)));
    assert.equal(c[0]! & CALL_CLOBBERED, CALL_CLOBBERED);
  });

  it('after `call f` in g: the loop state kept in call-clobbered registers, and what a return reads', () => {
    const p = programOf(pair(F_RAX));
    const live = liveness(p, clobbersOf(p));
    const call = Array.from(p.addr).indexOf(CALL_IN_G);
    assert.ok(call >= 0);
    // rax (f's result), rcx (i), rsi (b ^ c), r8 (s), r9 (a); rdx, xmm0, xmm1 and rsp because g's ret reads them
    assert.equal(names(live[p.next[call]!]!), 'rax rcx rdx rsp rsi r8 r9 xmm0 xmm1');
    // Before the call, f's argument: %rdi (what f reads), not the other argument registers.
    assert.equal(names(live[call]!), 'rcx rdx rsp rsi rdi r8 r9 xmm0 xmm1');
  });

  it('the new f writes %rcx: the old g is listed for apply, nothing for revert', () => {
    const [a, b] = [pair(F_RAX), pair(F_RCX)];
    const h = inFlightHazards(a, b, matching(a, b, { f: false, g: false }));
    assert.deepEqual(
      h.apply.map((r) => [r.build, r.name, r.start, r.end]),
      [['x', 'g', 0x1110, 0x1110 + G.length / 2]],
    );
    assert.equal(h.apply[0]!.reason, 'calls f at 0x1127 with rcx live across the call, which the x f writes');
    assert.deepEqual(h.revert, []);
  });

  it('the same caller when it is the same code in both builds: not listed', () => {
    const [a, b] = [pair(F_RAX), pair(F_RCX)];
    assert.deepEqual(inFlightHazards(a, b, matching(a, b, { f: false, g: true })), { apply: [], revert: [] });
  });

  it('the new f clobbers no more than the old one: nothing is listed either way', () => {
    const [a, b] = [pair(F_RAX), pair('488d047f4883c002c3')]; // lea (%rdi,%rdi,2),%rax; add $2,%rax; ret
    assert.deepEqual(inFlightHazards(a, b, matching(a, b, { f: false, g: false })), {
      apply: [],
      revert: [],
    });
  });

  it('revert: the new g in flight meets the old f, which writes what the new g keeps', () => {
    const [a, b] = [pair(F_RCX), pair(F_RAX)];
    const h = inFlightHazards(a, b, matching(a, b, { f: false, g: false }));
    assert.deepEqual(h.apply, []);
    assert.deepEqual(
      h.revert.map((r) => r.name),
      ['g'],
    );
  });

  it('one direction at a time (as the packer analyses each): the reverse direction is the revert list', () => {
    const [a, b] = [pair(F_RCX), pair(F_RAX)];
    const both = inFlightHazards(a, b, matching(a, b, { f: false, g: false }));
    assert.deepEqual(inFlightCallers(a, b, matching(a, b, { f: false, g: false })), both.apply);
    assert.deepEqual(inFlightCallers(b, a, matching(b, a, { f: false, g: false })), both.revert);
  });

  it('a changed caller whose bytes do not decode is listed when some callee clobbers more, as it may rely on it', () => {
    const undecodable = (fx: string) =>
      fakeBuild('x', [
        ['f', 0x1100, fx],
        ['g', 0x1110, G + '06'],
      ]); // 06: no instruction in 64-bit mode
    const [a, b] = [undecodable(F_RAX), pair(F_RCX)];
    const h = inFlightHazards(a, b, matching(a, b, { f: false, g: false }));
    assert.deepEqual(
      h.apply.map((r) => [r.name, r.reason]),
      [['g', 'its code could not be decoded, so the registers it keeps across calls are not known']],
    );
    // Even when f clobbers no more: what the undecodable old g wrote is not known (its lower bound is
    // nothing), so the new g may clobber more than the old g's callers were compiled against.
    const [c, d] = [undecodable(F_RAX), pair('488d047f4883c002c3')];
    assert.deepEqual(
      inFlightCallers(c, d, matching(c, d, { f: false, g: false })).map((r) => r.name),
      ['g'],
    );
    // Both decodable and no callee clobbering more: nothing to fear.
    const [e, f] = [pair(F_RAX), pair('488d047f4883c002c3')];
    assert.deepEqual(inFlightCallers(e, f, matching(e, f, { f: false, g: false })), []);
  });
});
