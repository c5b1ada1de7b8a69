/**
 * The per-function decoding of the alignment (packer/code/align.ts) on
 * hand-assembled bytes: what each instruction's row says (offset, length,
 * flow, base register, displacement, immediate, callee), which fields a
 * shape leaves out, and the alignment of two versions of one function.
 */
import assert from 'node:assert/strict';
import { Flow } from '../../../../elf/x86/decode.js';
import {
  align,
  baseAt,
  calleeAt,
  carriesEvidence,
  decodeInstructions,
  dispAt,
  evidenceKeys,
  flowAt,
  immAt,
  immRegAt,
  isAccess,
  isIndexed,
  lengthAt,
  offsetAt,
  type Decoded,
} from '../../../../packer/code/align.js';

const START = 0x1000;
const MALLOC = 0x2000;

/** Targets outside the function are named as targets.ts would: here only malloc's PLT entry has a name. */
const names = {
  nameOf: (vaddr: number) => (vaddr === MALLOC ? 'i:malloc@GLIBC_2.2.5' : `u:${vaddr.toString(16)}`),
  hashOf: (vaddr: number) => vaddr ^ 0x5bd1e995,
};

/** Bytes from hex text, one instruction per string. */
function hex(...insns: string[]): number[] {
  return insns.flatMap((x) => x.split(' ').map((b) => parseInt(b, 16)));
}

function le32(v: number): string {
  const b = Buffer.alloc(4);
  b.writeInt32LE(v);
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(' ');
}

/** A function with a frame pointer, field accesses, a size loaded for malloc, a 64-bit immediate, and padding. */
function sample(field = 0x1d40, before: string[] = []): number[] {
  const head = hex(
    '55', // push %rbp
    '48 89 e5', // mov %rsp,%rbp
    ...before,
    `8b 87 ${le32(field)}`, // mov field(%rdi),%eax
    '48 8d 47 08', // lea 0x8(%rdi),%rax
    '8b 47 f8', // mov -0x8(%rdi),%eax
    'bf 10 00 00 00', // mov $0x10,%edi
  );
  return [
    ...head,
    ...hex(
      `e8 ${le32(MALLOC - (START + head.length + 5))}`, // call malloc
      '48 b8 f0 de bc 9a 78 56 34 12', // movabs $0x123456789abcdef0,%rax
      '8b 44 24 08', // mov 0x8(%rsp),%eax
      '41 8b 04 24', // mov (%r12),%eax
      '8b 04 87', // mov (%rdi,%rax,4),%eax
      '5d', // pop %rbp
      'c3', // ret
      '00', // padding after the last ret: not an instruction
    ),
  ];
}

function decoded(bytes: number[]): Decoded {
  const d = decodeInstructions(Buffer.from(bytes), START, names);
  assert.ok(d, 'the bytes decode');
  return d;
}

