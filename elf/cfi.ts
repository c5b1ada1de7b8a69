/**
 * Call frame information (.eh_frame) as rules: for a code address, how to
 * find the caller's frame (the CFA, and where each register was saved).
 * The runtime uses it to walk a stopped thread's real call chain instead of
 * guessing from every word on its stack (runtime/loader/call-chain.ts).
 *
 * Pure: it reads the object through ElfObject.readAt, which serves a file
 * or a process's memory alike. The frame description is found through the
 * binary search table of .eh_frame_hdr, which every GNU ld output has; an
 * object without it gives no rules.
 */
import { PT_GNU_EH_FRAME } from './constants.js';
import { DwarfReader } from './dwarf.js';
import type { ElfObject } from './types.js';
import { u64 } from '../common/u64.js';

export type RegRule =
  | { kind: 'same' }
  | { kind: 'undefined' }
  /** Saved at CFA + offset. */
  | { kind: 'offset'; offset: number }
  /** The value is CFA + offset. */
  | { kind: 'val-offset'; offset: number }
  | { kind: 'register'; reg: number }
  /** Saved at the address the expression computes. */
  | { kind: 'expression'; expr: Buffer }
  | { kind: 'val-expression'; expr: Buffer };

export type CfaRule = { kind: 'reg'; reg: number; offset: number } | { kind: 'expression'; expr: Buffer };

export interface FrameRules {
  cfa: CfaRule;
  /** Registers with a rule; the others keep their value (same value). */
  regs: Map<number, RegRule>;
  /** The DWARF register that holds the return address (16, rip, on x86-64). */
  raReg: number;
  /** A signal frame ('S'): its return address is where the interrupted code resumes, not after a call. */
  signalFrame: boolean;
}

const DW_EH_PE_datarel_sdata4 = 0x3b;
const DW_EH_PE_udata4 = 0x03;

interface Cie {
  codeAlign: number;
  dataAlign: number;
  raReg: number;
  fdeEncoding: number;
  hasAugData: boolean;
  signalFrame: boolean;
  initial: Buffer;
}

