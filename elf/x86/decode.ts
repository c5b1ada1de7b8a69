/**
 * An x86-64 instruction *length* decoder: for each instruction it finds the
 * length, the control flow it implies, and where its PC-relative fields are
 * (rel8/rel32 branch targets, RIP-relative disp32). That is all the code
 * comparison needs: those fields are the ones that change when code moves
 * without changing meaning, so they are masked and replaced by what they
 * point at. Operands are not decoded. Covers legacy/REX prefixes, the one-,
 * two- and three-byte maps, VEX, EVEX and 3DNow!; anything else (XOP, bytes
 * that are not code) makes `decode` return false, and the caller falls back
 * to comparing raw bytes.
 */

export const enum Flow {
  Seq = 0,
  Jmp = 1,
  Jcc = 2,
  Call = 3,
  Ret = 4,
  /** int3, hlt, ud0/1/2: execution does not continue past it. */
  Stop = 5,
  IndirectJmp = 6,
  IndirectCall = 7,
}

/** The signed branch displacement (rel8 or rel32) of `ins`, decoded at buf[p]; it must have one (relOff >= 0). */
export function relDisplacement(buf: Buffer, p: number, ins: Insn): number {
  return ins.relSize === 1 ? buf.readInt8(p + ins.relOff) : buf.readInt32LE(p + ins.relOff);
}

/** Execution does not fall through past an instruction of this flow: a straight-line walk of the code ends there. */
export function endsStraightLine(flow: Flow): boolean {
  return flow === Flow.Jmp || flow === Flow.Ret || flow === Flow.Stop || flow === Flow.IndirectJmp;
}

/** The general registers by their number in ModRM/SIB/REX encodings: what `Insn.base` numbers. */
export const REGISTER_NAMES: readonly string[] = [
  'rax',
  'rcx',
  'rdx',
  'rbx',
  'rsp',
  'rbp',
  'rsi',
  'rdi',
  'r8',
  'r9',
  'r10',
  'r11',
  'r12',
  'r13',
  'r14',
  'r15',
];

/** Filled in by decode(); reused across calls so the hot loop allocates nothing. */
export interface Insn {
  length: number;
  flow: Flow;
  /** Offset of the branch displacement inside the instruction, or -1. */
  relOff: number;
  /** 1 or 4 bytes. */
  relSize: number;
  /** Offset of a RIP-relative disp32 inside the instruction, or -1. */
  ripOff: number;
  /** True for LEA: the memory operand's address is taken, not its contents read. */
  lea: boolean;
  /** True for multi-byte NOPs and prefetches (0F 1F, 0F 18, 0F 0D): the memory operand is never accessed. */
  hint: boolean;
  /**
   * Offset of a memory operand's displacement (disp8 or disp32 off a base
   * register, not RIP) inside the instruction, or -1. Structure field
   * offsets show here (`mov 0x1d40(%rdi),%eax`): the layout check compares
   * them between builds (packer/analyze/layout.ts).
   */
  dispOff: number;
  /** 1 or 4 bytes. */
  dispSize: number;
  /** Offset of the ModRM byte inside the instruction, or -1 when the opcode has none. */
  modrmOff: number;
  /** The memory operand's base register (0 rax .. 15 r15), or -1 without one (RIP-relative, absolute, no memory operand). */
  base: number;
  /** The memory operand has an index register (an array element, not a field at a fixed offset). */
  indexed: boolean;
  /** Offset of the immediate inside the instruction, or -1; its size in bytes. */
  immOff: number;
  immSize: number;
}

export function newInsn(): Insn {
  return {
    length: 0,
    flow: Flow.Seq,
    relOff: -1,
    relSize: 0,
    ripOff: -1,
    lea: false,
    hint: false,
    modrmOff: -1,
    dispOff: -1,
    dispSize: 0,
    base: -1,
    indexed: false,
    immOff: -1,
    immSize: 0,
  };
}

// Operand shape per opcode. M: has ModRM; immediates: B imm8, W imm16, Z imm16/32, V imm16/32/64.
const M = 1;
const B = 2;
const W = 4;
const Z = 8;
const V = 16;
const BAD = 32;
/** Opcode with its own rule (prefixes, escapes, moffs, groups with reg-dependent immediates). */
const SPECIAL = 64;
/** A constant, not `M | B` where it is used: an operation V8 has not seen run deoptimises the optimised code. */
const M_B = M | B;
/** After 0F: the map the next opcode byte is in (2 after 38, 3 after 3A), 0 when this byte is the opcode. */
const ESCAPE = new Uint8Array(256);
ESCAPE[0x38] = 2;
ESCAPE[0x3a] = 3;

