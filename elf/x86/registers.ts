/**
 * Which registers an x86-64 instruction reads and writes, for the in-flight
 * caller check (packer/code/ipara.ts) and, through effects.ts, the
 * stack-structure proof (packer/analyze/confinement.ts): gcc's -fipa-ra lets a caller keep values in
 * call-clobbered registers across a call to a local function that does not
 * write them, so what a function writes, and what a caller reads after a
 * call, must be known register by register.
 *
 * It runs after the length decoder (elf/x86/decode.ts), on the bytes that
 * decoder delimited, and parses only what the decoder does not keep
 * (prefixes, REX, the ModRM fields): the decoder's hot loop is untouched.
 *
 * Exact for the integer instructions gcc emits and for the common SSE
 * moves and arithmetic; anything else is *unknown*: it reads and writes
 * every register (`exact` false). An analysis built on it decides which way
 * a guess counts: liveness and what a call may write take it as everything;
 * what a build's callers were compiled against (packer/code/clobbers.ts,
 * `lower`) takes it as nothing, the safe side for each.
 *
 * A write to part of a register (8 or 16 bits of a general register, the
 * low lane of an xmm register) leaves the rest as it was: it is reported as
 * a read too, so that liveness never takes it for a definition.
 *
 * Calls and returns report only their stack pointer traffic (and the
 * registers an indirect target address is computed from): what a callee
 * reads and clobbers is the analysis's business (the ABI, or what the
 * callee's code shows).
 */
import { Flow, REGISTER_NAMES, type Insn } from './decode.js';

/** Bits 0..15: rax..r15 in encoding order (REGISTER_NAMES); bits 16..31: xmm0..xmm15. */
export type RegSet = number;

export const gpr = (n: number): RegSet => 1 << n;
export const xmm = (n: number): RegSet => 1 << (16 + n);

export const RAX = gpr(0);
export const RCX = gpr(1);
export const RDX = gpr(2);
export const RBX = gpr(3);
export const RSP = gpr(4);
export const RSI = gpr(6);
export const RDI = gpr(7);
export const R8 = gpr(8);
export const R9 = gpr(9);
export const R10 = gpr(10);
export const R11 = gpr(11);
export const XMM_ALL: RegSet = 0xffff << 16;
export const ALL: RegSet = -1;

/** SysV x86-64: the registers a call may change (every xmm register; flags, x87 and mask registers are not tracked). */
export const CALL_CLOBBERED: RegSet = RAX | RCX | RDX | RSI | RDI | R8 | R9 | R10 | R11 | XMM_ALL;
/** What a callee may read at its entry: the argument registers, %al (vector count of a variadic call), %r10 (static chain), xmm0-7. */
export const CALL_READS: RegSet = RDI | RSI | RDX | RCX | R8 | R9 | RAX | R10 | RSP | (0xff << 16);
/** What the caller may read after a return: rax/rdx (rdx for 128-bit and two-word struct results), xmm0/xmm1. */
export const RETURN_READS: RegSet = RAX | RDX | RSP | xmm(0) | xmm(1);

/** The register names in a set, general registers first ("rcx rsi xmm2"). */
export function regNames(set: RegSet): string[] {
  const out: string[] = [];
  for (let i = 0; i < 16; i++) if (set & gpr(i)) out.push(REGISTER_NAMES[i]!);
  for (let i = 0; i < 16; i++) if (set & xmm(i)) out.push(`xmm${i}`);
  return out;
}

export interface Effects {
  reads: RegSet;
  writes: RegSet;
  /** False for an instruction this table does not know: then reads and writes are ALL. */
  exact: boolean;
}

export function newEffects(): Effects {
  return { reads: 0, writes: 0, exact: true };
}

/** The instruction's fields this module needs beyond what the decoder keeps. */
interface Parsed {
  opsize16: boolean;
  rep: number; // 0, 0xf2 or 0xf3 (the last one seen)
  rex: number; // the REX byte, 0 without one
  map: number; // 0 one-byte, 1 0F, 2 0F38, 3 0F3A
  op: number;
  /** ModRM fields, valid when the instruction has one. */
  mod: number;
  reg: number; // with REX.R
  rm: number; // with REX.B
  /** Registers the memory operand's address is computed from (0 for a register operand or RIP/absolute). */
  addr: RegSet;
}

