/**
 * Which general registers an x86-64 instruction may write, for a dataflow
 * that must never miss a write (packer/analyze/confinement.ts: where a
 * pointer in a register came from). The answer is a superset: an operand
 * field that names an XMM or MMX register counts as the general register of
 * the same number, an 8- or 32-bit write counts as a write of the whole
 * register, and every opcode not listed here (VEX/EVEX, system
 * instructions, anything rare) counts as writing all sixteen. Only the
 * few moves a pointer travels by are decoded exactly: 64-bit register
 * copies, 64-bit LEA without an index, 64-bit add/sub of an immediate, and
 * the stack pointer's push, pop and leave.
 */
import { decode, Flow, newInsn, type Insn } from './decode.js';

export const RSP = 4;
export const RBP = 5;
export const ALL_REGISTERS = 0xffff;
/** What a call may change under the System V ABI: rax, rcx, rdx, rsi, rdi, r8-r11. */
export const CALLER_SAVED = 0b0000_1111_1100_0111;

export const enum Move {
  /** Nothing the dataflow follows: the registers in `writes` get unknown values. */
  Other = 0,
  /** dst = src (64-bit register to register). */
  Copy = 1,
  /** dst = src + imm (LEA without index, or add/sub of an immediate, 64-bit). */
  Offset = 2,
  /** rsp -= 8. */
  Push = 3,
  /** dst = unknown, rsp += 8. */
  Pop = 4,
  /** rsp = rbp + 8, rbp = unknown. */
  Leave = 5,
  /** dst = the 64-bit word at the memory operand (mov m64, reg). */
  Load = 6,
  /** The 64-bit word at the memory operand = src (mov reg, m64). */
  Store = 7,
  /** dst = the sign-extended 32-bit word at the memory operand (movslq m32, reg: a jump table's entry). */
  LoadEntry = 8,
  /** dst += src (64-bit add of two registers). */
  AddRegister = 9,
}

export interface Effect {
  /** Bit r set: register r (0 rax .. 15 r15) may be written. */
  writes: number;
  move: Move;
  dst: number;
  src: number;
  imm: number;
  /** It has a memory operand that it may write (Store, and every form not known to only read it). */
  memory: boolean;
}

const bit = (r: number) => 1 << r;

/** Opcodes of the one-byte map with a ModRM whose rm operand (when a register) is the only one written. */
const ONE_RM = new Set([
  0x00, 0x01, 0x08, 0x09, 0x10, 0x11, 0x18, 0x19, 0x20, 0x21, 0x28, 0x29, 0x30, 0x31, 0x88, 0x89, 0x8c, 0xc0,
  0xc1, 0xc6, 0xc7, 0xd0, 0xd1, 0xd2, 0xd3,
]);
/** ... whose reg operand is the only one written. */
const ONE_REG = new Set([
  0x02, 0x03, 0x0a, 0x0b, 0x12, 0x13, 0x1a, 0x1b, 0x22, 0x23, 0x2a, 0x2b, 0x32, 0x33, 0x63, 0x69, 0x6b, 0x8a,
  0x8b, 0x8d,
]);
/** ... that write no register (compare, test, moves into segment registers). */
const ONE_NONE = new Set([0x38, 0x39, 0x3a, 0x3b, 0x84, 0x85, 0x8e]);
/** Without ModRM: accumulator forms of the ALU (add $imm,%eax...) and what else writes rax alone. */
const ACC_IMM = new Set([
  0x04, 0x05, 0x0c, 0x0d, 0x14, 0x15, 0x1c, 0x1d, 0x24, 0x25, 0x2c, 0x2d, 0x34, 0x35, 0x98, 0x9f, 0xa0, 0xa1,
  0xe4, 0xe5, 0xec, 0xed, 0xd7,
]);
/** Without ModRM, writing nothing: compares, jumps, flag operations, nop, int3, hlt. */
const ONE_QUIET = new Set([
  0x3c, 0x3d, 0xa8, 0xa9, 0x9e, 0xc2, 0xc3, 0xcc, 0xe6, 0xe7, 0xe9, 0xeb, 0xee, 0xef, 0xf4, 0xf5, 0xf8, 0xf9,
  0xfa, 0xfb, 0xfc, 0xfd,
]);
/** 0F-map opcodes whose reg operand alone is written. */
const TWO_REG = new Set([0xaf, 0xb6, 0xb7, 0xbe, 0xbf, 0xb8, 0xbc, 0xbd]);
/** 0F-map opcodes whose rm operand alone is written. */
const TWO_RM = new Set([0xab, 0xb3, 0xbb, 0xba, 0xa4, 0xa5, 0xac, 0xad]);

