/**
 * packer/code/clobbers.ts's lazyClobbersOf (over function-code.ts): the
 * same transitive clobber sets as the whole build's table, from the
 * functions the asked one reaches alone. Functions as hand-assembled bytes
 * (objdump's reading in each comment) at fixed addresses.
 */
import assert from 'node:assert/strict';
import { clobbersOf, lazyClobbersOf } from '../../../../packer/code/clobbers.js';
import { programOf } from '../../../../packer/code/program.js';
import { decodeInstructions } from '../../../../packer/code/align.js';
import { functionCodeOf } from '../../../../packer/code/function-code.js';
import { CALL_CLOBBERED, regNames } from '../../../../elf/x86/registers.js';
import type { Build, FunctionInfo } from '../../../../packer/model.js';

const FNS: Array<[name: string, start: number, hex: string]> = [
  // call b; ret
  ['a', 0x1100, 'e81b000000c3'],
  // xor %edx,%edx; jmp c+2 (into c past its first byte)
  ['b', 0x1120, '31d2e91b000000'],
  // mov %edi,%esi; jne c (a loop); ret
  ['c', 0x1140, '89fe75fcc3'],
  // xor %ecx,%ecx; call *%rax; ret: what a pointer calls is unknown, so everything
  ['d', 0x1160, '31c9ffd0c3'],
  // call d; ret
  ['e', 0x1180, 'e8dbffffffc3'],
  // mov %edi,%r8d; jmp *%rax (neither a switch nor a tail call after a teardown)
  ['s', 0x11a0, '4189f8ffe0'],
  // call *%rax; call c; ret: the pointer's call writes everything, so c need not be looked at
  ['p', 0x11c0, 'ffd0e879ffffffc3'],
];

/** The parts of a Build the analyses read; `read` records each function range whose bytes were asked for. */
function fakeBuild(fns: typeof FNS, read: Set<string>): Build {
  const base = 0x1000;
  const image = Buffer.alloc(0x1000, 0xcc);
  const functions: FunctionInfo[] = fns.map(([name, start, hex]) => {
    const code = Buffer.from(hex, 'hex');
    code.copy(image, start - base);
    return { name, start, end: start + code.length, exported: false };
  });
  const inside = (v: number) => v >= base && v < base + image.length;
  return {
    label: 'x',
    stripped: false,
    obj: { sections: [] },
    functions: () => functions,
    bytesAt: (v: number, n: number) => {
      for (const f of functions) if (v >= f.start && v < f.end) read.add(f.name!);
      if (!inside(v) || !inside(v + n - 1)) throw new Error(`unmapped 0x${v.toString(16)}`);
      return image.subarray(v - base, v - base + n);
    },
    kindAt: (v: number) => (inside(v) ? 'code' : 'none'),
    extentAt: (v: number) => (inside(v) ? base + image.length - v : 0),
  } as unknown as Build;
}

const names = (set: number) => regNames(set).join(' ');

describe('packer/code: clobber sets of the reached functions alone', () => {
  it('gives what the whole table gives, for every function', () => {
    const whole = clobbersOf(programOf(fakeBuild(FNS, new Set())));
    const lazy = lazyClobbersOf(fakeBuild(FNS, new Set()))!;
    assert.deepEqual(
      FNS.map((_, f) => names(lazy(f))),
      Array.from(whole, (w) => names(w)),
    );
    assert.equal(names(lazy(0)), 'rdx rsi'); // a: b's xor, and c's mov through b's jump into it
    assert.equal(lazy(4), whole[3]); // e: every call-clobbered register, as d
  });

  it('decodes only what the asked function reaches', () => {
    const read = new Set<string>();
    const lazy = lazyClobbersOf(fakeBuild(FNS, read))!;
    lazy(0);
    assert.deepEqual([...read].sort(), ['a', 'b', 'c']);
    lazy(4);
    assert.deepEqual([...read].sort(), ['a', 'b', 'c', 'd', 'e']);
  });

  it('a function that surely writes every call-clobbered register is settled without what it calls', () => {
    for (const lower of [false, true]) {
      const read = new Set<string>();
      const lazy = lazyClobbersOf(fakeBuild(FNS, read), lower)!;
      assert.equal(lazy(6), CALL_CLOBBERED);
      assert.deepEqual([...read], ['p'], lower ? 'lower bound' : 'upper bound');
    }
  });

  it('overlapping function ranges: no lazy answer, the caller decodes the whole build', () => {
    const overlapping: typeof FNS = [...FNS, ['a2', 0x1102, 'c3']];
    overlapping.sort((x, y) => x[1] - y[1]);
    assert.equal(lazyClobbersOf(fakeBuild(overlapping, new Set())), undefined);
  });

  it("reads another module's decoding of a function when handed one, with the same answers", () => {
    const noNames = { nameOf: () => 'x', hashOf: () => 0 };
    const own = functionCodeOf(fakeBuild(FNS, new Set()))!;
    const read = new Set<string>();
    const build = fakeBuild(FNS, read);
    const shared = functionCodeOf(build)!;
    const asked: string[] = [];
    FNS.forEach(([name, start], f) =>
      shared.decodedElsewhere(f, () => {
        asked.push(name);
        const fn = build.functions()[f]!;
        return decodeInstructions(build.bytesAt(fn.start, fn.end - fn.start), start, noNames);
      }),
    );
    assert.deepEqual(
      FNS.map((_, f) => shared.writesAll(f)),
      FNS.map((_, f) => own.writesAll(f)),
    );
    assert.deepEqual(
      asked,
      FNS.map(([name]) => name),
    );
    assert.deepEqual(
      FNS.map((_, f) => shared.writesAll(f)),
      [false, false, false, true, false, false, true],
    );
  });

  it("another function's decoding, or none, is not believed: the function is decoded again", () => {
    const noNames = { nameOf: () => 'x', hashOf: () => 0 };
    const build = fakeBuild(FNS, new Set());
    const code = functionCodeOf(build)!;
    const fns = build.functions();
    const decodingOf = (k: number) => () =>
      decodeInstructions(build.bytesAt(fns[k]!.start, fns[k]!.end - fns[k]!.start), fns[k]!.start, noNames);
    // d (xor; call *%rax; ret) handed a's decoding (call b; ret: shorter), p handed none, c handed p's (longer).
    code.decodedElsewhere(3, decodingOf(0));
    code.decodedElsewhere(6, () => undefined);
    code.decodedElsewhere(2, decodingOf(6));
    assert.equal(code.writesAll(3), true);
    assert.equal(code.writesAll(6), true);
    assert.equal(code.writesAll(2), false);
  });

  it('finds each function of a build by its position in build.functions()', () => {
    const build = fakeBuild(FNS, new Set());
    const code = functionCodeOf(build)!;
    build.functions().forEach((f, i) => assert.equal(code.indexOf(f), i));
    assert.equal(
      code.indexOf({ name: 'a', start: 0x1100, end: 0x1106, exported: false }),
      -1,
      'another object',
    );
  });
});