const p: Parsed = { opsize16: false, rep: 0, rex: 0, map: 0, op: 0, mod: 3, reg: 0, rm: 0, addr: 0 };

/**
 * Fills `out` for the instruction decode() just decoded at buf[off] into
 * `ins`. Never throws: what it does not know is reported as unknown.
 */
export function registerEffects(buf: Uint8Array, off: number, ins: Insn, out: Effects): Effects {
  out.reads = 0;
  out.writes = 0;
  out.exact = true;
  if (!parse(buf, off, ins)) return unknown(out);
  if (p.map === 0) oneByte(ins, out);
  else if (p.map === 1) twoByte(out);
  else threeByte(out);
  return out;
}

function unknown(out: Effects): Effects {
  out.reads = ALL;
  out.writes = ALL;
  out.exact = false;
  return out;
}

function parse(buf: Uint8Array, off: number, ins: Insn): boolean {
  let i = off;
  const end = off + ins.length;
  p.opsize16 = false;
  p.rep = 0;
  p.rex = 0;
  for (; i < end; i++) {
    const b = buf[i]!;
    if (b === 0x66) p.opsize16 = true;
    else if (b === 0xf2 || b === 0xf3) p.rep = b;
    else if (b === 0x67)
      continue; // 32-bit addressing (hand-written assembly): the same registers, their low halves
    else if (b === 0x64 || b === 0x65)
      continue; // %fs/%gs: segment bases are not general registers
    else if (b === 0xf0 || b === 0x2e || b === 0x36 || b === 0x3e || b === 0x26) continue;
    else break;
  }
  if (i < end && (buf[i]! & 0xf0) === 0x40) p.rex = buf[i++]!;
  if (i >= end) return false;
  const b = buf[i++]!;
  if (b === 0xc4 || b === 0xc5 || b === 0x62) return false; // VEX/EVEX: not in this table
  if (b === 0x0f) {
    const b2 = buf[i++]!;
    if (b2 === 0x38 || b2 === 0x3a) {
      p.map = b2 === 0x38 ? 2 : 3;
      p.op = buf[i]!;
    } else {
      p.map = 1;
      p.op = b2;
    }
  } else {
    p.map = 0;
    p.op = b;
  }
  p.mod = 3;
  p.reg = 0;
  p.rm = 0;
  p.addr = 0;
  if (ins.modrmOff >= 0) {
    const m = buf[off + ins.modrmOff]!;
    p.mod = m >> 6;
    p.reg = ((m >> 3) & 7) | ((p.rex & 4) << 1);
    p.rm = (m & 7) | ((p.rex & 1) << 3);
    if (p.mod !== 3) {
      if (ins.base >= 0) p.addr |= gpr(ins.base);
      if ((m & 7) === 4) {
        const sib = buf[off + ins.modrmOff + 1]!;
        const index = ((sib >> 3) & 7) | ((p.rex & 2) << 2);
        if (index !== 4) p.addr |= gpr(index);
      }
    }
  }
  return true;
}

/** The general register numbered n as a byte operand: without REX, 4..7 are ah, ch, dh, bh. */
function byteReg(n: number): RegSet {
  return p.rex === 0 && n >= 4 && n < 8 ? gpr(n - 4) : gpr(n);
}

/** Reads the ModRM r/m operand (a register, or the registers of its address). */
function readRm(out: Effects, byte: boolean): void {
  out.reads |= p.mod === 3 ? (byte ? byteReg(p.rm) : gpr(p.rm)) : p.addr;
}

/** Writes the r/m operand: a register (partial for 8/16 bits), or memory whose address is read. */
function writeRm(out: Effects, byte: boolean): void {
  if (p.mod !== 3) {
    out.reads |= p.addr;
    return;
  }
  writeGpr(out, byte ? byteReg(p.rm) : gpr(p.rm), byte || p.opsize16);
}

function writeGpr(out: Effects, r: RegSet, partial: boolean): void {
  out.writes |= r;
  if (partial) out.reads |= r;
}

function regOf(byte: boolean): RegSet {
  return byte ? byteReg(p.reg) : gpr(p.reg);
}