/** Builds a 256-entry table from 16 rows of 16 space-separated cells. */
function table(rows: string[]): Uint8Array {
  const codes: Record<string, number> = {
    '-': 0,
    M,
    b: B,
    w: W,
    z: Z,
    v: V,
    X: BAD,
    S: SPECIAL,
    Mb: M | B,
    Mz: M | Z,
    wb: W | B,
  };
  const t = new Uint8Array(256);
  rows.forEach((row, hi) => {
    const cells = row.trim().split(/\s+/);
    if (cells.length !== 16) throw new Error(`x86 table row ${hi} has ${cells.length} cells`);
    cells.forEach((c, lo) => {
      const v = codes[c];
      if (v === undefined) throw new Error(`x86 table: bad cell ${c}`);
      t[hi * 16 + lo] = v;
    });
  });
  return t;
}

const ONE = table([
  'M  M  M  M  b  z  X  X  M  M  M  M  b  z  X  S', // 0x
  'M  M  M  M  b  z  X  X  M  M  M  M  b  z  X  X', // 1x
  'M  M  M  M  b  z  S  X  M  M  M  M  b  z  S  X', // 2x
  'M  M  M  M  b  z  S  X  M  M  M  M  b  z  S  X', // 3x
  'S  S  S  S  S  S  S  S  S  S  S  S  S  S  S  S', // 4x REX
  '-  -  -  -  -  -  -  -  -  -  -  -  -  -  -  -', // 5x
  'X  X  S  M  S  S  S  S  z  Mz b  Mb -  -  -  -', // 6x
  'b  b  b  b  b  b  b  b  b  b  b  b  b  b  b  b', // 7x jcc rel8
  'Mb Mz X  Mb M  M  M  M  M  M  M  M  M  M  M  S', // 8x
  '-  -  -  -  -  -  -  -  -  -  X  -  -  -  -  -', // 9x
  'S  S  S  S  -  -  -  -  b  z  -  -  -  -  -  -', // Ax
  'b  b  b  b  b  b  b  b  v  v  v  v  v  v  v  v', // Bx
  'Mb Mb w  -  S  S  Mb Mz wb -  w  -  -  b  X  -', // Cx
  'M  M  M  M  X  X  X  -  M  M  M  M  M  M  M  M', // Dx
  'b  b  b  b  b  b  b  b  z  z  X  b  -  -  -  -', // Ex
  'S  -  S  S  -  -  S  S  -  -  -  -  -  -  M  M', // Fx
]);

const TWO = table([
  'M  M  M  M  X  -  -  -  -  -  X  -  X  M  -  S', // 0F 0x
  'M  M  M  M  M  M  M  M  M  M  M  M  M  M  M  M', // 0F 1x
  'M  M  M  M  X  X  X  X  M  M  M  M  M  M  M  M', // 0F 2x
  '-  -  -  -  -  -  -  -  S  X  S  X  X  X  X  X', // 0F 3x
  'M  M  M  M  M  M  M  M  M  M  M  M  M  M  M  M', // 0F 4x
  'M  M  M  M  M  M  M  M  M  M  M  M  M  M  M  M', // 0F 5x
  'M  M  M  M  M  M  M  M  M  M  M  M  M  M  M  M', // 0F 6x
  'Mb Mb Mb Mb M  M  M  -  M  M  X  X  M  M  M  M', // 0F 7x
  'z  z  z  z  z  z  z  z  z  z  z  z  z  z  z  z', // 0F 8x jcc rel32
  'M  M  M  M  M  M  M  M  M  M  M  M  M  M  M  M', // 0F 9x
  '-  -  -  M  Mb M  X  X  -  -  -  M  Mb M  M  M', // 0F Ax
  'M  M  M  M  M  M  M  M  M  M  Mb M  M  M  M  M', // 0F Bx
  'M  M  Mb M  Mb Mb Mb M  -  -  -  -  -  -  -  -', // 0F Cx
  'M  M  M  M  M  M  M  M  M  M  M  M  M  M  M  M', // 0F Dx
  'M  M  M  M  M  M  M  M  M  M  M  M  M  M  M  M', // 0F Ex
  'M  M  M  M  M  M  M  M  M  M  M  M  M  M  M  M', // 0F Fx
]);

/** VEX/EVEX map 1 opcodes that take an imm8 (shuffles, shifts by immediate, compares). */
function vexMap1Imm(op: number): boolean {
  return (op >= 0x70 && op <= 0x73) || op === 0xc2 || op === 0xc4 || op === 0xc5 || op === 0xc6;
}

