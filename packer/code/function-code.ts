/**
 * A build's functions decoded one at a time, on demand, for the clobber
 * sets of the few functions the -fipa-ra check asks about (clobbers.ts's
 * `lazyClobbersOf`): a pack usually changes a few hundred functions of
 * tens of thousands, and what they reach by direct calls and jumps is a
 * small part of the build. Per function it keeps what program.ts's whole
 * table gives clobbers.ts: the registers its own instructions write, and
 * where its branches go (a function's first byte, or past it), with the
 * same rules (PLT, code not decoded, switch tables).
 *
 * Exact only when function ranges are sorted and do not overlap (every
 * build seen): then an address lies in one function, and whether it is an
 * instruction is known by decoding that function alone. `functionCodeOf`
 * returns undefined otherwise, and the caller decodes the whole build.
 */
import { decode, Flow, newInsn, relDisplacement } from '../../elf/x86/decode.js';
import { CALL_CLOBBERED, newEffects, registerEffects, type RegSet } from '../../elf/x86/registers.js';
import type { Build, FunctionInfo } from '../model.js';
import { flowAt, lengthAt, offsetAt, type Decoded as Instructions } from './align.js';
import { switchTargets, upperBound } from './program.js';

export interface FunctionCode {
  decoded: boolean;
  /** The call-clobbered registers its own instructions write, with the ABI's set for what it cannot follow. */
  own: RegSet;
  /**
   * What its own instructions surely write: known instructions, and the ABI's set for calls no compiler
   * sees into (the PLT, pointers), but nothing for an unknown instruction, an unknown target or an
   * undecoded callee. The lower bound of what its compiler knew it writes (clobbers.ts `lower`).
   */
  ownLower: RegSet;
  /** Functions it calls or jumps to at their first byte. */
  entered: number[];
  /** Functions it jumps into past their first byte (a .cold part's way back). */
  inside: number[];
}

export interface LazyCode {
  build: Build;
  /** Decodes function f (once) and returns what it writes and reaches. */
  code(f: number): FunctionCode;
  /**
   * Whether f's own instructions surely write every call-clobbered register (`ownLower` would be
   * all of them, and so `own`): it calls the PLT, a pointer or code that is not a function's first
   * byte, or jumps to the PLT. Found with the length decoder alone, without register effects: most
   * functions of a library call something of another object, and then neither set needs more.
   * False decides nothing.
   */
  writesAll(f: number): boolean;
  /**
   * Hands `writesAll` another module's decoding of f (align.ts `instructionsOf`, which the layout
   * check has already made for every changed function), asked for only if writesAll needs it: it
   * then reads the instructions' flows there instead of decoding f again, and stops at the first
   * one that writes every register (the decoding already says f decodes to its end).
   */
  decodedElsewhere(f: number, instructions: () => Instructions | undefined): void;
  /** f's position in build.functions() (the index every other method takes), or -1. */
  indexOf(f: FunctionInfo): number;
}

interface Decoded {
  ok: boolean;
  addr: number[];
  length: number[];
  flow: number[];
  rel: number[];
  mem: number[];
  at: Map<number, number>;
}

const cache = new WeakMap<Build, LazyCode | null>();

export function functionCodeOf(build: Build): LazyCode | undefined {
  let c = cache.get(build);
  if (c === undefined) cache.set(build, (c = make(build)));
  return c ?? undefined;
}