function oneByte(ins: Insn, out: Effects): void {
  const op = p.op;
  if (op < 0x40 && (op & 7) < 6) {
    aluForm(op, out);
    return;
  }
  if (op >= 0x50 && op <= 0x57) {
    out.reads |= gpr((op & 7) | ((p.rex & 1) << 3)) | RSP;
    out.writes |= RSP;
    return;
  }
  if (op >= 0x58 && op <= 0x5f) {
    out.reads |= RSP;
    writeGpr(out, gpr((op & 7) | ((p.rex & 1) << 3)), p.opsize16);
    out.writes |= RSP;
    return;
  }
  if (op >= 0x70 && op <= 0x7f) return; // jcc: flags only
  if (op >= 0xb0 && op <= 0xb7) {
    writeGpr(out, byteReg((op & 7) | ((p.rex & 1) << 3)), true);
    return;
  }
  if (op >= 0xb8 && op <= 0xbf) {
    writeGpr(out, gpr((op & 7) | ((p.rex & 1) << 3)), p.opsize16);
    return;
  }
  if (op >= 0x91 && op <= 0x97) {
    const r = gpr((op & 7) | ((p.rex & 1) << 3));
    out.reads |= r | RAX;
    out.writes |= r | RAX;
    return;
  }
  if (op >= 0xd8 && op <= 0xdf) {
    // x87: only its memory operand's address involves general registers, but for fnstsw %ax (df e0).
    if (p.mod !== 3) out.reads |= p.addr;
    else if (op === 0xdf && (p.reg & 7) === 4 && (p.rm & 7) === 0) writeGpr(out, RAX, true);
    return;
  }
  if (op >= 0xe0 && op <= 0xe3) {
    // loop, loope, loopne count %rcx down; jrcxz tests it.
    out.reads |= RCX;
    if (op !== 0xe3) out.writes |= RCX;
    return;
  }
  const byte = (op & 1) === 0;
  switch (op) {
    case 0x6c:
    case 0x6d: // ins: port %dx into (%rdi)
      out.reads |= RDX | RDI;
      out.writes |= RDI;
      if (p.rep) rep(out);
      return;
    case 0x6e:
    case 0x6f: // outs: (%rsi) to port %dx
      out.reads |= RDX | RSI;
      out.writes |= RSI;
      if (p.rep) rep(out);
      return;
    case 0xa6:
    case 0xa7: // cmps
      out.reads |= RSI | RDI;
      out.writes |= RSI | RDI;
      if (p.rep) rep(out);
      return;
    case 0xac:
    case 0xad: // lods: a byte or word lands in part of %rax
      out.reads |= RSI;
      out.writes |= RSI;
      writeGpr(out, RAX, true);
      if (p.rep) rep(out);
      return;
    case 0xae:
    case 0xaf: // scas
      out.reads |= RAX | RDI;
      out.writes |= RDI;
      if (p.rep) rep(out);
      return;
    case 0xa0:
    case 0xa1: // mov moffs, %al/%eax/%rax
      writeGpr(out, RAX, true);
      return;
    case 0xa2:
    case 0xa3: // mov %al/%eax/%rax, moffs
      out.reads |= RAX;
      return;
    case 0x9e: // sahf
      out.reads |= RAX;
      return;
    case 0x9f: // lahf: %ah
      writeGpr(out, RAX, true);
      return;
    case 0xd7: // xlat: %al = (%rbx + %al)
      out.reads |= RBX | RAX;
      writeGpr(out, RAX, true);
      return;
    case 0xe4:
    case 0xe5: // in $port
      writeGpr(out, RAX, true);
      return;
    case 0xec:
    case 0xed: // in (%dx)
      out.reads |= RDX;
      writeGpr(out, RAX, true);
      return;
    case 0xe6:
    case 0xe7: // out $port
      out.reads |= RAX;
      return;
    case 0xee:
    case 0xef: // out (%dx)
      out.reads |= RAX | RDX;
      return;
    case 0xfa:
    case 0xfb: // cli, sti
      return;
    case 0x63: // movsxd
      readRm(out, false);
      writeGpr(out, gpr(p.reg), p.opsize16);
      return;
    case 0x68:
    case 0x6a: // push imm
      out.reads |= RSP;
      out.writes |= RSP;
      return;
    case 0x69:
    case 0x6b: // imul reg, r/m, imm
      readRm(out, false);
      writeGpr(out, gpr(p.reg), p.opsize16);
      return;
    case 0x80:
    case 0x81:
    case 0x83: {
      const sub = p.reg & 7;
      readRm(out, op === 0x80);
      if (sub !== 7) writeRm(out, op === 0x80); // /7 is cmp
      return;
    }
    case 0x84:
    case 0x85: // test
      readRm(out, byte);
      out.reads |= regOf(byte);
      return;
    case 0x86:
    case 0x87: // xchg
      readRm(out, byte);
      out.reads |= regOf(byte);
      writeRm(out, byte);
      writeGpr(out, regOf(byte), byte || p.opsize16);
      return;
    case 0x88:
    case 0x89: // mov r/m, reg
      out.reads |= regOf(byte);
      writeRm(out, byte);
      return;
    case 0x8a:
    case 0x8b: // mov reg, r/m
      readRm(out, byte);
      writeGpr(out, regOf(byte), byte || p.opsize16);
      return;
    case 0x8d: // lea: the address is computed, nothing is read from memory
      out.reads |= p.addr;
      writeGpr(out, gpr(p.reg), p.opsize16);
      return;
    case 0x8f: // pop r/m
      out.reads |= RSP;
      out.writes |= RSP;
      writeRm(out, false);
      return;
    case 0x90:
      if (p.rex & 1) {
        out.reads |= RAX | gpr(8); // xchg %r8, %rax
        out.writes |= RAX | gpr(8);
      }
      return; // nop, pause
    case 0x98: // cbw/cwde/cdqe
      out.reads |= RAX;
      writeGpr(out, RAX, p.opsize16);
      return;
    case 0x99: // cwd/cdq/cqo
      out.reads |= RAX;
      writeGpr(out, RDX, p.opsize16);
      return;
    case 0xa8:
    case 0xa9: // test al/eax, imm
      out.reads |= RAX;
      return;
    case 0xa4:
    case 0xa5: // movs
      out.reads |= RSI | RDI;
      out.writes |= RSI | RDI;
      if (p.rep) rep(out);
      return;
    case 0xaa:
    case 0xab: // stos
      out.reads |= RAX | RDI;
      out.writes |= RDI;
      if (p.rep) rep(out);
      return;
    case 0xc0:
    case 0xc1:
    case 0xd0:
    case 0xd1:
    case 0xd2:
    case 0xd3: {
      // Shifts and rotates; /6 is an alias of shl.
      readRm(out, byte);
      writeRm(out, byte);
      if (op === 0xd2 || op === 0xd3) out.reads |= RCX;
      return;
    }
    case 0xc2:
    case 0xc3: // ret
      out.reads |= RSP;
      out.writes |= RSP;
      return;
    case 0xc6:
    case 0xc7: // mov r/m, imm (c7 f8 is xbegin)
      if ((op === 0xc7 && ins.flow !== Flow.Seq) || (p.mod === 3 && (p.reg & 7) === 7 && (p.rm & 7) === 0)) {
        // xbegin (c7 f8 rel32, decoded as a branch) and xabort (c6 f8): an abort leaves its status in %eax,
        // else %eax is as it was.
        writeGpr(out, RAX, true);
        return;
      }
      if (ins.flow !== Flow.Seq || (p.reg & 7) !== 0) {
        unknown(out);
        return;
      }
      writeRm(out, byte);
      return;
    case 0xc9: // leave
      out.reads |= gpr(5);
      out.writes |= RSP | gpr(5);
      return;
    case 0xcc: // int3
    case 0xe9:
    case 0xeb: // jmp
    case 0xf4: // hlt
    case 0xf5:
    case 0xf8:
    case 0xf9:
    case 0xfc:
    case 0xfd: // cmc, clc, stc, cld, std: flags only
      return;
    case 0xe8: // call rel32
      out.reads |= RSP;
      out.writes |= RSP;
      return;
    case 0xf6:
    case 0xf7:
      group3(byte, out);
      return;
    case 0xfe:
    case 0xff:
      group45(op, out);
      return;
  }
  unknown(out);
}