/** Opcodes whose operands are bytes (one-byte map, and after 0F): setcc, cmpxchg and xadd of a byte. */
const BYTE_ONE = new Set([
  0x00, 0x02, 0x08, 0x0a, 0x10, 0x12, 0x18, 0x1a, 0x20, 0x22, 0x28, 0x2a, 0x30, 0x32, 0x80, 0x86, 0x88, 0x8a,
  0xc0, 0xc6, 0xd0, 0xd2, 0xf6, 0xfe,
]);
const BYTE_TWO = new Set([
  0x90, 0x91, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0x9b, 0x9c, 0x9d, 0x9e, 0x9f, 0xb0, 0xc0,
]);

const scratch = newInsn();

/**
 * The effect of the instruction at buf[off] (end: the first byte that must
 * not be read), or undefined when it does not decode. `insn` may be passed
 * when the caller decoded it already.
 */
export function effectOf(buf: Uint8Array, off: number, end: number, insn?: Insn): Effect | undefined {
  const d = insn ?? scratch;
  if (!insn && !decode(buf, off, end, d)) return undefined;
  const other = (writes: number): Effect => ({ writes, move: Move.Other, dst: -1, src: -1, imm: 0, memory });
  let p = off;
  let opsize16 = false;
  let addr32 = false;
  for (; ; p++) {
    const b = buf[p]!;
    if (b === 0x66) opsize16 = true;
    else if (b === 0x67) addr32 = true;
    else if (!(
      b === 0xf0 ||
      b === 0xf2 ||
      b === 0xf3 ||
      b === 0x2e ||
      b === 0x36 ||
      b === 0x3e ||
      b === 0x26 ||
      b === 0x64 ||
      b === 0x65
    ))
      break;
  }
  let rex = 0;
  if ((buf[p]! & 0xf0) === 0x40) rex = buf[p++]!;
  const w = (rex & 8) !== 0 && !opsize16;
  const op = buf[p]!;
  const memory =
    d.modrmOff >= 0 &&
    buf[off + d.modrmOff]! >> 6 !== 3 &&
    !d.hint &&
    !readsOnly(buf, p, buf[off + d.modrmOff]!);
  // VEX and EVEX name a third register in their prefix: not decoded, so everything may change.
  if (op === 0xc4 || op === 0xc5 || op === 0x62) return other(ALL_REGISTERS);
  const modrm = d.modrmOff >= 0 ? buf[off + d.modrmOff]! : -1;
  const mod = modrm >> 6;
  // Without a REX prefix, byte registers 4-7 are ah, ch, dh, bh: parts of rax, rcx, rdx, rbx, not rsp..rdi.
  const byteOp = rex === 0 && (op === 0x0f ? BYTE_TWO.has(buf[p + 1]!) : BYTE_ONE.has(op));
  const asByte = (r: number) => (byteOp && r >= 4 && r <= 7 ? r - 4 : r);
  const regField = modrm < 0 ? -1 : asByte(((modrm >> 3) & 7) | ((rex & 4) << 1));
  const rmReg = modrm < 0 || mod !== 3 ? -1 : asByte((modrm & 7) | ((rex & 1) << 3));
  const rmBit = rmReg < 0 ? 0 : bit(rmReg);
  const regBit = regField < 0 ? 0 : bit(regField);
  const move = (m: Move, writes: number, dst: number, src: number): Effect => ({
    writes,
    move: m,
    dst,
    src,
    imm: 0,
    memory,
  });
  const imm = (): number =>
    d.immSize === 1
      ? (buf[off + d.immOff]! << 24) >> 24
      : d.immSize === 4
        ? buf[off + d.immOff]! |
          (buf[off + d.immOff + 1]! << 8) |
          (buf[off + d.immOff + 2]! << 16) |
          (buf[off + d.immOff + 3]! << 24) |
          0
        : NaN;

  if (op === 0x0f) return twoByte(buf, p + 1, rex, regBit, rmBit, d, other);
  if (d.flow === Flow.Call || d.flow === Flow.IndirectCall) return other(CALLER_SAVED);
  if (d.flow === Flow.Jcc || d.flow === Flow.Jmp || d.flow === Flow.Ret || d.flow === Flow.IndirectJmp) {
    // jmp *%reg: src names the register the target is in (a switch table's computed target).
    if (d.flow === Flow.IndirectJmp && op === 0xff && mod === 3) return { ...other(0), src: rmReg };
    // loop (E0-E2) counts rcx down; xbegin (C7 F8) leaves its abort status in eax.
    return other(op >= 0xe0 && op <= 0xe2 ? bit(1) : op === 0xc7 ? bit(0) : 0);
  }
  if (modrm >= 0) {
    // 64-bit register copies: mov %src,%dst in either direction.
    if (w && mod === 3 && op === 0x89) return move(Move.Copy, rmBit, rmReg, regField);
    if (w && mod === 3 && op === 0x8b) return move(Move.Copy, regBit, regField, rmReg);
    if (w && mod !== 3 && op === 0x8b) return move(Move.Load, regBit, regField, -1);
    if (w && mod !== 3 && op === 0x89) return move(Move.Store, 0, -1, regField);
    // movslq (table,index,4): an entry of a table of 32-bit offsets (a scaled index other than 4 is not one).
    if (w && mod !== 3 && op === 0x63 && (!d.indexed || buf[off + d.modrmOff + 1]! >> 6 === 2))
      return move(Move.LoadEntry, regBit, regField, -1);
    if (w && mod === 3 && op === 0x01) return move(Move.AddRegister, rmBit, rmReg, regField);
    if (w && mod === 3 && op === 0x03) return move(Move.AddRegister, regBit, regField, rmReg);
    if (op === 0x8d) {
      if (w && !addr32 && d.base >= 0 && !d.indexed) {
        const disp =
          d.dispOff < 0
            ? 0
            : d.dispSize === 1
              ? (buf[off + d.dispOff]! << 24) >> 24
              : readI32(buf, off + d.dispOff);
        return { ...move(Move.Offset, regBit, regField, d.base), imm: disp, memory: false };
      }
      return other(regBit);
    }
    // add/sub $imm, %reg (81 /0, 81 /5, 83 /0, 83 /5), 64-bit.
    if ((op === 0x81 || op === 0x83) && w && mod === 3) {
      const sub = (modrm >> 3) & 7;
      if (sub === 0 || sub === 5) {
        const v = imm();
        return { ...move(Move.Offset, rmBit, rmReg, rmReg), imm: sub === 0 ? v : -v };
      }
    }
    if (op === 0x8f) return move(Move.Pop, rmBit | bit(RSP), rmReg, -1);
    if (ONE_RM.has(op)) return other(rmBit);
    if (ONE_REG.has(op)) return other(regBit);
    if (ONE_NONE.has(op)) return other(0);
    const sub = (modrm >> 3) & 7;
    if (op >= 0x80 && op <= 0x83) return other(sub === 7 ? 0 : rmBit);
    if (op === 0x86 || op === 0x87) return other(regBit | rmBit);
    // x87: fnstsw %ax is the one that writes a general register.
    if (op >= 0xd8 && op <= 0xdf) return other(bit(0));
    if (op === 0xf6 || op === 0xf7) return other(sub < 2 ? 0 : sub < 4 ? rmBit : bit(0) | bit(2));
    if (op === 0xfe) return other(sub < 2 ? rmBit : ALL_REGISTERS);
    if (op === 0xff) {
      if (sub < 2) return other(rmBit);
      if (sub === 6) return opsize16 ? other(ALL_REGISTERS) : move(Move.Push, bit(RSP), -1, -1);
      return other(ALL_REGISTERS);
    }
    return other(ALL_REGISTERS);
  }
  if (op >= 0x50 && op <= 0x57)
    return opsize16 ? other(ALL_REGISTERS) : move(Move.Push, bit(RSP), -1, (op & 7) | ((rex & 1) << 3));
  if (op >= 0x58 && op <= 0x5f) {
    if (opsize16) return other(ALL_REGISTERS);
    const dst = (op & 7) | ((rex & 1) << 3);
    return move(Move.Pop, bit(dst) | bit(RSP), dst, -1);
  }
  if (op === 0x68 || op === 0x6a) return opsize16 ? other(ALL_REGISTERS) : move(Move.Push, bit(RSP), -1, -1);
  if (op === 0x90 && (rex & 1) === 0) return other(0);
  if (op >= 0x90 && op <= 0x97) return other(bit(0) | bit((op & 7) | ((rex & 1) << 3)));
  if (op === 0x99) return other(bit(2));
  if (op >= 0xb0 && op <= 0xb7)
    return other(bit(rex === 0 && (op & 7) >= 4 ? (op & 7) - 4 : (op & 7) | ((rex & 1) << 3)));
  if (op >= 0xb8 && op <= 0xbf) return other(bit((op & 7) | ((rex & 1) << 3)));
  if (op === 0xc9) return move(Move.Leave, bit(RSP) | bit(RBP), -1, -1);
  // String instructions move rdi/rsi, count rcx and load rax.
  if (op >= 0xa4 && op <= 0xaf && op !== 0xa8 && op !== 0xa9) return other(bit(0) | bit(1) | bit(6) | bit(7));
  if (op >= 0x6c && op <= 0x6f) return other(bit(1) | bit(6) | bit(7));
  if (ACC_IMM.has(op)) return other(bit(0));
  if (ONE_QUIET.has(op)) return other(0);
  return other(ALL_REGISTERS);
}

