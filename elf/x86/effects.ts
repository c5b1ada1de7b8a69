/**
 * What an x86-64 instruction does to the general registers, for a dataflow
 * that must never miss a write (packer/analyze/confinement.ts: where a
 * pointer in a register came from). Which registers it may write comes
 * from the project's one register table (registers.ts): exact where that
 * table is, all sixteen where it does not know the instruction. A call may
 * write the caller-saved registers (what its callee really writes is the
 * analysis's business). On top of that, the few moves a pointer travels by
 * are classified: 64-bit register copies, 64-bit LEA without an index,
 * 64-bit add/sub of an immediate or a register, 64-bit loads and stores,
 * jump-table entry loads, and the stack pointer's push, pop and leave.
 */
import { decode, Flow, isLegacyPrefix, newInsn, type Insn } from './decode.js';
import { newEffects, registerEffects } from './registers.js';

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

/** One-byte opcodes whose reg operand is written from the rm one (loads, movsxd, imul, lea): their memory operand is only read. */
const ONE_REG = new Set([
  0x02, 0x03, 0x0a, 0x0b, 0x12, 0x13, 0x1a, 0x1b, 0x22, 0x23, 0x2a, 0x2b, 0x32, 0x33, 0x63, 0x69, 0x6b, 0x8a,
  0x8b, 0x8d,
]);
/** ... that write no register (compare, test, moves into segment registers). */
const ONE_NONE = new Set([0x38, 0x39, 0x3a, 0x3b, 0x84, 0x85, 0x8e]);

const scratch = newInsn();
const regs = newEffects();

/**
 * The effect of the instruction at buf[off] (end: the first byte that must
 * not be read), or undefined when it does not decode. `insn` may be passed
 * when the caller decoded it already.
 */
export function effectOf(buf: Uint8Array, off: number, end: number, insn?: Insn): Effect | undefined {
  const d = insn ?? scratch;
  if (!insn && !decode(buf, off, end, d)) return undefined;
  registerEffects(buf, off, d, regs);
  // A call's own push is no write the dataflow follows; its callee may change the caller-saved registers.
  // A return leaves the function: what it does to %rsp no longer matters.
  const writes =
    d.flow === Flow.Call || d.flow === Flow.IndirectCall
      ? CALLER_SAVED
      : d.flow === Flow.Ret
        ? 0
        : regs.exact
          ? regs.writes & ALL_REGISTERS
          : ALL_REGISTERS;
  let p = off;
  let opsize16 = false;
  let addr32 = false;
  for (; ; p++) {
    const b = buf[p]!;
    if (b === 0x66) opsize16 = true;
    else if (b === 0x67) addr32 = true;
    else if (!isLegacyPrefix(b)) break;
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
  const other = (): Effect => ({ writes, move: Move.Other, dst: -1, src: -1, imm: 0, memory });
  const move = (m: Move, dst: number, src: number, imm = 0): Effect => ({
    writes,
    move: m,
    dst,
    src,
    imm,
    memory,
  });
  // Only writes the table knows exactly are classified as moves: anything else is Other with every register written.
  if (!regs.exact || op === 0x0f) return other();
  const modrm = d.modrmOff >= 0 ? buf[off + d.modrmOff]! : -1;
  const mod = modrm >> 6;
  const regField = modrm < 0 ? -1 : ((modrm >> 3) & 7) | ((rex & 4) << 1);
  const rmReg = modrm < 0 || mod !== 3 ? -1 : (modrm & 7) | ((rex & 1) << 3);

  if (d.flow === Flow.IndirectJmp) {
    // jmp *%reg: src names the register the target is in (a switch table's computed target).
    return op === 0xff && mod === 3 ? { ...other(), src: rmReg } : other();
  }
  if (d.flow !== Flow.Seq) return other();
  if (modrm >= 0) {
    // 64-bit register copies: mov %src,%dst in either direction.
    if (w && mod === 3 && op === 0x89) return move(Move.Copy, rmReg, regField);
    if (w && mod === 3 && op === 0x8b) return move(Move.Copy, regField, rmReg);
    if (w && mod !== 3 && op === 0x8b) return move(Move.Load, regField, -1);
    if (w && mod !== 3 && op === 0x89) return move(Move.Store, -1, regField);
    // movslq (table,index,4): an entry of a table of 32-bit offsets (a scaled index other than 4 is not one).
    if (w && mod !== 3 && op === 0x63 && (!d.indexed || buf[off + d.modrmOff + 1]! >> 6 === 2))
      return move(Move.LoadEntry, regField, -1);
    if (w && mod === 3 && op === 0x01) return move(Move.AddRegister, rmReg, regField);
    if (w && mod === 3 && op === 0x03) return move(Move.AddRegister, regField, rmReg);
    if (op === 0x8d) {
      if (w && !addr32 && d.base >= 0 && !d.indexed) {
        const disp =
          d.dispOff < 0
            ? 0
            : d.dispSize === 1
              ? (buf[off + d.dispOff]! << 24) >> 24
              : readI32(buf, off + d.dispOff);
        return { ...move(Move.Offset, regField, d.base, disp), memory: false };
      }
      return other();
    }
    // add/sub $imm, %reg (81 /0, 81 /5, 83 /0, 83 /5), 64-bit.
    if ((op === 0x81 || op === 0x83) && w && mod === 3) {
      const sub = (modrm >> 3) & 7;
      if (sub === 0 || sub === 5) {
        const v = immOf(buf, off, d);
        return move(Move.Offset, rmReg, rmReg, sub === 0 ? v : -v);
      }
    }
    if (op === 0x8f && !opsize16) return move(Move.Pop, rmReg, -1);
    if (op === 0xff && ((modrm >> 3) & 7) === 6 && !opsize16) return move(Move.Push, -1, -1);
    return other();
  }
  if (op >= 0x50 && op <= 0x57 && !opsize16) return move(Move.Push, -1, (op & 7) | ((rex & 1) << 3));
  if (op >= 0x58 && op <= 0x5f && !opsize16) return move(Move.Pop, (op & 7) | ((rex & 1) << 3), -1);
  if ((op === 0x68 || op === 0x6a) && !opsize16) return move(Move.Push, -1, -1);
  if (op === 0xc9) return move(Move.Leave, -1, -1);
  return other();
}

function immOf(buf: Uint8Array, off: number, d: Insn): number {
  return d.immSize === 1
    ? (buf[off + d.immOff]! << 24) >> 24
    : d.immSize === 4
      ? readI32(buf, off + d.immOff)
      : NaN;
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