/** add/or/adc/sbb/and/sub/xor/cmp in the six forms of rows 0x00-0x3f. */
function aluForm(op: number, out: Effects): void {
  const kind = op >> 3; // 0 add, 1 or, 2 adc, 3 sbb, 4 and, 5 sub, 6 xor, 7 cmp
  const form = op & 7;
  const byte = (form & 1) === 0;
  const writes = kind !== 7;
  if (form >= 4) {
    out.reads |= RAX;
    if (writes) writeGpr(out, RAX, true);
    return;
  }
  // xor/sub of a register with itself: a pure write of zero, whatever the register held.
  if ((kind === 6 || kind === 5) && p.mod === 3 && p.reg === p.rm && !byte) {
    writeGpr(out, gpr(p.reg), p.opsize16);
    return;
  }
  readRm(out, byte);
  out.reads |= regOf(byte);
  if (!writes) return;
  if (form < 2) writeRm(out, byte);
  else writeGpr(out, regOf(byte), true);
}

function rep(out: Effects): void {
  out.reads |= RCX;
  out.writes |= RCX;
}

function group3(byte: boolean, out: Effects): void {
  const sub = p.reg & 7;
  readRm(out, byte);
  if (sub === 0 || sub === 1) return; // test r/m, imm
  if (sub === 2 || sub === 3) {
    writeRm(out, byte); // not, neg
    return;
  }
  // mul, imul, div, idiv: %rdx:%rax (%ax for the byte forms) is the implicit operand.
  out.reads |= RAX;
  if (sub >= 6 && !byte) out.reads |= RDX;
  if (byte) writeGpr(out, RAX, true);
  else {
    writeGpr(out, RAX, p.opsize16);
    writeGpr(out, RDX, p.opsize16);
  }
}