function twoByte(
  buf: Uint8Array,
  p: number,
  rex: number,
  regBit: number,
  rmBit: number,
  d: Insn,
  other: (writes: number) => Effect,
): Effect {
  const op = buf[p]!;
  if (d.flow === Flow.Jcc) return other(0);
  if (d.flow === Flow.Stop) return other(0);
  // rdsspq (F3 0F 1E /1) reads the shadow stack pointer into its rm register.
  if (op === 0x1e && d.modrmOff >= 0 && ((buf[p + 1]! >> 3) & 7) === 1) return other(rmBit);
  // Hints and NOPs (0F 18-1F, 0F 0D; endbr64 is F3 0F 1E FA) write nothing.
  if ((op >= 0x18 && op <= 0x1f) || op === 0x0d) return other(0);
  if (op === 0x05) return other(bit(0) | bit(1) | bit(11));
  if (op === 0x31) return other(bit(0) | bit(2));
  if (op === 0xa2) return other(bit(0) | bit(1) | bit(2) | bit(3));
  if (op >= 0xc8 && op <= 0xcf) return other(bit((op & 7) | ((rex & 1) << 3)));
  if (d.modrmOff < 0) return other(ALL_REGISTERS);
  if (op >= 0x40 && op <= 0x4f) return other(regBit);
  if (op >= 0x90 && op <= 0x9f) return other(rmBit);
  if (op === 0xa3) return other(0);
  if (TWO_REG.has(op)) return other(regBit);
  if (TWO_RM.has(op)) return other(rmBit);
  if (op === 0xb0 || op === 0xb1) return other(bit(0) | rmBit);
  if (op === 0xc0 || op === 0xc1) return other(regBit | rmBit);
  // SSE and MMX write XMM or MMX registers, but for the few that put a result in a general one:
  // movmskps, pmovmskb, cvt(t)ss2si, pextrw (reg); movd/movq out of an XMM register (rm).
  if (op === 0x50 || op === 0xd7 || op === 0x2c || op === 0x2d || op === 0xc5) return other(regBit);
  if (op === 0x7e) return other(rmBit);
  if (op === 0x38) {
    const op3 = buf[p + 1]!;
    // movbe, crc32 (F0, F1), adcx/adox (F6) write a general register; the rest of the map writes XMM ones.
    return other(op3 >= 0xf0 ? regBit | rmBit : 0);
  }
  if (op === 0x3a) {
    const op3 = buf[p + 1]!;
    // pextrb/w/d/q and extractps (14-17) write their rm operand; pcmp[ei]stri (61, 63) write ecx.
    if (op3 >= 0x14 && op3 <= 0x17) return other(rmBit);
    if (op3 >= 0x60 && op3 <= 0x63) return other(bit(1));
    return op3 >= 0xf0 ? other(ALL_REGISTERS) : other(0);
  }
  if (
    (op >= 0x10 && op <= 0x17) ||
    (op >= 0x28 && op <= 0x2f) ||
    (op >= 0x51 && op <= 0x7f) ||
    (op >= 0xc2 && op <= 0xc6) ||
    op >= 0xd0
  )
    return other(0);
  return other(ALL_REGISTERS);
}