describe('packer/code/align decodeInstructions', () => {
  it('gives each instruction its offset, length, flow, operand and callee, and stops at trailing padding', () => {
    const d = decoded(sample());
    assert.equal(d.count, 13);
    assert.deepEqual(
      Array.from({ length: d.count }, (_, i) => [offsetAt(d, i), lengthAt(d, i)]),
      [
        [0, 1],
        [1, 3],
        [4, 6],
        [10, 4],
        [14, 3],
        [17, 5],
        [22, 5],
        [27, 10],
        [37, 4],
        [41, 4],
        [45, 3],
        [48, 1],
        [49, 1],
      ],
    );
    assert.equal(d.framePointer, true);
    // mov 0x1d40(%rdi),%eax: a field read.
    assert.deepEqual([baseAt(d, 2), dispAt(d, 2), isAccess(d, 2), immAt(d, 2)], [7, 0x1d40, true, undefined]);
    // lea computes an address: no access, but the displacement is kept.
    assert.deepEqual([baseAt(d, 3), dispAt(d, 3), isAccess(d, 3)], [7, 8, false]);
    assert.equal(dispAt(d, 4), -8);
    // mov $0x10,%edi then call malloc: the size in the first argument register.
    assert.deepEqual([immRegAt(d, 5), immAt(d, 5), dispAt(d, 5)], [7, 0x10, undefined]);
    assert.deepEqual(
      [flowAt(d, 6), calleeAt(d, 6), immAt(d, 6)],
      [Flow.Call, 'i:malloc@GLIBC_2.2.5', undefined],
    );
    assert.equal(calleeAt(d, 5), undefined);
    assert.deepEqual([immRegAt(d, 7), immAt(d, 7)], [0, Number(0x123456789abcdef0n)]);
    assert.deepEqual([baseAt(d, 8), dispAt(d, 8)], [4, 8]);
    // No displacement in the encoding: 0, not undefined.
    assert.deepEqual([baseAt(d, 9), dispAt(d, 9), isIndexed(d, 9)], [12, 0, false]);
    assert.equal(isIndexed(d, 10), true);
    assert.equal(flowAt(d, 12), Flow.Ret);
    assert.equal(baseAt(d, 12), -1);
  });

  it('leaves displacements out of the shape but not out of the exact hash', () => {
    const a = decoded(sample(0x1d40));
    const b = decoded(sample(0x1d50));
    assert.deepEqual(a.shapes, b.shapes);
    const differ = [...a.exacts].flatMap((x, i) => (x === b.exacts[i] ? [] : [i]));
    assert.deepEqual(differ, [2]);
  });

  it('marks what can carry layout evidence: accesses off a base but %rsp, and mov $imm into %rdi or %rsi', () => {
    const d = decoded(
      sample(0x1d40, [
        'be 08 00 00 00', // mov $0x8,%esi: the second argument register
        'ba 08 00 00 00', // mov $0x8,%edx: not a size register
        '41 bf 08 00 00 00', // mov $0x8,%r15d: REX.B, not %rdi
        'c7 c7 08 00 00 00', // mov $0x8,%edi (C7 /0)
        '0f 18 47 40', // prefetcht0 0x40(%rdi): touches nothing
        'c6 47 10 01', // movb $0x1,0x10(%rdi): an access with an immediate
      ]),
    );
    const marked = Array.from({ length: d.count }, (_, i) => i).filter((i) => carriesEvidence(d, i));
    // push, mov %rsp,%rbp, the six above (2..7), then the sample's own from 8 (not 0x8(%rsp) at 14).
    assert.deepEqual(marked, [2, 5, 7, 8, 10, 11, 15, 16]);
    // The same as read through the accessors: an access off a base other than %rsp, or a size register loaded.
    for (let i = 0; i < d.count; i++)
      assert.equal(
        carriesEvidence(d, i),
        (isAccess(d, i) && baseAt(d, i) !== 4) || immRegAt(d, i) === 7 || immRegAt(d, i) === 6,
      );
    assert.deepEqual(
      [...evidenceKeys(d)],
      marked.map((i) => d.exacts[i]!).sort((x, y) => x - y),
    );
  });

  it('refuses bytes that are not code, and decodes functions longer than its scratch space', () => {
    assert.equal(decodeInstructions(Buffer.from(hex('55', '06', 'c3')), START, names), undefined);
    const long = decoded([...Array<number>(10_000).fill(0x90), 0xc3]); // nop × 10000, ret;
    assert.equal(long.count, 10_001);
    assert.equal(offsetAt(long, 9_999), 9_999);
    assert.equal(flowAt(long, 10_000), Flow.Ret);
  });

  it('aligns an inserted instruction as a gap and a shifted field as a pair of the same shape', () => {
    const a = decoded(sample(0x1d40));
    // One more instruction before the field read (mov %rdi,%rsi), and the field moved.
    const b = decoded(sample(0x1d50, ['48 89 fe']));
    const al = align(a, b);
    assert.ok(al);
    const pairs = al.a.map((x, t) => [x, al.b[t]!, al.exact[t]!]);
    // The call's bytes moved with the insertion but its target is the same: the same instruction.
    assert.deepEqual(pairs, [
      [0, 0, true],
      [1, 1, true],
      [2, 3, false],
      [3, 4, true],
      [4, 5, true],
      [5, 6, true],
      [6, 7, true],
      [7, 8, true],
      [8, 9, true],
      [9, 10, true],
      [10, 11, true],
      [11, 12, true],
      [12, 13, true],
    ]);
  });
});