function group45(op: number, out: Effects): void {
  const sub = p.reg & 7;
  const byte = op === 0xfe;
  if (sub === 0 || sub === 1) {
    readRm(out, byte); // inc, dec
    writeRm(out, byte);
    return;
  }
  if (byte) {
    unknown(out);
    return;
  }
  if (sub === 2 || sub === 4 || sub === 6) {
    // call *r/m, jmp *r/m, push r/m: the operand is read; call and push move the stack pointer.
    readRm(out, false);
    if (sub !== 4) {
      out.reads |= RSP;
      out.writes |= RSP;
    }
    return;
  }
  unknown(out);
}

function twoByte(out: Effects): void {
  const op = p.op;
  if (op >= 0x80 && op <= 0x8f) return; // jcc rel32
  if (op >= 0x40 && op <= 0x4f) {
    // cmovcc: the destination is written (zero-extended) either way, from the source or itself.
    readRm(out, false);
    out.reads |= gpr(p.reg);
    out.writes |= gpr(p.reg);
    return;
  }
  if (op >= 0x90 && op <= 0x9f) {
    writeRm(out, true); // setcc r/m8
    return;
  }
  if (op >= 0xc8 && op <= 0xcf) {
    const r = gpr((op & 7) | ((p.rex & 1) << 3)); // bswap
    out.reads |= r;
    out.writes |= r;
    return;
  }
  switch (op) {
    case 0x05: // syscall: the kernel's argument registers in, rax/rcx/r11 out
      out.reads |= RAX | RDI | RSI | RDX | R10 | R8 | R9;
      out.writes |= RAX | RCX | R11;
      return;
    case 0x1e: // rdsspd/q writes its register (f3 0f 1e /1); the rest, endbr64 among them, are nops
      if (p.mod === 3 && (p.reg & 7) === 1) writeGpr(out, gpr(p.rm), false);
      return;
    case 0x0b: // ud2
    case 0x0d:
    case 0x18: // prefetches
    case 0x1f: // multi-byte nop: no register is used
      return;
    case 0x31: // rdtsc
      out.writes |= RAX | RDX;
      return;
    case 0xae: // lfence, mfence, sfence; the other forms (fxsave, ldmxcsr...) are unknown
      if (p.mod !== 3 || (p.reg & 7) < 5 || p.rep || p.opsize16) break; // f3/66 forms: incssp, tpause...
      return;
    case 0xc7: // rdrand, rdseed; cmpxchg8b/16b and the rest are unknown
      if (p.mod !== 3 || (p.reg & 7) < 6 || p.rep) break; // f3 forms: rdpid, senduipi
      writeGpr(out, gpr(p.rm), p.opsize16);
      return;
    case 0xa2: // cpuid
      out.reads |= RAX | RCX;
      out.writes |= RAX | RBX | RCX | RDX;
      return;
    case 0xa3: // bt r/m, reg
      readRm(out, false);
      out.reads |= gpr(p.reg);
      return;
    case 0xab:
    case 0xb3:
    case 0xbb: // bts, btr, btc r/m, reg
      readRm(out, false);
      out.reads |= gpr(p.reg);
      writeRm(out, false);
      return;
    case 0xba: // bt/bts/btr/btc r/m, imm
      if ((p.reg & 7) < 4) break;
      readRm(out, false);
      if ((p.reg & 7) !== 4) writeRm(out, false);
      return;
    case 0xa4:
    case 0xa5:
    case 0xac:
    case 0xad: // shld, shrd
      readRm(out, false);
      out.reads |= gpr(p.reg);
      if (op & 1) out.reads |= RCX;
      writeRm(out, false);
      return;
    case 0xaf: // imul reg, r/m
      readRm(out, false);
      out.reads |= gpr(p.reg);
      writeGpr(out, gpr(p.reg), p.opsize16);
      return;
    case 0xb0:
    case 0xb1: {
      // cmpxchg: compares with %rax, writes r/m or %rax
      const byte = op === 0xb0;
      readRm(out, byte);
      out.reads |= regOf(byte) | RAX;
      writeRm(out, byte);
      writeGpr(out, RAX, true);
      return;
    }
    case 0xc0:
    case 0xc1: {
      // xadd
      const byte = op === 0xc0;
      readRm(out, byte);
      out.reads |= regOf(byte);
      writeRm(out, byte);
      writeGpr(out, regOf(byte), byte || p.opsize16);
      return;
    }
    case 0xb6:
    case 0xbe: // movzx/movsx from 8 bits
    case 0xb7:
    case 0xbf: // from 16 bits
      readRm(out, op === 0xb6 || op === 0xbe);
      writeGpr(out, gpr(p.reg), p.opsize16);
      return;
    case 0xb8: // popcnt (f3)
      if (p.rep !== 0xf3) break;
      readRm(out, false);
      writeGpr(out, gpr(p.reg), p.opsize16);
      return;
    case 0xbc:
    case 0xbd: // bsf/bsr leave the destination as it was for a zero source; tzcnt/lzcnt (f3) do not read it, reading it anyway is safe
      readRm(out, false);
      out.reads |= gpr(p.reg);
      out.writes |= gpr(p.reg);
      return;
  }
  sse(out);
}