/** lock, rep/repne, and the segment prefixes: the legacy prefixes other than 66 (operand size) and 67 (address size). */
export function isLegacyPrefix(b: number): boolean {
  return (
    b === 0xf0 ||
    b === 0xf2 ||
    b === 0xf3 ||
    b === 0x2e ||
    b === 0x36 ||
    b === 0x3e ||
    b === 0x26 ||
    b === 0x64 ||
    b === 0x65
  );
}

const MAX_LEN = 15;

/**
 * Decodes the instruction at buf[off] (buf[end] is the first byte that must
 * not be read). Returns false for bytes that are not a decodable instruction.
 */
export function decode(buf: Uint8Array, off: number, end: number, out: Insn): boolean {
  const limit = Math.min(end, off + MAX_LEN);
  let p = off;
  let opsize16 = false;
  let addr32 = false;
  let rexW = false;
  /** REX.B (or VEX/EVEX's inverted B): the fourth bit of the ModRM rm / SIB base register. */
  let rexB = 0;
  /** REX.X (or VEX/EVEX's inverted X), as bit 4 so that it travels with REX.B (bit 3): with it, a SIB index of 100b is r12, not "no index". */
  let rexX = 0;
  // Legacy prefixes, then at most one REX immediately before the opcode.
  for (;;) {
    if (p >= limit) return false;
    const b = buf[p]!;
    if (b === 0x66) opsize16 = true;
    else if (b === 0x67) addr32 = true;
    else if (!isLegacyPrefix(b)) break; // the others have no effect on length
    p++;
  }
  if ((buf[p]! & 0xf0) === 0x40) {
    rexW = (buf[p]! & 8) !== 0;
    rexB = (buf[p]! & 1) << 3;
    rexX = (buf[p]! & 2) << 3;
    p++;
    if (p >= limit) return false;
  }
  out.flow = Flow.Seq;
  out.relOff = -1;
  out.relSize = 0;
  out.ripOff = -1;
  out.modrmOff = -1;
  out.dispOff = -1;
  out.dispSize = 0;
  out.base = -1;
  out.indexed = false;
  out.immOff = -1;
  out.immSize = 0;

  const op = buf[p++]!;
  out.lea = op === 0x8d;
  out.hint = false;
  let shape: number;
  let map = 0; // 0: one-byte, 1: 0F, 2: 0F38, 3: 0F3A, 4+: VEX/EVEX (handled below)
  let opcode = op;

  // The rarer escapes (0F 38, 0F 3A, EVEX) go through the same operations as the common ones: V8
  // deoptimised this function (twice per ulp-pack run) at the first one met after it was optimised.
  if (op === 0x0f) {
    map = 1;
    for (;;) {
      if (p >= limit) return false;
      opcode = buf[p++]!;
      // 0F 38 and 0F 3A: one more opcode byte, in map 2 or 3.
      const next = map === 1 ? ESCAPE[opcode]! : 0;
      if (next === 0) break;
      map = next;
    }
    // 0F 0F is 3DNow!: ModRM, then the real opcode as a trailing imm8.
    shape = map === 2 ? M : map === 3 || opcode === 0x0f ? M_B : TWO[opcode]!;
    out.hint = map === 1 && (opcode === 0x1f || opcode === 0x18 || opcode === 0x0d);
  } else if (op === 0xc4 || op === 0xc5 || op === 0x62) {
    // VEX (C4 3-byte, C5 2-byte) and EVEX (62) are always such in 64-bit mode.
    const prefix = op === 0xc5 ? 1 : op === 0xc4 ? 2 : 3;
    if (p + prefix >= limit) return false;
    const first = buf[p]!;
    const vmap = prefix === 1 ? 1 : first & (prefix === 2 ? 0x1f : 0x07);
    if (prefix !== 1) {
      rexB = (~first & 0x20) >> 2;
      rexX = (~first & 0x40) >> 2;
    }
    p += prefix;
    if (vmap < 1 || vmap > 6 || vmap === 4) return false;
    opcode = buf[p++]!;
    if (op !== 0x62 && vmap === 1 && opcode === 0x77) return finish(out, p - off); // vzeroupper/vzeroall
    shape = M | (vmap === 3 || (vmap === 1 && vexMap1Imm(opcode)) ? B : 0);
    return modrmAndImm(buf, p, limit, off, shape, false, false, out, undefined, rexB | rexX);
  } else {
    shape = ONE[op]!;
  }

  if (shape & BAD) return false;

  if (map === 0) {
    if (shape & SPECIAL) {
      if (op >= 0xa0 && op <= 0xa3) {
        p += addr32 ? 4 : 8; // moffs
        return p <= limit && finish(out, p - off);
      }
      if (op === 0x8f) {
        if (p >= limit || (buf[p]! & 0x38) !== 0) return false; // XOP, or an undefined POP form
        shape = M;
      } else if (op === 0xf6 || op === 0xf7) {
        if (p >= limit) return false;
        const reg = (buf[p]! >> 3) & 7;
        shape = M | (reg < 2 ? (op === 0xf6 ? B : Z) : 0);
      } else {
        return false; // a prefix or escape byte in opcode position: cannot happen after the prefix loop
      }
    }
    // Control flow of the one-byte map.
    if ((op >= 0x70 && op <= 0x7f) || (op >= 0xe0 && op <= 0xe3)) setRel(out, p - off, 1, Flow.Jcc);
    else if (op === 0xeb) setRel(out, p - off, 1, Flow.Jmp);
    else if (op === 0xe9) setRel(out, p - off, 4, Flow.Jmp);
    else if (op === 0xe8) setRel(out, p - off, 4, Flow.Call);
    else if (op === 0xc3 || op === 0xc2 || op === 0xcb || op === 0xca || op === 0xcf) out.flow = Flow.Ret;
    else if (op === 0xcc || op === 0xf4) out.flow = Flow.Stop;
    else if (op === 0xff && p < limit) {
      const reg = (buf[p]! >> 3) & 7;
      if (reg === 2 || reg === 3) out.flow = Flow.IndirectCall;
      else if (reg === 4 || reg === 5) out.flow = Flow.IndirectJmp;
    } else if (op === 0xc7 && p < limit && buf[p] === 0xf8) {
      // xbegin rel32: the "immediate" is a branch to the abort handler
      setRel(out, p + 1 - off, 4, Flow.Jcc);
      return p + 5 <= limit && finish(out, p + 5 - off);
    }
    // E8/E9 take rel32 even with a 66 prefix in 64-bit mode.
    const immz = op === 0xe8 || op === 0xe9 ? 4 : undefined;
    return modrmAndImm(buf, p, limit, off, shape, opsize16, rexW, out, immz, rexB | rexX);
  }

  if (map === 1) {
    if (shape & SPECIAL) return false; // 0F 38 / 0F 3A were consumed above
    if (opcode >= 0x80 && opcode <= 0x8f) {
      setRel(out, p - off, 4, Flow.Jcc);
      p += 4;
      return p <= limit && finish(out, p - off);
    }
    if (opcode === 0x0b || opcode === 0xb9 || opcode === 0xff) out.flow = Flow.Stop;
  }
  return modrmAndImm(buf, p, limit, off, shape, opsize16, rexW, out, undefined, rexB | rexX);
}

