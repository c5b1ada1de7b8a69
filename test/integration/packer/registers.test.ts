/**
 * The register table (elf/x86/registers.ts) on encodings made by the
 * GNU assembler: each line below is assembled by `as`, decoded by the
 * length decoder and looked up; reads and writes must be what the line
 * says. Writes to part of a register count as reads too, and '*' marks an
 * instruction the table must call unknown (every register read and written).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decode, newInsn } from '../../../elf/x86/decode.js';
import { newEffects, regNames, registerEffects } from '../../../elf/x86/registers.js';

/** [assembly, registers read, registers written] */
const CASES: Array<[string, string, string]> = [
  // moves and partial writes
  ['mov %rdi,%rax', 'rdi', 'rax'],
  ['mov %edi,%ecx', 'rdi', 'rcx'],
  ['mov %di,%cx', 'rcx rdi', 'rcx'],
  ['mov %dh,%al', 'rax rdx', 'rax'],
  ['mov %sil,%al', 'rax rsi', 'rax'],
  ['mov 0x10(%rdi,%rsi,8),%r9', 'rsi rdi', 'r9'],
  ['mov (%r12,%r13,1),%r14d', 'r12 r13', 'r14'],
  ['mov %r10,0x8(%rsp)', 'rsp r10', ''],
  ['movl $1,(%rbx)', 'rbx', ''],
  ['mov $5,%al', 'rax', 'rax'],
  ['mov $7,%r11d', '', 'r11'],
  ['movabs $0x1122334455667788,%r11', '', 'r11'],
  ['movzbl %ch,%eax', 'rcx', 'rax'],
  ['movzbl (%rdx),%eax', 'rdx', 'rax'],
  ['movsbq %r8b,%r9', 'r8', 'r9'],
  ['movzwl %si,%edi', 'rsi', 'rdi'],
  ['movslq %ecx,%rdx', 'rcx', 'rdx'],
  ['mov %fs:0x28,%rax', '', 'rax'],
  ['lea 0x1(%rdi,%rdi,2),%rax', 'rdi', 'rax'],
  ['lea 0x10(%rip),%rdx', '', 'rdx'],
  // arithmetic
  ['add %rsi,%rdi', 'rsi rdi', 'rdi'],
  ['add $8,%rsp', 'rsp', 'rsp'],
  ['sub (%rcx),%eax', 'rax rcx', 'rax'],
  ['and $0xf,%ecx', 'rcx', 'rcx'],
  ['or %al,(%rdx)', 'rax rdx', ''],
  ['adc $0,%rdx', 'rdx', 'rdx'],
  ['xor %eax,%eax', '', 'rax'],
  ['xor %r8d,%r8d', '', 'r8'],
  ['sub %rdx,%rdx', '', 'rdx'],
  ['xor %rdx,%rsi', 'rdx rsi', 'rsi'],
  ['cmp %rcx,%r9', 'rcx r9', ''],
  ['cmpb $0,(%rdi)', 'rdi', ''],
  ['cmp $0x6,%eax', 'rax', ''],
  ['test %rdi,%rdi', 'rdi', ''],
  ['test $1,%al', 'rax', ''],
  ['inc %r12', 'r12', 'r12'],
  ['decl 4(%rbx)', 'rbx', ''],
  ['neg %rax', 'rax', 'rax'],
  ['not %ecx', 'rcx', 'rcx'],
  ['imul %rsi,%rdi', 'rsi rdi', 'rdi'],
  ['imul $24,%rdx,%rax', 'rdx', 'rax'],
  ['imulq (%rcx)', 'rax rcx', 'rax rdx'],
  ['mul %rcx', 'rax rcx', 'rax rdx'],
  ['div %r8', 'rax rdx r8', 'rax rdx'],
  ['idivl (%rsi)', 'rax rdx rsi', 'rax rdx'],
  ['divb %cl', 'rax rcx', 'rax'],
  ['shl %cl,%rdi', 'rcx rdi', 'rdi'],
  ['sar $7,%rax', 'rax', 'rax'],
  ['shr %edx', 'rdx', 'rdx'],
  ['rol $3,%r9d', 'r9', 'r9'],
  ['shld $4,%rax,%rdx', 'rax rdx', 'rdx'],
  ['shrd %cl,%rdx,%rax', 'rax rcx rdx', 'rax'],
  ['cltq', 'rax', 'rax'],
  ['cqto', 'rax', 'rdx'],
  ['cltd', 'rax', 'rdx'],
  ['sete %al', 'rax', 'rax'],
  ['setne %r8b', 'r8', 'r8'],
  ['cmovne %rsi,%rax', 'rax rsi', 'rax'],
  ['cmovl (%rdx),%ecx', 'rcx rdx', 'rcx'],
  ['bswap %r9', 'r9', 'r9'],
  ['bsf %rdi,%rax', 'rax rdi', 'rax'],
  ['popcnt %rdi,%rax', 'rdi', 'rax'],
  ['bt %rsi,%rdi', 'rsi rdi', ''],
  ['bts $3,%rax', 'rax', 'rax'],
  ['xchg %rdi,%rax', 'rax rdi', 'rax rdi'],
  ['xchg %r8,%rax', 'rax r8', 'rax r8'],
  ['lock cmpxchg %rdx,(%rdi)', 'rax rdx rdi', 'rax'],
  ['lock xadd %eax,(%rdx)', 'rax rdx', 'rax'],
  ['rep stos %rax,%es:(%rdi)', 'rax rcx rdi', 'rcx rdi'],
  ['rep movsb', 'rcx rsi rdi', 'rcx rsi rdi'],
  // stack and control flow (what a call reads and clobbers is the analysis's business)
  ['push %rbx', 'rbx rsp', 'rsp'],
  ['pop %r15', 'rsp', 'rsp r15'],
  ['push $1', 'rsp', 'rsp'],
  ['pushq 8(%rdi)', 'rsp rdi', 'rsp'],
  ['leave', 'rbp', 'rsp rbp'],
  ['jmp .', '', ''],
  ['jne .', '', ''],
  ['call .', 'rsp', 'rsp'],
  ['call *%rax', 'rax rsp', 'rsp'],
  ['call *0x10(%rbx)', 'rbx rsp', 'rsp'],
  ['jmp *%rdx', 'rdx', ''],
  ['notrack jmp *%rax', 'rax', ''],
  ['jmp *0x200(%rip)', '', ''],
  ['bnd jmp *0x200(%rip)', '', ''],
  ['ret', 'rsp', 'rsp'],
  ['repz ret', 'rsp', 'rsp'],
  ['nop', '', ''],
  ['nopw 0x0(%rax,%rax,1)', '', ''],
  ['cs nopw 0x0(%rax,%rax,1)', '', ''],
  ['.byte 0x66, 0x66, 0x2e, 0x0f, 0x1f, 0x84, 0, 0, 0, 0, 0', '', ''],
  ['xchg %ax,%ax', '', ''],
  ['endbr64', '', ''],
  ['rdsspq %rax', '', 'rax'],
  ['pause', '', ''],
  ['ud2', '', ''],
  ['int3', '', ''],
  ['hlt', '', ''],
  ['mfence', '', ''],
  ['syscall', 'rax rdx rsi rdi r8 r9 r10', 'rax rcx r11'],
  ['cpuid', 'rax rcx', 'rax rcx rdx rbx'],
  ['rdtsc', '', 'rax rdx'],
  ['rdrand %rax', '', 'rax'],
  ['incsspq %rax', '*', '*'],
  ['rdpid %rax', '*', '*'],
  // SSE
  ['movaps %xmm1,%xmm2', 'xmm1', 'xmm2'],
  ['movsd (%rdi),%xmm0', 'rdi', 'xmm0'],
  ['movsd %xmm1,%xmm0', 'xmm0 xmm1', 'xmm0'],
  ['movsd %xmm0,8(%rsp)', 'rsp xmm0', ''],
  ['movups %xmm3,(%rax)', 'rax xmm3', ''],
  ['addsd %xmm1,%xmm0', 'xmm0 xmm1', 'xmm0'],
  ['mulpd (%rsi),%xmm5', 'rsi xmm5', 'xmm5'],
  ['pxor %xmm0,%xmm0', '', 'xmm0'],
  ['xorps %xmm7,%xmm7', '', 'xmm7'],
  ['pxor %xmm1,%xmm2', 'xmm1 xmm2', 'xmm2'],
  ['cvtsi2sd %rdi,%xmm0', 'rdi xmm0', 'xmm0'],
  ['cvttsd2si %xmm0,%eax', 'xmm0', 'rax'],
  ['movq %rax,%xmm0', 'rax', 'xmm0'],
  ['movq %xmm0,%rax', 'xmm0', 'rax'],
  ['movd %xmm1,%ecx', 'xmm1', 'rcx'],
  ['movq %xmm0,%xmm1', 'xmm0', 'xmm1'],
  ['ucomisd %xmm1,%xmm0', 'xmm0 xmm1', ''],
  ['movdqu (%rsi),%xmm8', 'rsi', 'xmm8'],
  ['movdqa %xmm9,(%rdi)', 'rdi xmm9', ''],
  ['pmovmskb %xmm2,%edx', 'xmm2', 'rdx'],
  ['pshufd $0,%xmm1,%xmm3', 'xmm1', 'xmm3'],
  ['pcmpeqb %xmm1,%xmm0', 'xmm0 xmm1', 'xmm0'],
  ['pshufb %xmm1,%xmm0', 'xmm0 xmm1', 'xmm0'],
  ['psrldq $8,%xmm4', 'xmm4', 'xmm4'],
  // x87 uses general registers only for addresses; crc32; 32-bit addressing reads the same registers
  ['fld1', '', ''],
  ['fnop', '', ''],
  ['fnstsw %ax', 'rax', 'rax'],
  ['crc32q %rax,%rdx', 'rax rdx', 'rdx'],
  ['addr32 mov (%eax),%ecx', 'rax', 'rcx'],
  ['lodsb', 'rax rsi', 'rax rsi'],
  ['repnz scasb', 'rax rcx rdi', 'rcx rdi'],
  // unknown: every register read and written
  ['vpxor %ymm0,%ymm0,%ymm0', '*', '*'],
  ['vzeroupper', '*', '*'],
  ['xgetbv', '*', '*'],
  ['movq %mm0,%rax', '*', '*'],
  ['paddb %mm1,%mm0', '*', '*'],
  ['cmpxchg16b (%rdi)', '*', '*'],
  ['enter $8,$0', '*', '*'],
  ['mov %eax,%ds', '*', '*'],
];

