/**
 * elf/x86/registers.ts, the project's one register table, on hand-assembled
 * bytes (objdump's reading in each comment): the instructions it learned
 * from the write table elf/x86/effects.ts had before the two were merged
 * (x87, string and port I/O, loop, xbegin, SSE4/AES/SHA, movbe, crc32,
 * adcx/adox, 32-bit addressing), each seen in the real builds. A missed
 * write would make both analyses built on it unsound.
 */
import assert from 'node:assert/strict';
import { decode, newInsn } from '../../../../elf/x86/decode.js';
import { newEffects, regNames, registerEffects } from '../../../../elf/x86/registers.js';

function regs(hex: string): { reads: string; writes: string } | 'unknown' {
  const b = Buffer.from(hex.replace(/ /g, ''), 'hex');
  const ins = newInsn();
  assert.ok(decode(b, 0, b.length, ins), `${hex} decodes`);
  assert.equal(ins.length, b.length, `${hex} is one instruction`);
  const e = registerEffects(b, 0, ins, newEffects());
  if (!e.exact) return 'unknown';
  return { reads: regNames(e.reads).join(' '), writes: regNames(e.writes).join(' ') };
}

describe('x86 register table', () => {
  it('x87 uses general registers only to address memory, but fnstsw %ax', () => {
    assert.deepEqual(regs('db 6c 24 18'), { reads: 'rsp', writes: '' }); // fldt 0x18(%rsp)
    assert.deepEqual(regs('de e1'), { reads: '', writes: '' }); // fsubrp
    assert.deepEqual(regs('df e0'), { reads: 'rax', writes: 'rax' }); // fnstsw %ax (the rest of rax stays)
  });

  it('string and port instructions move their pointers, count rcx under rep, and load part of rax', () => {
    assert.deepEqual(regs('f3 a6'), { reads: 'rcx rsi rdi', writes: 'rcx rsi rdi' }); // repz cmpsb
    assert.deepEqual(regs('ac'), { reads: 'rax rsi', writes: 'rax rsi' }); // lods %ds:(%rsi),%al
    assert.deepEqual(regs('f2 ae'), { reads: 'rax rcx rdi', writes: 'rcx rdi' }); // repnz scas
    assert.deepEqual(regs('66 6f'), { reads: 'rdx rsi', writes: 'rsi' }); // outsw
    assert.deepEqual(regs('ec'), { reads: 'rax rdx', writes: 'rax' }); // in (%dx),%al
  });

  it('loop counts rcx, jrcxz reads it, xbegin and xabort may set eax', () => {
    assert.deepEqual(regs('e2 e7'), { reads: 'rcx', writes: 'rcx' }); // loop
    assert.deepEqual(regs('e3 2e'), { reads: 'rcx', writes: '' }); // jrcxz
    assert.deepEqual(regs('c7 f8 00 00 00 00'), { reads: 'rax', writes: 'rax' }); // xbegin
    assert.deepEqual(regs('c6 f8 ff'), { reads: 'rax', writes: 'rax' }); // xabort $0xff
  });

  it('adcx, adox, crc32 and movbe write their general register; SSE4 extracts, inserts and string compares', () => {
    assert.deepEqual(regs('66 4c 0f 38 f6 c9'), { reads: 'rcx r9', writes: 'r9' }); // adcx %rcx,%r9
    assert.deepEqual(regs('f3 48 0f 38 f6 cd'), { reads: 'rcx rbp', writes: 'rcx' }); // adox %rbp,%rcx
    assert.deepEqual(regs('f2 48 0f 38 f1 c6'), { reads: 'rax rsi', writes: 'rax' }); // crc32 %rsi,%rax
    assert.deepEqual(regs('0f 38 f1 44 24 0c'), { reads: 'rax rsp', writes: '' }); // movbe %eax,0xc(%rsp)
    assert.deepEqual(regs('4d 0f 38 f0 6e 58'), { reads: 'r14', writes: 'r13' }); // movbe 0x58(%r14),%r13
    assert.deepEqual(regs('66 0f 3a 16 c0 01'), { reads: 'xmm0', writes: 'rax' }); // pextrd $1,%xmm0,%eax
    assert.deepEqual(regs('66 0f 3a 22 d8 03'), { reads: 'rax xmm3', writes: 'xmm3' }); // pinsrd $3,%eax,%xmm3
    assert.deepEqual(regs('66 0f 3a 63 c1 1a'), { reads: 'xmm0 xmm1', writes: 'rcx' }); // pcmpistri
    assert.deepEqual(regs('66 0f 3a 61 c1 1a'), { reads: 'rax rdx xmm0 xmm1', writes: 'rcx' }); // pcmpestri
  });

  it('AES, SHA and carry-less multiplication touch xmm registers only', () => {
    assert.deepEqual(regs('66 0f 38 dc d1'), { reads: 'xmm1 xmm2', writes: 'xmm2' }); // aesenc %xmm1,%xmm2
    assert.deepEqual(regs('66 0f 3a 44 c1 00'), { reads: 'xmm0 xmm1', writes: 'xmm0' }); // pclmullqlqdq
    assert.deepEqual(regs('0f 38 cb d1'), { reads: 'xmm1 xmm2', writes: 'xmm2' }); // sha256rnds2
    assert.deepEqual(regs('45 0f 3a cc c1 00'), { reads: 'xmm8 xmm9', writes: 'xmm8' }); // sha1rnds4
  });

  it('32-bit addressing reads the same registers', () => {
    assert.deepEqual(regs('67 8d 51 ff'), { reads: 'rcx', writes: 'rdx' }); // lea -0x1(%ecx),%edx
    assert.deepEqual(regs('67 48 89 d0'), { reads: 'rdx', writes: 'rax' }); // addr32 mov %rdx,%rax
  });

  it('what it still does not know is unknown: wrss, cmpxchg16b, VEX', () => {
    assert.equal(regs('0f 38 f6 07'), 'unknown'); // wrssd %eax,(%rdi)
    assert.equal(regs('48 0f c7 0f'), 'unknown'); // cmpxchg16b (%rdi)
    assert.equal(regs('c5 f9 ef c0'), 'unknown'); // vpxor %xmm0,%xmm0,%xmm0
  });
});