function setRel(out: Insn, at: number, size: number, flow: Flow): void {
  out.relOff = at;
  out.relSize = size;
  out.flow = flow;
}

function finish(out: Insn, length: number): boolean {
  out.length = length;
  return true;
}

function modrmAndImm(
  buf: Uint8Array,
  p: number,
  limit: number,
  off: number,
  shape: number,
  opsize16: boolean,
  rexW: boolean,
  out: Insn,
  immzOverride: number | undefined,
  rex: number,
): boolean {
  const rexB = rex & 8;
  const rexX = rex & 16;
  if (shape & M) {
    if (p >= limit) return false;
    out.modrmOff = p - off;
    const modrm = buf[p++]!;
    const mod = modrm >> 6;
    const rm = modrm & 7;
    if (mod !== 3) {
      let base = rm;
      if (rm === 4) {
        if (p >= limit) return false;
        const sib = buf[p++]!;
        base = sib & 7;
        // An index of 100b without REX.X means none; with REX.X it is r12.
        out.indexed = ((sib >> 3) & 7) !== 4 || rexX !== 0;
        if (mod === 0 && base === 5) {
          base = -1; // disp32 with no base: an absolute address
          p += 4;
        }
      } else if (mod === 0 && rm === 5) {
        out.ripOff = p - off;
        base = -1;
        p += 4;
      }
      out.base = base < 0 ? -1 : base | rexB;
      if (mod === 1) {
        out.dispOff = p - off;
        out.dispSize = 1;
        p += 1;
      } else if (mod === 2) {
        out.dispOff = p - off;
        out.dispSize = 4;
        p += 4;
      }
    }
  }
  const imm = p;
  if (shape & B) p += 1;
  if (shape & W) p += 2;
  if (shape & Z) p += immzOverride ?? (opsize16 ? 2 : 4);
  if (shape & V) p += rexW ? 8 : opsize16 ? 2 : 4;
  if (p > limit) return false;
  if (p > imm && out.relOff < 0) {
    out.immOff = imm - off;
    out.immSize = p - imm;
  }
  out.length = p - off;
  return true;
}
