/**
 * The call chain of a stopped thread, walked with the unwind rules of the
 * objects its frames belong to (elf/cfi.ts), the way a debugger does it.
 * safe-thread.ts asks whether any *frame* of a thread is inside the
 * allocator, fork or ld.so: a return address left over on the stack from an
 * earlier call (nginx's master keeps one of fork() for its whole life) is
 * not a frame, and must not make the thread unusable forever.
 *
 * Pure but for `readU64`. A walk that meets code without rules (JIT code,
 * the vDSO, a corrupt frame) stops and says so; the caller then falls back
 * to a conservative scan of the rest of the stack.
 */
import { evaluateExpression, frameRulesAt, type FrameRules, type RegRule } from '../../elf/cfi.js';
import type { Regs } from '../sys/regs.js';
import { contains, type ProcessObject } from './model.js';

/** DWARF register numbers of x86-64 (System V psABI, figure 3.36): 0-15 general, 16 the return address. */
const DWARF_REGS = [
  'rax',
  'rdx',
  'rcx',
  'rbx',
  'rsi',
  'rdi',
  'rbp',
  'rsp',
  'r8',
  'r9',
  'r10',
  'r11',
  'r12',
  'r13',
  'r14',
  'r15',
  'rip',
] as const;
const RSP = 7;
const MAX_FRAMES = 256;

export interface CallChain {
  /** rip, then every return address, innermost first. */
  pcs: bigint[];
  /** The walk reached the outermost frame (a return address rule of "undefined", or 0). */
  complete: boolean;
  /** The stack pointer of the last frame reached: a conservative scan starts here when the walk is incomplete. */
  sp: bigint;
}

export function callChain(
  objects: readonly ProcessObject[],
  regs: Regs,
  readU64: (addr: bigint) => bigint | undefined,
): CallChain {
  const cur = new Map<number, bigint>(DWARF_REGS.map((name, i) => [i, regs[name]]));
  const pcs: bigint[] = [regs.rip];
  let pc: bigint = regs.rip;
  // The first pc is where the thread stopped; a return address points after its call, so its caller is looked up at pc - 1.
  let exact = true;
  for (let depth = 0; depth < MAX_FRAMES; depth++) {
    const sp: bigint = cur.get(RSP)!;
    const lookup: bigint = exact ? pc : pc - 1n;
    const obj: ProcessObject | undefined = objects.find(
      (o) => contains(o.span, lookup) && o.code.some((c) => contains(c, lookup)),
    );
    const rules: FrameRules | undefined = obj && frameRulesAt(obj.elf, Number(lookup - obj.bias));
    if (!rules) return { pcs, complete: false, sp };
    const reg = (n: number) => cur.get(n);
    const cfa =
      rules.cfa.kind === 'reg'
        ? (cur.get(rules.cfa.reg) ?? 0n) + BigInt(rules.cfa.offset)
        : evaluateExpression(rules.cfa.expr, reg, readU64);
    if (cfa === undefined) return { pcs, complete: false, sp };
    const valueOf = (rule: RegRule | undefined, n: number): bigint | undefined | 'end' => {
      if (!rule || rule.kind === 'same') return cur.get(n);
      switch (rule.kind) {
        case 'undefined':
          return 'end';
        case 'offset':
          return readU64(BigInt.asUintN(64, cfa + BigInt(rule.offset)));
        case 'val-offset':
          return BigInt.asUintN(64, cfa + BigInt(rule.offset));
        case 'register':
          return cur.get(rule.reg);
        case 'expression': {
          const at = evaluateExpression(rule.expr, reg, readU64, cfa);
          return at === undefined ? undefined : readU64(at);
        }
        case 'val-expression':
          return evaluateExpression(rule.expr, reg, readU64, cfa);
      }
    };
    const ra = valueOf(rules.regs.get(rules.raReg), rules.raReg);
    if (ra === 'end' || ra === 0n) return { pcs, complete: true, sp };
    if (ra === undefined) return { pcs, complete: false, sp };
    const next = new Map<number, bigint>();
    for (let n = 0; n < 16; n++) {
      const v = valueOf(rules.regs.get(n), n);
      if (typeof v === 'bigint') next.set(n, v);
    }
    next.set(RSP, cfa);
    next.set(16, ra);
    // A frame that does not move the stack up cannot be walked past: stop rather than loop.
    if (cfa <= sp && !rules.signalFrame) return { pcs, complete: false, sp };
    for (const [n, v] of next) cur.set(n, v);
    pcs.push(ra);
    pc = ra;
    exact = rules.signalFrame;
  }
  return { pcs, complete: false, sp: cur.get(RSP)! };
}