const xmmReg = (): RegSet => xmm(p.reg);
/** The r/m operand as an xmm register, or the registers of its address. */
const xmmRm = (): RegSet => (p.mod === 3 ? xmm(p.rm) : p.addr);

/**
 * SSE/SSE2 in the 0F map. Prefixes select the operation (none: ps, 66: pd or
 * integer, f3: ss, f2: sd); without 66 or f3 the 0x6x/0xDx-0xFx opcodes are
 * MMX, which is not tracked: unknown.
 */
function sse(out: Effects): void {
  const op = p.op;
  const pre = p.opsize16 ? 0x66 : p.rep;
  const scalar = pre === 0xf2 || pre === 0xf3;
  // Register-to-register or load into xmm(reg): dst = op(dst, src), a partial write unless noted.
  const arith = () => {
    out.reads |= xmmReg() | xmmRm();
    out.writes |= xmmReg();
  };
  // A full write of xmm(reg) from the source: moves and loads.
  const load = (full: boolean) => {
    out.reads |= xmmRm();
    out.writes |= xmmReg();
    if (!full) out.reads |= xmmReg();
  };
  // A store or move from xmm(reg) into the r/m operand.
  const store = (full: boolean) => {
    out.reads |= xmmReg();
    if (p.mod === 3) {
      out.writes |= xmm(p.rm);
      if (!full) out.reads |= xmm(p.rm);
    } else out.reads |= p.addr;
  };
  switch (op) {
    case 0x10: // movups/movupd (full), movss/movsd (full from memory, low lane between registers)
      load(!scalar || p.mod !== 3);
      return;
    case 0x11:
      store(!scalar);
      return;
    case 0x28:
      if (scalar) break;
      load(true); // movaps/movapd
      return;
    case 0x29:
    case 0x2b:
      if (scalar) break;
      store(true); // movaps/movapd, movntps/pd
      return;
    case 0x12:
    case 0x16: // movlps/movhps/movlpd/movhpd loads, movhlps/movlhps, movsldup/movshdup/movddup
      if (pre === 0xf2 || pre === 0xf3) load(true);
      else load(false);
      return;
    case 0x13:
    case 0x17:
      if (scalar || p.mod === 3) break;
      store(false);
      return;
    case 0x14:
    case 0x15: // unpck
      if (scalar) break;
      arith();
      return;
    case 0x2a: // cvtsi2ss/sd from a general register or memory
      if (!scalar) break;
      readRm(out, false);
      out.reads |= xmmReg();
      out.writes |= xmmReg();
      return;
    case 0x2c:
    case 0x2d: // cvt(t)ss/sd2si into a general register
      if (!scalar) break;
      out.reads |= xmmRm();
      writeGpr(out, gpr(p.reg), false);
      return;
    case 0x2e:
    case 0x2f: // (u)comiss/sd: flags only
      if (scalar) break;
      out.reads |= xmmReg() | xmmRm();
      return;
    case 0x50: // movmskps/pd
      if (scalar || p.mod !== 3) break;
      out.reads |= xmm(p.rm);
      writeGpr(out, gpr(p.reg), false);
      return;
    case 0x6e: // movd/movq xmm, r/m
      if (pre !== 0x66) break;
      readRm(out, false);
      out.writes |= xmmReg();
      return;
    case 0x7e:
      if (pre === 0x66) {
        // movd/movq r/m, xmm
        out.reads |= xmmReg();
        if (p.mod === 3) writeGpr(out, gpr(p.rm), false);
        else out.reads |= p.addr;
        return;
      }
      if (pre === 0xf3) {
        load(true); // movq xmm, xmm/m64
        return;
      }
      break;
    case 0x6f: // movdqa/movdqu
      if (pre !== 0x66 && pre !== 0xf3) break;
      load(true);
      return;
    case 0x7f:
      if (pre !== 0x66 && pre !== 0xf3) break;
      store(true);
      return;
    case 0xd6: // movq xmm/m64, xmm
      if (pre !== 0x66) break;
      store(true);
      return;
    case 0xe7: // movntdq
      if (pre !== 0x66 || p.mod === 3) break;
      store(true);
      return;
    case 0xd7: // pmovmskb
      if (pre !== 0x66 || p.mod !== 3) break;
      out.reads |= xmm(p.rm);
      writeGpr(out, gpr(p.reg), false);
      return;
    case 0xc5: // pextrw reg, xmm, imm
      if (pre !== 0x66 || p.mod !== 3) break;
      out.reads |= xmm(p.rm);
      writeGpr(out, gpr(p.reg), false);
      return;
    case 0xc4: // pinsrw xmm, r/m, imm
      if (pre !== 0x66) break;
      readRm(out, false);
      out.reads |= xmmReg();
      out.writes |= xmmReg();
      return;
    case 0x70: // pshufd/pshufhw/pshuflw: dst from src only
      if (pre === 0) break;
      load(true);
      return;
    case 0x71:
    case 0x72:
    case 0x73: // shifts by immediate of xmm(rm)
      if (pre !== 0x66 || p.mod !== 3) break;
      out.reads |= xmm(p.rm);
      out.writes |= xmm(p.rm);
      return;
    case 0xc2: // cmpps/pd/ss/sd
    case 0xc6: // shufps/pd
      if (op === 0xc6 && scalar) break;
      arith();
      return;
  }
  // Arithmetic and logic with xmm(reg) as destination and source: 0x51-0x5f (every prefix), 0x60-0x6d, 0x74-0x76, 0xd1-0xfe (66).
  if (
    (op >= 0x51 && op <= 0x5f) ||
    (((op >= 0x60 && op <= 0x6d) ||
      (op >= 0x74 && op <= 0x76) ||
      (op >= 0xd1 && op <= 0xfe && op !== 0xd7 && op !== 0xe7 && op !== 0xf7)) &&
      pre === 0x66)
  ) {
    // xorps/pxor/psub of a register with itself: zero, whatever the register held.
    if (
      p.mod === 3 &&
      p.reg === p.rm &&
      (op === 0x57 || op === 0xef || op === 0xfa || op === 0xfb || op === 0xf8 || op === 0xf9)
    ) {
      out.writes |= xmmReg();
      return;
    }
    arith();
    // cvt between widths (5a, 5b) and sqrt (51) of a register write the whole register from the source only for
    // packed forms; reading the destination too is merely conservative.
    return;
  }
  unknown(out);
}

