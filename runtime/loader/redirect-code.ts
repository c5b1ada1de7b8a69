/**
 * The machine code of an entry redirect and the check that a function's
 * entry may receive one. Pure.
 *
 * A redirect overwrites the first bytes of an old build's function (after
 * its `endbr64`, which an indirect call with IBT must still land on) with a
 * jump to the function's counterpart in the live build:
 *
 *   near  jmp rel32                   e9 <rel32>                  5 bytes
 *   far   jmp *0(%rip); .quad dest    ff 25 00 00 00 00 <abs64>  14 bytes
 *
 * The near form reaches ±2 GB from the end of the jump; the far form any
 * address. test/integration/runtime/redirect-code.test.ts re-assembles REDIRECT_ASM with
 * the system `as` and checks the templates below against it.
 *
 * The bytes after the jump are never executed again by a new call, but they
 * still are by anything already aimed at them: a branch of the function
 * itself into the overwritten bytes (a loop whose head is the entry, a
 * self tail call), or a return address inside them (a call among the first
 * instructions). Such an entry is refused here and reported; a thread whose
 * instruction pointer is inside them is the switch's concern (redirects.ts).
 */
import { decode, Flow, newInsn, relDisplacement } from '../../elf/x86/decode.js';

export const ENDBR64 = Buffer.from([0xf3, 0x0f, 0x1e, 0xfa]);

export const NEAR_SIZE = 5;
export const FAR_SIZE = 14;

/** The assembly the templates are made of; `dest` is a placeholder the test defines. */
export const REDIRECT_ASM = `	.text
near:
	jmp near + 5 + 0x12345678
far:
	jmp *0(%rip)
	.quad 0x1122334455667788
`;

/** `jmp rel32` with rel32 = 0x12345678. */
export const NEAR_TEMPLATE = Buffer.from([0xe9, 0x78, 0x56, 0x34, 0x12]);
/** `jmp *0(%rip)` followed by the 8-byte destination 0x1122334455667788. */
export const FAR_TEMPLATE = Buffer.from([
  0xff, 0x25, 0x00, 0x00, 0x00, 0x00, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11,
]);

/** The jump written at `at` that reaches `dest`: the near form when it can, the far one otherwise. */
export function encodeJump(at: bigint, dest: bigint): Buffer {
  const rel = dest - (at + BigInt(NEAR_SIZE));
  if (rel >= -(1n << 31n) && rel < 1n << 31n) {
    const b = Buffer.from(NEAR_TEMPLATE);
    b.writeInt32LE(Number(rel), 1);
    return b;
  }
  const b = Buffer.from(FAR_TEMPLATE);
  b.writeBigUInt64LE(BigInt.asUintN(64, dest), 6);
  return b;
}

export type EntryRefusal =
  /** The function is shorter than endbr64 + the jump. */
  | { reason: 'too-short'; size: number; needed: number }
  /** Bytes the decoder does not know (data in text, an unsupported encoding): no proof that nothing branches into the entry. */
  | { reason: 'undecodable'; offset: number }
  /** A branch of the function lands on the bytes the jump would replace. */
  | { reason: 'branch-into-entry'; from: number; to: number }
  /** A call among the replaced bytes: its return address would point into the jump. */
  | { reason: 'call-in-entry'; at: number };

export interface EntrySite {
  /** Offset of the jump from the function's start: 4 after an endbr64, else 0. */
  offset: number;
  bytes: Buffer;
}

/**
 * Where the jump to `dest` goes in the function whose code is `code` (its
 * original bytes, from its start to its end) at runtime address `entry`,
 * or why it cannot.
 */
export function planEntry(code: Buffer, entry: bigint, dest: bigint): EntrySite | EntryRefusal {
  const offset = code.subarray(0, 4).equals(ENDBR64) ? 4 : 0;
  const bytes = encodeJump(entry + BigInt(offset), dest);
  const end = offset + bytes.length;
  if (code.length < end) return { reason: 'too-short', size: code.length, needed: end };
  // A linear sweep of the whole function: every branch target and return address it can produce.
  const insn = newInsn();
  for (let off = 0; off < code.length;) {
    if (!decode(code, off, code.length, insn)) {
      // Padding after the last instruction (int3/nop fill counted in the symbol's size) is harmless once the entry is proven.
      if (off >= end && code.subarray(off).every((b) => b === 0xcc || b === 0x90 || b === 0x00)) break;
      return { reason: 'undecodable', offset: off };
    }
    const next = off + insn.length;
    if (insn.relOff >= 0 && (insn.flow === Flow.Jmp || insn.flow === Flow.Jcc)) {
      const rel = relDisplacement(code, off, insn);
      const to = next + rel;
      // Any landing among [0, end) would run the jump, or half of it, with the loop's registers.
      if (to >= 0 && to < end) return { reason: 'branch-into-entry', from: off, to };
    }
    if ((insn.flow === Flow.Call || insn.flow === Flow.IndirectCall) && next > offset && next < end)
      return { reason: 'call-in-entry', at: off };
    off = next;
  }
  return { offset, bytes };
}

export function describeRefusal(r: EntryRefusal): string {
  switch (r.reason) {
    case 'too-short':
      return `too short for a jump (${r.size} bytes, ${r.needed} needed)`;
    case 'undecodable':
      return `its code cannot be decoded at +0x${r.offset.toString(16)}, so a branch into its entry cannot be ruled out`;
    case 'branch-into-entry':
      return `a branch at +0x${r.from.toString(16)} lands on its entry bytes (+0x${r.to.toString(16)})`;
    case 'call-in-entry':
      return `a call at +0x${r.at.toString(16)} returns into its entry bytes`;
  }
}
