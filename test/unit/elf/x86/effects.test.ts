/**
 * elf/x86/effects.ts: which general registers an instruction may write, on
 * hand-assembled bytes (objdump's reading in each comment). The dataflow
 * over it (packer/analyze/confinement.ts) is sound only if no write is missed.
 */
import assert from 'node:assert/strict';
import { ALL_REGISTERS, CALLER_SAVED, effectOf, Move } from '../../../../elf/x86/effects.js';

const R = { rax: 0, rcx: 1, rdx: 2, rbx: 3, rsp: 4, rbp: 5, rsi: 6, rdi: 7, r11: 11, r13: 13 } as const;
const bit = (r: number) => 1 << r;

function eff(hex: string) {
  const b = Buffer.from(hex.replace(/ /g, ''), 'hex');
  const e = effectOf(b, 0, b.length);
  assert.ok(e, `${hex} decodes`);
  return e;
}

describe('x86 register effects', () => {
  it('64-bit register copies, LEA without index and add/sub of an immediate are followed exactly', () => {
    assert.deepEqual(pick(eff('48 89 fb')), { move: Move.Copy, dst: R.rbx, src: R.rdi }); // mov %rdi,%rbx
    assert.deepEqual(pick(eff('49 89 fb')), { move: Move.Copy, dst: R.r11, src: R.rdi }); // mov %rdi,%r11
    assert.deepEqual(pick(eff('4c 8b 5c 24 18')), { move: Move.Load, dst: R.r11, src: -1 }); // mov 0x18(%rsp),%r11
    assert.deepEqual(pick(eff('4c 89 5c 24 18')), { move: Move.Store, dst: -1, src: R.r11 }); // mov %r11,0x18(%rsp)
    const lea = eff('4c 8d ac 24 80 00 00 00'); // lea 0x80(%rsp),%r13
    assert.deepEqual(
      { ...pick(lea), imm: lea.imm },
      { move: Move.Offset, dst: R.r13, src: R.rsp, imm: 0x80 },
    );
    const sub = eff('48 81 ec 18 03 00 00'); // sub $0x318,%rsp
    assert.deepEqual(
      { ...pick(sub), imm: sub.imm },
      { move: Move.Offset, dst: R.rsp, src: R.rsp, imm: -0x318 },
    );
    assert.equal(eff('53').move, Move.Push); // push %rbx
    assert.equal(eff('53').src, R.rbx);
    assert.deepEqual(pick(eff('41 5d')), { move: Move.Pop, dst: R.r13, src: -1 }); // pop %r13
  });

  it('a switch table entry is a movslq with the index scaled by 4, and nothing else', () => {
    assert.equal(eff('48 63 04 82').move, Move.LoadEntry); // movslq (%rdx,%rax,4),%rax
    assert.equal(eff('48 63 04 c2').move, Move.Other); // movslq (%rdx,%rax,8),%rax
    assert.equal(eff('48 01 d0').move, Move.AddRegister); // add %rdx,%rax
  });

  it('a 32-bit copy or an LEA with an index is a write the dataflow does not follow', () => {
    const mov32 = eff('89 fb'); // mov %edi,%ebx
    assert.equal(mov32.move, Move.Other);
    assert.equal(mov32.writes, bit(R.rbx));
    const idx = eff('48 8d 04 8a'); // lea (%rdx,%rcx,4),%rax
    assert.equal(idx.move, Move.Other);
    assert.equal(idx.writes, bit(R.rax));
  });

  it('byte registers 4-7 without REX are ah..bh, not rsp..rdi', () => {
    assert.equal(eff('80 cc 01').writes, bit(R.rax)); // or $0x1,%ah
    assert.equal(eff('40 80 cc 01').writes, bit(R.rsp)); // or $0x1,%spl
    assert.equal(eff('b4 05').writes, bit(R.rax)); // mov $5,%ah
  });

  it('implicit writes: calls, string instructions, multiply and divide, cpuid, syscall', () => {
    assert.equal(eff('e8 00 00 00 00').writes, CALLER_SAVED); // call
    assert.equal(eff('ff 10').writes, CALLER_SAVED); // call *(%rax)
    assert.equal(eff('f3 48 ab').writes & (bit(R.rdi) | bit(R.rcx)), bit(R.rdi) | bit(R.rcx)); // rep stos
    assert.equal(eff('48 f7 e3').writes, bit(R.rax) | bit(R.rdx)); // mul %rbx
    assert.equal(eff('0f a2').writes, bit(R.rax) | bit(R.rbx) | bit(R.rcx) | bit(R.rdx)); // cpuid
    assert.equal(eff('0f 05').writes & bit(R.r11), bit(R.r11)); // syscall
  });

  it('SSE writes no general register but for the few that do; VEX counts as writing all', () => {
    assert.equal(eff('66 0f ef c0').writes, 0); // pxor %xmm0,%xmm0
    assert.equal(eff('44 0f 29 6c 24 10').writes, 0); // movaps %xmm13,0x10(%rsp)
    assert.equal(eff('66 0f d7 c1').writes, bit(R.rax)); // pmovmskb %xmm1,%eax
    assert.equal(eff('66 48 0f 7e c7').writes, bit(R.rdi)); // movq %xmm0,%rdi
    assert.equal(eff('c5 f9 ef c0').writes, ALL_REGISTERS); // vpxor
  });

  it('stores and read-modify-writes may write memory; loads and compares only read it', () => {
    assert.equal(eff('48 89 07').memory, true); // mov %rax,(%rdi)
    assert.equal(eff('83 07 01').memory, true); // addl $1,(%rdi)
    assert.equal(eff('8b 07').memory, false); // mov (%rdi),%eax
    assert.equal(eff('83 3f 01').memory, false); // cmpl $1,(%rdi)
    assert.equal(eff('0f b6 47 01').memory, false); // movzbl 0x1(%rdi),%eax
    assert.equal(eff('0f 29 07').memory, true); // movaps %xmm0,(%rdi)
  });
});

function pick(e: { move: Move; dst: number; src: number }) {
  return { move: e.move, dst: e.dst, src: e.src };
}
