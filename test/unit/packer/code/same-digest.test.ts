/**
 * Comparing two functions in step (packer/code/compare.ts sameDigest) gives
 * the answer comparing their digests (fingerprint) gives, on hand-assembled
 * functions that moved between two builds: references named alike or not,
 * strings alike or not, in-function jumps, bytes that differ outside the
 * PC-relative fields, bytes that do not decode. And the matching by content
 * as a multiset (match.ts byContent) takes the same functions whether a
 * size's candidates are walked in step or digested.
 */
import assert from 'node:assert/strict';
import { fingerprint, sameDigest, type CodeRef } from '../../../../packer/code/compare.js';
import { byContent, MAX_WALKED } from '../../../../packer/code/match.js';
import type { Build, FunctionInfo } from '../../../../packer/model.js';
import type { ElfSymbol } from '../../../../elf/index.js';

const CODE = 0x1000;
const RO = 0x4000;
const SIZE = 0x2000;

interface Layout {
  /** Functions as hex at their addresses. */
  fns: Array<[start: number, hex: string]>;
  /** Named functions (targets of calls): name and address, 16 bytes each. */
  syms?: Array<[name: string, start: number]>;
  /** NUL-terminated strings in read-only data at their addresses. */
  strings?: Array<[at: number, text: string]>;
}

/** The parts of a Build that naming targets and digesting read: code at CODE, read-only data at RO. */
function fakeBuild(label: string, layout: Layout): Build {
  const code = Buffer.alloc(SIZE, 0xcc);
  const ro = Buffer.alloc(SIZE, 0);
  const functions: FunctionInfo[] = layout.fns.map(([start, hex]) => {
    const bytes = Buffer.from(hex, 'hex');
    bytes.copy(code, start - CODE);
    return { name: undefined, start, end: start + bytes.length, exported: false };
  });
  for (const [at, text] of layout.strings ?? []) ro.write(text + '\0', at - RO, 'latin1');
  const symtab = (layout.syms ?? []).map(
    ([name, start], index) =>
      ({
        index,
        name,
        value: BigInt(start),
        size: 16n,
        type: 2, // STT_FUNC
        bind: 1,
        visibility: 0,
        shndx: 1,
        versionHidden: false,
        defined: true,
      }) satisfies ElfSymbol,
  );
  const area = (v: number) =>
    v >= CODE && v < CODE + SIZE ? 'code' : v >= RO && v < RO + SIZE ? 'ro' : 'none';
  return {
    label,
    sha256: label,
    stripped: true,
    obj: { symtab, dynamicSymbols: [] },
    functions: () => functions,
    relocAt: new Map(),
    relocsIn: () => [],
    writable: undefined,
    nameOf: (s: ElfSymbol) => s.name,
    bytesAt: (v: number, n: number) => {
      const a = area(v);
      if (a === 'none' || area(v + n - 1) !== a) throw new Error(`unmapped 0x${v.toString(16)}`);
      return a === 'code' ? code.subarray(v - CODE, v - CODE + n) : ro.subarray(v - RO, v - RO + n);
    },
    kindAt: (v: number) => (({ code: 'code', ro: 'readonly', none: 'none' }) as const)[area(v)],
    extentAt: (v: number) => {
      const a = area(v);
      return a === 'code' ? CODE + SIZE - v : a === 'ro' ? RO + SIZE - v : 0;
    },
  } as unknown as Build;
}

function le32(v: number): string {
  const b = Buffer.alloc(4);
  b.writeInt32LE(v);
  return b.toString('hex');
}

interface Body {
  /** The callee's name (a symbol of the build). */
  callee?: string;
  /** The string whose address is taken. */
  text?: string;
  /** mov $imm,%eax. */
  imm?: number;
  /** Where the short jump lands, from the end of the jump (0: the next instruction). */
  jump?: number;
  /** Bytes after the ret that do not decode (06 is invalid in 64-bit mode). */
  tail?: string;
}

/**
 * A function at `start`: lea text(%rip),%rdi; call callee; mov $imm,%eax;
 * jmp +jump; nop; ret, then the tail. Targets are placed per build.
 */