/** The FDE whose range holds `vaddr`, from .eh_frame_hdr's sorted table. */
function findFde(obj: ElfObject, vaddr: number): number | undefined {
  const ph = obj.programHeaders.find((p) => p.type === PT_GNU_EH_FRAME);
  if (!ph) return undefined;
  const hdrAt = Number(ph.vaddr);
  const hdr = obj.readAt(ph.vaddr, Number(ph.memsz));
  const r = new DwarfReader(hdr, hdrAt);
  if (r.u8() !== 1) return undefined;
  const ptrEnc = r.u8();
  const countEnc = r.u8();
  const tableEnc = r.u8();
  r.encoded(ptrEnc, true);
  if (countEnc !== DW_EH_PE_udata4 || tableEnc !== DW_EH_PE_datarel_sdata4) return undefined;
  const count = r.u32();
  const table = r.pos;
  if (table + count * 8 > hdr.length) return undefined;
  let lo = 0;
  let hi = count - 1;
  let found = -1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (hdrAt + hdr.readInt32LE(table + mid * 8) <= vaddr) {
      found = mid;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return found < 0 ? undefined : hdrAt + hdr.readInt32LE(table + found * 8 + 4);
}

/** Reads one CIE or FDE: its body (after the length) and where it starts. */
function entry(obj: ElfObject, at: number): { r: DwarfReader; end: number } {
  const len32 = obj.readAt(BigInt(at), 4).readUInt32LE(0);
  const [bodyAt, len] =
    len32 === 0xffffffff
      ? [at + 12, Number(obj.readAt(BigInt(at + 4), 8).readBigUInt64LE(0))]
      : [at + 4, len32];
  if (len === 0 || len > 1 << 24) throw new RangeError('empty or oversized CFI entry');
  return { r: new DwarfReader(obj.readAt(BigInt(bodyAt), len), bodyAt), end: bodyAt + len };
}

function parseCie(obj: ElfObject, at: number): Cie {
  const { r, end } = entry(obj, at);
  if (r.u32() !== 0) throw new RangeError('not a CIE');
  const version = r.u8();
  const aug = r.cstring();
  if (aug.includes('eh')) r.pos += 8;
  const codeAlign = r.uleb();
  const dataAlign = r.sleb();
  const raReg = version === 1 ? r.u8() : r.uleb();
  const cie: Cie = {
    codeAlign,
    dataAlign,
    raReg,
    fdeEncoding: 0,
    hasAugData: aug.startsWith('z'),
    signalFrame: false,
    initial: Buffer.alloc(0),
  };
  if (cie.hasAugData) {
    const augLen = r.uleb();
    const augEnd = r.pos + augLen;
    for (const c of aug.slice(1)) {
      if (c === 'R') cie.fdeEncoding = r.u8();
      else if (c === 'P') r.encoded(r.u8() & 0x7f, false);
      else if (c === 'L') r.u8();
      else if (c === 'S') cie.signalFrame = true;
      else if (c !== 'B' && c !== 'G') break;
    }
    r.pos = augEnd;
  }
  cie.initial = r.buf.subarray(r.pos, end - r.base);
  return cie;
}

/** Runs CFA instructions from `loc`, stopping before the first row past `target`. */
function execute(
  ins: Buffer,
  cie: Cie,
  state: { cfa: CfaRule; regs: Map<number, RegRule> },
  loc: number,
  target: number,
  initial?: Map<number, RegRule>,
): number {
  const r = new DwarfReader(ins, 0);
  const stack: Array<{ cfa: CfaRule; regs: Map<number, RegRule> }> = [];
  const restore = (reg: number) => {
    const rule = initial?.get(reg);
    if (rule) state.regs.set(reg, rule);
    else state.regs.delete(reg);
  };
  const advance = (delta: number) => {
    loc += delta * cie.codeAlign;
    return loc <= target;
  };
  while (r.pos < ins.length) {
    const op = r.u8();
    const high = op & 0xc0;
    const low = op & 0x3f;
    if (high === 0x40) {
      if (!advance(low)) return loc;
      continue;
    }
    if (high === 0x80) {
      state.regs.set(low, { kind: 'offset', offset: r.uleb() * cie.dataAlign });
      continue;
    }
    if (high === 0xc0) {
      restore(low);
      continue;
    }
    switch (op) {
      case 0x00: // nop
        break;
      case 0x01: // set_loc
        loc = r.encoded(cie.fdeEncoding, false);
        if (loc > target) return loc;
        break;
      case 0x02:
        if (!advance(r.u8())) return loc;
        break;
      case 0x03:
        if (!advance(r.buf.readUInt16LE((r.pos += 2) - 2))) return loc;
        break;
      case 0x04:
        if (!advance(r.u32())) return loc;
        break;
      case 0x05: {
        const reg = r.uleb();
        state.regs.set(reg, { kind: 'offset', offset: r.uleb() * cie.dataAlign });
        break;
      }
      case 0x06:
        restore(r.uleb());
        break;
      case 0x07:
        state.regs.set(r.uleb(), { kind: 'undefined' });
        break;
      case 0x08:
        state.regs.set(r.uleb(), { kind: 'same' });
        break;
      case 0x09: {
        const reg = r.uleb();
        state.regs.set(reg, { kind: 'register', reg: r.uleb() });
        break;
      }
      case 0x0a:
        stack.push({ cfa: state.cfa, regs: new Map(state.regs) });
        break;
      case 0x0b: {
        const saved = stack.pop();
        if (!saved) throw new RangeError('restore_state without remember_state');
        // DWARF: restore_state restores the register rules; the CFA rule too, as GCC and libgcc do.
        state.cfa = saved.cfa;
        state.regs = saved.regs;
        break;
      }
      case 0x0c: {
        const reg = r.uleb();
        state.cfa = { kind: 'reg', reg, offset: r.uleb() };
        break;
      }
      case 0x0d:
        state.cfa = { kind: 'reg', reg: r.uleb(), offset: state.cfa.kind === 'reg' ? state.cfa.offset : 0 };
        break;
      case 0x0e:
        if (state.cfa.kind === 'reg') state.cfa = { ...state.cfa, offset: r.uleb() };
        else r.uleb();
        break;
      case 0x0f: {
        const len = r.uleb();
        state.cfa = { kind: 'expression', expr: Buffer.from(r.buf.subarray(r.pos, (r.pos += len))) };
        break;
      }
      case 0x10:
      case 0x16: {
        const reg = r.uleb();
        const len = r.uleb();
        const expr = Buffer.from(r.buf.subarray(r.pos, (r.pos += len)));
        state.regs.set(reg, { kind: op === 0x10 ? 'expression' : 'val-expression', expr });
        break;
      }
      case 0x11: {
        const reg = r.uleb();
        state.regs.set(reg, { kind: 'offset', offset: r.sleb() * cie.dataAlign });
        break;
      }
      case 0x12: {
        const reg = r.uleb();
        state.cfa = { kind: 'reg', reg, offset: r.sleb() * cie.dataAlign };
        break;
      }
      case 0x13:
        if (state.cfa.kind === 'reg') state.cfa = { ...state.cfa, offset: r.sleb() * cie.dataAlign };
        else r.sleb();
        break;
      case 0x14:
      case 0x15: {
        const reg = r.uleb();
        const off = op === 0x14 ? r.uleb() : r.sleb();
        state.regs.set(reg, { kind: 'val-offset', offset: off * cie.dataAlign });
        break;
      }
      case 0x2e: // GNU_args_size
        r.uleb();
        break;
      case 0x2f: {
        const reg = r.uleb();
        state.regs.set(reg, { kind: 'offset', offset: -r.uleb() * cie.dataAlign });
        break;
      }
      default:
        throw new RangeError(`unknown CFA instruction 0x${op.toString(16)}`);
    }
  }
  return loc;
}

/**
 * The unwind rules in effect at `vaddr` (a link-time address of `obj`), or
 * undefined when the object describes no frame there or its description
 * cannot be read.
 */
export function frameRulesAt(obj: ElfObject, vaddr: number): FrameRules | undefined {
  try {
    const fdeAt = findFde(obj, vaddr);
    if (fdeAt === undefined) return undefined;
    const { r, end } = entry(obj, fdeAt);
    const ciePtrAt = r.vaddr;
    const id = r.u32();
    if (id === 0) return undefined;
    const cie = parseCie(obj, ciePtrAt - id);
    const pcBegin = r.encoded(cie.fdeEncoding, true);
    const pcRange = r.encoded(cie.fdeEncoding & 0x0f, false);
    if (vaddr < pcBegin || vaddr >= pcBegin + pcRange) return undefined;
    if (cie.hasAugData) r.pos += r.uleb();
    const state = { cfa: { kind: 'reg', reg: 7, offset: 8 } as CfaRule, regs: new Map<number, RegRule>() };
    execute(cie.initial, cie, state, pcBegin, Number.MAX_SAFE_INTEGER);
    const initial = new Map(state.regs);
    execute(r.buf.subarray(r.pos, end - r.base), cie, state, pcBegin, vaddr, initial);
    return { cfa: state.cfa, regs: state.regs, raReg: cie.raReg, signalFrame: cie.signalFrame };
  } catch {
    return undefined;
  }
}

/**
 * Evaluates a DWARF expression of the kind .eh_frame holds on x86-64 (PLT
 * entries, glibc's signal trampoline): register-relative addresses,
 * literals, dereferences and integer arithmetic. Returns undefined for any
 * other operation or a failed read.
 */
export function evaluateExpression(
  expr: Buffer,
  reg: (n: number) => bigint | undefined,
  readU64: (addr: bigint) => bigint | undefined,
  push?: bigint,
): bigint | undefined {
  const r = new DwarfReader(expr, 0);
  const stack: bigint[] = push === undefined ? [] : [push];
  const pop = () => stack.pop();
  try {
    while (r.pos < expr.length) {
      const op = r.u8();
      if (op >= 0x30 && op <= 0x4f)
        stack.push(BigInt(op - 0x30)); // lit0..lit31
      else if (op >= 0x70 && op <= 0x8f) {
        const v = reg(op - 0x70); // breg0..breg31
        if (v === undefined) return undefined;
        stack.push(u64(v + BigInt(r.sleb())));
      } else {
        const binary = (f: (a: bigint, b: bigint) => bigint) => {
          const b = pop();
          const a = pop();
          if (a === undefined || b === undefined) throw new RangeError('stack underflow');
          stack.push(u64(f(a, b)));
        };
        switch (op) {
          case 0x06: {
            const a = pop();
            const v = a === undefined ? undefined : readU64(a);
            if (v === undefined) return undefined;
            stack.push(v);
            break;
          }
          case 0x08:
            stack.push(BigInt(r.u8()));
            break;
          case 0x11:
            stack.push(BigInt(r.sleb()));
            break;
          case 0x10:
            stack.push(BigInt(r.uleb()));
            break;
          case 0x12: {
            const a = stack.at(-1);
            if (a === undefined) return undefined;
            stack.push(a);
            break;
          }
          case 0x1a:
            binary((a, b) => a & b);
            break;
          case 0x1c:
            binary((a, b) => a - b);
            break;
          case 0x21:
            binary((a, b) => a | b);
            break;
          case 0x22:
            binary((a, b) => a + b);
            break;
          case 0x23: {
            const a = pop();
            if (a === undefined) return undefined;
            stack.push(u64(a + BigInt(r.uleb())));
            break;
          }
          case 0x24:
            binary((a, b) => a << b);
            break;
          case 0x25:
            binary((a, b) => a >> b);
            break;
          case 0x29:
            binary((a, b) => (a === b ? 1n : 0n));
            break;
          case 0x2a:
            binary((a, b) => (BigInt.asIntN(64, a) >= BigInt.asIntN(64, b) ? 1n : 0n));
            break;
          case 0x2d:
            binary((a, b) => (BigInt.asIntN(64, a) < BigInt.asIntN(64, b) ? 1n : 0n));
            break;
          default:
            return undefined;
        }
      }
    }
  } catch {
    return undefined;
  }
  return stack.at(-1);
}