/** One-byte opcodes whose memory operand is only read: loads into a register, compares, tests. */
const ONE_READS = new Set([...ONE_REG, ...ONE_NONE]);
/** 0F opcodes whose memory operand is only read (a register is the destination). */
const TWO_READS = new Set([
  0x10, 0x12, 0x14, 0x15, 0x16, 0x28, 0x2a, 0x2c, 0x2d, 0x2e, 0x2f, 0xa3, 0xaf, 0xb6, 0xb7, 0xb8, 0xbc, 0xbd,
  0xbe, 0xbf, 0xc2, 0xc4, 0xc6,
]);

/** Whether the instruction only reads its memory operand (false when unsure). `p` is the opcode's offset. */
function readsOnly(buf: Uint8Array, p: number, modrm: number): boolean {
  const op = buf[p]!;
  const sub = (modrm >> 3) & 7;
  if (op !== 0x0f) {
    if (ONE_READS.has(op)) return true;
    if (op >= 0x80 && op <= 0x83) return sub === 7;
    if (op === 0xf6 || op === 0xf7) return sub < 2;
    return false;
  }
  const op2 = buf[p + 1]!;
  if (op2 === 0x38) return buf[p + 2]! !== 0xf1;
  if (op2 === 0x3a) return !(buf[p + 2]! >= 0x14 && buf[p + 2]! <= 0x17);
  if (op2 >= 0x40 && op2 <= 0x4f) return true;
  if (op2 >= 0x51 && op2 <= 0x76) return true;
  if (op2 >= 0xd0 && op2 !== 0xd6 && op2 !== 0xe7 && op2 !== 0xf7) return true;
  return TWO_READS.has(op2);
}

function readI32(buf: Uint8Array, at: number): number {
  return buf[at]! | (buf[at + 1]! << 8) | (buf[at + 2]! << 16) | (buf[at + 3]! << 24) | 0;
}