/** The lines assembled by gas, as one flat code buffer. */
function assemble(lines: string[]): Buffer {
  const dir = mkdtempSync(join(tmpdir(), 'ulp-regs-'));
  try {
    writeFileSync(join(dir, 'x.s'), `.text\n${lines.join('\n')}\n`);
    execFileSync('as', ['-o', join(dir, 'x.o'), join(dir, 'x.s')]);
    execFileSync('objcopy', ['-O', 'binary', '-j', '.text', join(dir, 'x.o'), join(dir, 'x.bin')]);
    return readFileSync(join(dir, 'x.bin'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A register set as the sorted names the table uses, '*' for every register. */
function names(set: number): string {
  return set === -1 ? '*' : regNames(set).sort().join(' ');
}
const sorted = (s: string) => s.split(' ').filter(Boolean).sort().join(' ');

describe('packer: register effects of x86-64 instructions, on encodings made by gas', () => {
  it('reads and writes of each instruction', () => {
    const code = assemble(CASES.map(([asm]) => asm));
    const ins = newInsn();
    const eff = newEffects();
    let p = 0;
    const wrong: string[] = [];
    for (const [asm, reads, writes] of CASES) {
      assert.ok(decode(code, p, code.length, ins), `${asm}: does not decode`);
      registerEffects(code, p, ins, eff);
      const got = `${names(eff.reads)} / ${names(eff.writes)}`;
      const want = `${sorted(reads)} / ${sorted(writes)}`;
      if (got !== want)
        wrong.push(`${asm} (${code.subarray(p, p + ins.length).toString('hex')}): ${got}, want ${want}`);
      assert.equal(eff.exact, reads !== '*', `${asm}: exact`);
      p += ins.length;
    }
    assert.equal(p, code.length, 'every byte decoded');
    assert.deepEqual(wrong, []);
  });
});