/**
 * 0F 38 and 0F 3A: the SSSE3/SSE4 shuffles and blends, AES, SHA and CLMUL
 * (xmm-only), the SSE4 inserts, extracts and string compares, and the
 * general-register ones (movbe, crc32, adcx, adox); the rest unknown.
 */
function threeByte(out: Effects): void {
  const op = p.op;
  const pre = p.opsize16 && !p.rep ? 0x66 : p.rep;
  if (p.map === 2 && op >= 0xf0 && op <= 0xf1 && p.rep !== 0xf3) {
    if (p.rep === 0xf2) {
      // crc32 reg, r/m: the accumulator is read and written whole.
      readRm(out, op === 0xf0);
      out.reads |= gpr(p.reg);
      out.writes |= gpr(p.reg);
      return;
    }
    if (p.mod === 3) {
      unknown(out);
      return;
    }
    // movbe: f0 loads into reg, f1 stores reg.
    out.reads |= p.addr;
    if (op === 0xf0) writeGpr(out, gpr(p.reg), p.opsize16);
    else out.reads |= gpr(p.reg);
    return;
  }
  if (p.map === 2 && op === 0xf6 && (pre === 0x66 || pre === 0xf3)) {
    // adcx (66), adox (f3): reg += r/m + a flag.
    readRm(out, false);
    out.reads |= gpr(p.reg);
    out.writes |= gpr(p.reg);
    return;
  }
  const sha = pre === 0 && (p.map === 2 ? op >= 0xc8 && op <= 0xcd : op === 0xcc);
  if (sha) {
    out.reads |= xmmReg() | xmmRm();
    out.writes |= xmmReg();
    return;
  }
  if (pre !== 0x66) {
    unknown(out);
    return;
  }
  if (p.map === 3 && op >= 0x14 && op <= 0x17) {
    // pextrb/w/d/q, extractps: into a general register (zero-extended) or memory.
    out.reads |= xmmReg();
    if (p.mod === 3) writeGpr(out, gpr(p.rm), false);
    else out.reads |= p.addr;
    return;
  }
  if (p.map === 3 && (op === 0x20 || op === 0x22)) {
    // pinsrb, pinsrd/q: one lane of xmm(reg) from a general register or memory.
    readRm(out, false);
    out.reads |= xmmReg();
    out.writes |= xmmReg();
    return;
  }
  if (p.map === 3 && op >= 0x60 && op <= 0x63) {
    // pcmpestr* take lengths in %rax and %rdx; the i forms write %ecx, the m forms %xmm0.
    out.reads |= xmmReg() | xmmRm();
    if (op < 0x62) out.reads |= RAX | RDX;
    if (op & 1) out.writes |= RCX;
    else out.writes |= xmm(0);
    return;
  }
  const xmmOnly =
    p.map === 2
      ? op <= 0x0b ||
        (op >= 0x1c && op <= 0x1e) ||
        (op >= 0x20 && op <= 0x25) ||
        (op >= 0x28 && op <= 0x2b) ||
        (op >= 0x30 && op <= 0x35) ||
        (op >= 0x37 && op <= 0x40) ||
        (op >= 0xdb && op <= 0xdf)
      : (op >= 0x08 && op <= 0x0f) || op === 0x40 || op === 0x41 || op === 0x44 || op === 0xdf;
  if (!xmmOnly) {
    unknown(out);
    return;
  }
  out.reads |= xmmReg() | xmmRm();
  out.writes |= xmmReg();
}