function make(build: Build): LazyCode | null {
  const functions = build.functions();
  for (let i = 1; i < functions.length; i++)
    if (functions[i]!.start < functions[i - 1]!.start || functions[i]!.start < functions[i - 1]!.end)
      return null;
  const fnStarts = new Float64Array(functions.length);
  for (let i = 0; i < functions.length; i++) fnStarts[i] = functions[i]!.start;
  /** The last function starting at v (as a map from start to index filled in order keeps), or -1: a search, not a map of every function. */
  const startingAt = (v: number): number => {
    const k = upperBound(fnStarts, v) - 1;
    return k >= 0 && fnStarts[k] === v ? k : -1;
  };
  const plt = build.obj.sections
    .filter((s) => s.name.startsWith('.plt'))
    .map((s) => [Number(s.addr), Number(s.addr + s.size)] as const);
  const inPlt = (v: number) => plt.some(([s, e]) => v >= s && v < e);
  const decodedFns = new Map<number, Decoded>();
  const codes = new Map<number, FunctionCode>();
  const ins = newInsn();
  const eff = newEffects();

  /** The function whose range holds v (zero-size functions sharing its start hold nothing), or -1. */
  const functionAt = (v: number): number => {
    let k = upperBound(fnStarts, v) - 1;
    if (k < 0) return -1;
    const s = fnStarts[k]!;
    for (; k >= 0 && fnStarts[k] === s; k--) if (v < functions[k]!.end) return k;
    return k >= 0 && v < functions[k]!.end ? k : -1;
  };

  const decoded = (f: number): Decoded => {
    let d = decodedFns.get(f);
    if (d) return d;
    d = { ok: false, addr: [], length: [], flow: [], rel: [], mem: [], at: new Map() };
    decodedFns.set(f, d);
    const { start, end } = functions[f]!;
    let buf: Buffer;
    try {
      buf = build.bytesAt(start, end - start);
    } catch {
      return d; // a range past the file image: nothing to decode
    }
    for (let q = 0; q < buf.length; q += ins.length) {
      if (!decode(buf, q, buf.length, ins)) {
        // Trailing padding that does not decode (zeros after the last ret) is not code.
        if (!buf.subarray(q).every((b) => b === 0 || b === 0xcc)) return d;
        break;
      }
      d.at.set(start + q, d.addr.length);
      d.addr.push(start + q);
      d.length.push(ins.length);
      d.flow.push(ins.flow);
      d.rel.push(ins.relOff < 0 ? NaN : start + q + ins.length + relDisplacement(buf, q, ins));
      d.mem.push(ins.modrmOff >= 0 && buf[q + ins.modrmOff]! >> 6 !== 3 ? 1 : 0);
    }
    d.ok = true;
    return d;
  };

  /** Whether v is the first byte of an instruction of a decoded function: v itself, else -1. */
  const instructionAt = (v: number): number => {
    const g = functionAt(v);
    if (g < 0) return -1;
    const d = decoded(g);
    return d.ok && d.at.has(v) ? v : -1;
  };

  const code = (f: number): FunctionCode => {
    let c = codes.get(f);
    if (c) return c;
    const d = decoded(f);
    if (!d.ok) {
      c = { decoded: false, own: CALL_CLOBBERED, ownLower: 0, entered: [], inside: [] };
      codes.set(f, c);
      return c;
    }
    const fn = functions[f]!;
    let w = 0;
    // What the code surely writes: known instructions and calls the compiler could not see into (PLT,
    // pointers); nothing for what is guessed (unknown instructions, unknown targets, undecoded callees).
    let sure = 0;
    const atStart = new Set<number>();
    const past = new Set<number>();
    // A branch target: inside this function, into another one, or somewhere unknown.
    const reach = (t: number) => {
      if (inPlt(t)) {
        w |= CALL_CLOBBERED;
        sure |= CALL_CLOBBERED;
        return;
      }
      // Most branches stay inside f (instructionAt and functionAt would find f): no search for them.
      if (t >= fn.start && t < fn.end) {
        if (!d.at.has(t)) w |= CALL_CLOBBERED;
        return;
      }
      if (instructionAt(t) < 0) {
        w |= CALL_CLOBBERED;
        return;
      }
      const g = functionAt(t);
      if (g === f) return;
      if (t === functions[g]!.start) atStart.add(g);
      else past.add(g);
    };
    // Register effects only here: most functions are decoded only to know where their instructions are.
    const start = fn.start;
    const buf = build.bytesAt(start, fn.end - start);
    for (let i = 0; i < d.addr.length; i++) {
      const q = d.addr[i]! - start;
      decode(buf, q, buf.length, ins);
      registerEffects(buf, q, ins, eff);
      w |= eff.writes;
      if (eff.exact) sure |= eff.writes;
      switch (d.flow[i]) {
        case Flow.Call: {
          const t = d.rel[i]!;
          const g = inPlt(t) ? -1 : startingAt(t);
          if (g >= 0 && decoded(g).ok) atStart.add(g);
          else {
            w |= CALL_CLOBBERED;
            if (g < 0) sure |= CALL_CLOBBERED;
          }
          break;
        }
        case Flow.Jmp:
        case Flow.Jcc:
          reach(d.rel[i]!);
          break;
        case Flow.IndirectCall:
          w |= CALL_CLOBBERED;
          sure |= CALL_CLOBBERED;
          break;
        case Flow.IndirectJmp: {
          const cases = d.mem[i]
            ? undefined
            : switchTargets(
                build,
                (k) => d.addr[k]!,
                (k) => d.length[k]!,
                0,
                d.addr.length,
                i,
                instructionAt,
              );
          if (cases) for (const t of cases) reach(t);
          else w |= CALL_CLOBBERED;
          break;
        }
      }
    }
    c = {
      decoded: true,
      own: w & CALL_CLOBBERED,
      ownLower: sure & CALL_CLOBBERED,
      entered: [...atStart],
      inside: [...past],
    };
    codes.set(f, c);
    return c;
  };

  const allWritten = new Map<number, boolean>();
  const writesAll = (f: number): boolean => {
    let all = allWritten.get(f);
    if (all !== undefined) return all;
    const elsewhere = decodedBy.get(f);
    const known = elsewhere && decodedOrThrown(elsewhere);
    all = known ? writesAllIn(f, known) : surelyWritesAll(f);
    allWritten.set(f, all);
    return all;
  };

  const decodedBy = new Map<number, () => Instructions | undefined>();
  const decodedOrThrown = (get: () => Instructions | undefined): Instructions | undefined => {
    try {
      return get();
    } catch {
      return undefined; // a range past the file image: surelyWritesAll says so
    }
  };

  /** surelyWritesAll, from f's instructions decoded already (to its end, by the same decoder): only branches are decoded again, for their targets. */
  const writesAllIn = (f: number, d: Instructions): boolean => {
    const { start, end } = functions[f]!;
    const buf = build.bytesAt(start, end - start);
    // Decoded forms are memoised by start: make sure this one is of f's bytes, to their end or its padding.
    const to = d.count > 0 ? offsetAt(d, d.count - 1) + lengthAt(d, d.count - 1) : 0;
    if (to > buf.length || (to < buf.length && !buf.subarray(to).every((b) => b === 0 || b === 0xcc)))
      return surelyWritesAll(f);
    for (let i = 0; i < d.count; i++) {
      const flow = flowAt(d, i);
      if (flow === Flow.IndirectCall) return true;
      if (flow !== Flow.Call && flow !== Flow.Jmp && flow !== Flow.Jcc) continue;
      const q = offsetAt(d, i);
      if (!decode(buf, q, buf.length, ins) || ins.length !== lengthAt(d, i) || ins.relOff < 0)
        return surelyWritesAll(f); // not the decoding this module makes: decide from its own
      const t = start + q + ins.length + relDisplacement(buf, q, ins);
      if (inPlt(t) || (flow === Flow.Call && startingAt(t) < 0)) return true;
    }
    return false;
  };

  /** Whether f has one of the instructions `code` counts as surely writing the ABI's set; f must decode to its end, as `code` requires. */
  const surelyWritesAll = (f: number): boolean => {
    const { start, end } = functions[f]!;
    let buf: Buffer;
    try {
      buf = build.bytesAt(start, end - start);
    } catch {
      return false;
    }
    let found = false;
    for (let q = 0; q < buf.length; q += ins.length) {
      if (!decode(buf, q, buf.length, ins)) {
        // As `decoded`: trailing padding ends the code, anything else leaves f undecoded (which writes nothing surely).
        return found && buf.subarray(q).every((b) => b === 0 || b === 0xcc);
      }
      if (found) continue; // the rest must still decode for f to count as decoded
      const flow = ins.flow;
      if (flow === Flow.IndirectCall) found = true;
      else if (flow === Flow.Call || flow === Flow.Jmp || flow === Flow.Jcc) {
        const t = start + q + ins.length + relDisplacement(buf, q, ins);
        if (inPlt(t)) found = true;
        else if (flow === Flow.Call && startingAt(t) < 0) found = true;
      }
    }
    return found;
  };

  const indexOf = (fn: FunctionInfo): number => {
    // Sorted by start: the functions starting there are the ones just before upperBound's answer.
    for (let k = upperBound(fnStarts, fn.start) - 1; k >= 0 && fnStarts[k] === fn.start; k--)
      if (functions[k] === fn) return k;
    return -1;
  };

  return {
    build,
    code,
    writesAll,
    decodedElsewhere: (f, get) => void decodedBy.set(f, get),
    indexOf,
  };
}