function fn(start: number, where: { callee: number; text: number }, body: Body): string {
  const lea = `488d3d${le32(where.text - (start + 7))}`;
  const call = `e8${le32(where.callee - (start + 12))}`;
  const mov = `b8${le32(body.imm ?? 1)}`;
  const jmp = `eb${((body.jump ?? 0) & 0xff).toString(16).padStart(2, '0')}`;
  return `${lea}${call}${mov}${jmp}90c3${body.tail ?? ''}`;
}

/** The same-named places in two builds, at different addresses: the functions moved. */
const A = { at: 0x1100, callee: { f: 0x1800, g: 0x1810 }, text: { hello: 0x4100, other: 0x4120 } };
const B = { at: 0x1240, callee: { f: 0x1900, g: 0x1910 }, text: { hello: 0x4180, other: 0x41a0 } };

function buildOf(label: string, at: typeof A, body: Body): [Build, CodeRef] {
  const where = {
    callee: at.callee[(body.callee ?? 'f') as 'f' | 'g'],
    text: at.text[(body.text ?? 'hello') as 'hello' | 'other'],
  };
  const hex = fn(at.at, where, body);
  const b = fakeBuild(label, {
    fns: [[at.at, hex]],
    syms: [
      ['f', at.callee.f],
      ['g', at.callee.g],
    ],
    strings: [
      [at.text.hello, 'hello'],
      [at.text.other, 'hellp'],
    ],
  });
  return [b, { build: b, start: at.at, end: at.at + hex.length / 2 }];
}

function compare(x: Body, y: Body): boolean {
  const [, a] = buildOf('a', A, x);
  const [, b] = buildOf('b', B, y);
  const walked = sameDigest(a, b);
  assert.equal(walked, fingerprint(a) === fingerprint(b), 'the walk and the digests disagree');
  assert.equal(sameDigest(b, a), walked, 'not symmetric');
  return walked;
}

describe('packer: comparing moved functions in step (sameDigest)', () => {
  it('finds a function that moved, with its callee and string moved too, the same', () => {
    assert.equal(compare({}, {}), true);
    assert.equal(compare({ jump: 1, tail: '0606' }, { jump: 1, tail: '0606' }), true);
  });

  it('tells a call to another function apart', () => {
    assert.equal(compare({}, { callee: 'g' }), false);
  });

  it('tells another string apart, by content', () => {
    assert.equal(compare({}, { text: 'other' }), false);
  });

  it('tells a changed byte outside the PC-relative fields apart', () => {
    assert.equal(compare({ imm: 1 }, { imm: 2 }), false);
  });

  it('tells an in-function jump to another place apart', () => {
    assert.equal(compare({ jump: 0 }, { jump: 1 }), false);
  });

  it('compares bytes that do not decode raw, and another size is another function', () => {
    assert.equal(compare({ tail: '0606' }, { tail: '0607' }), false);
    assert.equal(compare({ tail: '06' }, { tail: '0606' }), false);
  });
});

describe('packer: matching by content as a multiset (byContent)', () => {
  /** Functions `mov $imm,%eax; ret`, 6 bytes each, one per immediate, from `base` on. */
  function movs(label: string, base: number, imms: number[]): [Build, FunctionInfo[]] {
    const b = fakeBuild(label, { fns: imms.map((imm, i) => [base + 8 * i, `b8${le32(imm)}c3`]) });
    return [b, b.functions()];
  }

  function matched(left: number[], pool: number[]): Array<[number, number]> {
    const [a, fa] = movs('a', 0x1100, left);
    const [b, fb] = movs('b', 0x1400, pool);
    return byContent(a, b, fa, fb).map(([x, y]) => [fa.indexOf(x), fb.indexOf(y)]);
  }

  it('gives each function the first one left with the same code, in order', () => {
    assert.deepEqual(matched([5, 5, 7, 99], [3, 5, 7, 5]), [
      [0, 1],
      [1, 3],
      [2, 2],
    ]);
  });

  it('takes the same functions when a size has too many to walk (digests)', () => {
    const pool = [...Array.from({ length: MAX_WALKED + 4 }, (_, i) => i), 5];
    assert.ok(pool.length > MAX_WALKED);
    assert.deepEqual(matched([5, 5, 7, 99, 5], pool), [
      [0, 5],
      [1, MAX_WALKED + 4],
      [2, 7],
    ]);
  });
});
