/**
 * A build's code as one table of instructions, for the register analyses
 * (clobbers.ts, liveness.ts): every function range of the build decoded
 * (elf/x86/decode.ts), each instruction with its register effects
 * (elf/x86/registers.ts), its control flow and where that flow goes, in flat typed
 * arrays (libcrypto has some 600 000 instructions).
 *
 * Where a branch goes is an instruction index, or one of the negative
 * markers below when it leaves the decoded code: the PLT (an ABI call or
 * tail call), or somewhere this table does not know.
 */
import { decode, Flow, newInsn, relDisplacement } from '../../elf/x86/decode.js';
import type { Build, FunctionInfo } from '../model.js';
import { newEffects, registerEffects } from '../../elf/x86/registers.js';

/** The branch goes to a PLT stub: a function of another object, called per the ABI. */
export const TO_PLT = -2;
/** The branch goes to code that was not decoded, or it has no target this table knows. */
export const TO_UNKNOWN = -3;
/** No branch (sequential instructions, returns). */
export const NO_TARGET = -1;

export interface Program {
  build: Build;
  functions: FunctionInfo[];
  /** Per function: its bytes decoded completely (else it has no instructions here). */
  decoded: Uint8Array;
  /** Per function: index of its first instruction and one past its last. */
  first: Int32Array;
  last: Int32Array;
  count: number;
  addr: Float64Array;
  length: Uint8Array;
  /** The function each instruction belongs to. */
  fn: Int32Array;
  flow: Uint8Array;
  reads: Int32Array;
  writes: Int32Array;
  /** 0 for an instruction elf/x86/registers.ts does not know. */
  exact: Uint8Array;
  /** The instruction that follows in memory (fall-through, return address), or NO_TARGET. */
  next: Int32Array;
  /** A direct branch's or call's target (an index, TO_PLT or TO_UNKNOWN), else NO_TARGET. */
  target: Int32Array;
  /** For a direct call: the function called when the target is a function's first byte, else -1. */
  callee: Int32Array;
  /** For an indirect jump through a register: the cases of its switch table, when recognised. */
  cases: Map<number, Int32Array>;
  /** For an indirect jump or call: 1 when through memory (a GOT slot: `jmp *x(%rip)`). */
  viaMemory: Uint8Array;
  /**
   * For an indirect jump through a register that is not a recognised switch: 1 when it
   * follows the frame's teardown (pop, leave, add $n,%rsp), so it leaves the function: a
   * tail call through a pointer.
   */
  afterTeardown: Uint8Array;
  /** The function whose range holds an address, or -1. */
  functionAt(vaddr: number): number;
}

const cache = new WeakMap<Build, Program>();

export function programOf(build: Build): Program {
  let p = cache.get(build);
  if (!p) cache.set(build, (p = decodeProgram(build)));
  return p;
}

/** Growable columns of the instruction table (typed arrays: libcrypto has some 600 000 rows). */
class Columns {
  size = 0;
  addr: Float64Array;
  rel: Float64Array; // absolute target of a direct branch, or NaN
  length: Uint8Array;
  fn: Int32Array;
  flow: Uint8Array;
  reads: Int32Array;
  writes: Int32Array;
  exact: Uint8Array;
  mem: Uint8Array;

  constructor(capacity: number) {
    this.addr = new Float64Array(capacity);
    this.rel = new Float64Array(capacity);
    this.length = new Uint8Array(capacity);
    this.fn = new Int32Array(capacity);
    this.flow = new Uint8Array(capacity);
    this.reads = new Int32Array(capacity);
    this.writes = new Int32Array(capacity);
    this.exact = new Uint8Array(capacity);
    this.mem = new Uint8Array(capacity);
  }

  /** Room for one more row. */
  reserve(): void {
    if (this.size < this.addr.length) return;
    const grow = <T extends Float64Array | Int32Array | Uint8Array>(a: T): T => {
      const b = new (a.constructor as new (n: number) => T)(a.length * 2 + 16);
      b.set(a);
      return b;
    };
    this.addr = grow(this.addr);
    this.rel = grow(this.rel);
    this.length = grow(this.length);
    this.fn = grow(this.fn);
    this.flow = grow(this.flow);
    this.reads = grow(this.reads);
    this.writes = grow(this.writes);
    this.exact = grow(this.exact);
    this.mem = grow(this.mem);
  }
}

function decodeProgram(build: Build): Program {
  const functions = build.functions();
  const ins = newInsn();
  const eff = newEffects();
  let bytes = 0;
  for (const f of functions) bytes += f.end - f.start;
  // gcc's code averages about four bytes an instruction.
  const c = new Columns(Math.ceil(bytes / 3) + 16);
  const decoded = new Uint8Array(functions.length);
  const first = new Int32Array(functions.length);
  const last = new Int32Array(functions.length);
  for (let f = 0; f < functions.length; f++) {
    const { start, end } = functions[f]!;
    first[f] = last[f] = c.size;
    let buf: Buffer;
    try {
      buf = build.bytesAt(start, end - start);
    } catch {
      continue; // a range past the file image: nothing to decode
    }
    const mark = c.size;
    let ok = true;
    for (let q = 0; q < buf.length;) {
      if (!decode(buf, q, buf.length, ins)) {
        // Trailing padding that does not decode (zeros after the last ret) is not code.
        ok = buf.subarray(q).every((b) => b === 0 || b === 0xcc);
        break;
      }
      registerEffects(buf, q, ins, eff);
      c.reserve();
      const i = c.size++;
      c.addr[i] = start + q;
      c.length[i] = ins.length;
      c.fn[i] = f;
      c.flow[i] = ins.flow;
      c.reads[i] = eff.reads;
      c.writes[i] = eff.writes;
      c.exact[i] = eff.exact ? 1 : 0;
      c.rel[i] = ins.relOff < 0 ? NaN : start + q + ins.length + relDisplacement(buf, q, ins);
      c.mem[i] = ins.modrmOff >= 0 && buf[q + ins.modrmOff]! >> 6 !== 3 ? 1 : 0;
      q += ins.length;
    }
    if (!ok) {
      c.size = mark;
      continue;
    }
    decoded[f] = 1;
    last[f] = c.size;
  }

  const count = c.size;
  const addr = c.addr.slice(0, count);
  const indexAt = instructionIndex(addr);
  const starts = new Map<number, number>();
  functions.forEach((f, i) => starts.set(f.start, i));
  const plt = build.obj.sections
    .filter((s) => s.name.startsWith('.plt'))
    .map((s) => [Number(s.addr), Number(s.addr + s.size)] as const);
  const inPlt = (v: number) => plt.some(([s, e]) => v >= s && v < e);
  const fnStarts = Float64Array.from(functions, (f) => f.start);
  const functionAt = (v: number): number => {
    const f = upperBound(fnStarts, v) - 1;
    return f >= 0 && v < functions[f]!.end ? f : -1;
  };

  const next = new Int32Array(count);
  const target = new Int32Array(count).fill(NO_TARGET);
  const callee = new Int32Array(count).fill(-1);
  for (let i = 0; i < count; i++) {
    const after = addr[i]! + c.length[i]!;
    next[i] = i + 1 < count && addr[i + 1] === after ? i + 1 : indexAt(after);
    const t = c.rel[i]!;
    if (Number.isNaN(t)) continue;
    // A PLT stub is another object's function whatever its code shows: the ABI applies.
    if (inPlt(t)) {
      target[i] = TO_PLT;
      continue;
    }
    const ti = indexAt(t);
    target[i] = ti >= 0 ? ti : TO_UNKNOWN;
    if (c.flow[i] === Flow.Call) callee[i] = starts.get(t) ?? -1;
  }

  const program: Program = {
    build,
    functions,
    decoded,
    first,
    last,
    count,
    addr,
    length: c.length.slice(0, count),
    fn: c.fn.slice(0, count),
    flow: c.flow.slice(0, count),
    reads: c.reads.slice(0, count),
    writes: c.writes.slice(0, count),
    exact: c.exact.slice(0, count),
    next,
    target,
    callee,
    cases: new Map(),
    viaMemory: c.mem.slice(0, count),
    afterTeardown: new Uint8Array(count),
    functionAt,
  };
  for (let i = 0; i < count; i++)
    if (program.flow[i] === Flow.IndirectJmp && !program.viaMemory[i]) {
      const cases = switchCases(program, indexAt, i);
      if (cases) program.cases.set(i, cases);
      else if (i > first[program.fn[i]!]! && tearsDown(build.bytesAt(addr[i - 1]!, program.length[i - 1]!)))
        program.afterTeardown[i] = 1;
    }
  return program;
}

/**
 * The index of the instruction starting at an address, or NO_TARGET: a
 * binary search while the addresses ascend (functions do not overlap, as in
 * every build seen), else a map in which the first function to decode an
 * address keeps it.
 */
function instructionIndex(addr: Float64Array): (v: number) => number {
  let sorted = true;
  for (let i = 1; i < addr.length && sorted; i++) sorted = addr[i - 1]! < addr[i]!;
  if (sorted)
    return (v) => {
      const i = upperBound(addr, v) - 1;
      return i >= 0 && addr[i] === v ? i : NO_TARGET;
    };
  const at = new Map<number, number>();
  for (let i = addr.length - 1; i >= 0; i--) at.set(addr[i]!, i);
  return (v) => at.get(v) ?? NO_TARGET;
}

/** Index of the first element of the sorted `xs` above v. */
export function upperBound(xs: Float64Array, v: number): number {
  let lo = 0;
  let hi = xs.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (xs[mid]! <= v) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** A switch table holds at most this many cases here; a longer run of entries is not believed. */
const MAX_CASES = 4096;

/**
 * The cases of gcc's position-independent switch, recognised by its shape:
 *
 *     lea    table(%rip),%rB      (anywhere in the function)
 *     ...
 *     movslq (%rB,%rI,4),%rA      (anywhere before)
 *     add    %rB,%rA
 *     jmp    *%rA
 *
 * The table holds offsets from its own address. Its length is not known
 * (the bound check is elsewhere), so entries are read while each lands on
 * an instruction of this build: every real case does, and an entry read
 * past the table's end only adds a successor, which makes more registers
 * live, never fewer. Anything else: undefined (the caller assumes every
 * register live).
 */
function switchCases(p: Program, indexAt: (v: number) => number, j: number): Int32Array | undefined {
  const f = p.fn[j]!;
  const cases = switchTargets(
    p.build,
    (i) => p.addr[i]!,
    (i) => p.length[i]!,
    p.first[f]!,
    p.last[f]!,
    j,
    indexAt,
  );
  return cases ? Int32Array.from(cases) : undefined;
}

/**
 * switchCases on any table of one function's instructions: instructions
 * lo..hi-1 (addrOf, lengthOf), the jump at j; `at` says what an address
 * lands on (an id, negative for nothing), and the cases are those ids.
 * Shared with the lazy per-function decoding (function-code.ts).
 */
export function switchTargets(
  build: Build,
  addrOf: (i: number) => number,
  lengthOf: (i: number) => number,
  lo: number,
  hi: number,
  j: number,
  at: (v: number) => number,
): number[] | undefined {
  const add = j - 1;
  if (add < lo) return undefined;
  const bytes = (i: number) => build.bytesAt(addrOf(i), lengthOf(i));
  // jmp *%rA: [3e] [41] ff e0+A
  const jr = regOfJmp(bytes(j));
  if (jr < 0) return undefined;
  // add %rB,%rA: 48|4x 01 /r (mod 3, reg B, rm A); the load from the table may be scheduled earlier.
  const ab = bytes(add);
  if (ab.length !== 3 || (ab[0]! & 0xf8) !== 0x48 || ab[1] !== 0x01 || ab[2]! >> 6 !== 3) return undefined;
  const rB = ((ab[2]! >> 3) & 7) | ((ab[0]! & 4) << 1);
  const rA = (ab[2]! & 7) | ((ab[0]! & 1) << 3);
  if (rA !== jr) return undefined;
  // %rB comes from a `lea table(%rip)` of this function, often hoisted out of a loop, so not found by
  // walking back: every such lea of the function is a candidate table, and the cases of all of them
  // are successors. The real table is among them; the others only add successors.
  const cases = new Set<number>();
  for (let i = lo; i < hi; i++) {
    if (lengthOf(i) !== 7) continue;
    const b = bytes(i);
    if ((b[0]! & 0xfb) !== 0x48 || b[1] !== 0x8d || (b[2]! & 0xc7) !== 0x05) continue;
    if ((((b[2]! >> 3) & 7) | ((b[0]! & 4) << 1)) !== rB) continue;
    for (const c of tableCases(build, at, addrOf(i) + 7 + b.readInt32LE(3))) cases.add(c);
  }
  return cases.size > 0 ? [...cases] : undefined;
}

/** The entries of a switch table at `table`, read while each lands on an instruction of the build. */
function tableCases(build: Build, at: (v: number) => number, table: number): number[] {
  const cases: number[] = [];
  if (build.kindAt(table) === 'none') return cases;
  const room = Math.min(build.extentAt(table), MAX_CASES * 4);
  let words: Buffer;
  try {
    words = build.bytesAt(table, room - (room % 4));
  } catch {
    return cases; // past the file image
  }
  for (let k = 0; k + 4 <= words.length; k += 4) {
    const i = at(table + words.readInt32LE(k));
    if (i < 0) break;
    cases.push(i);
  }
  return cases;
}

/**
 * Whether an instruction gives back the stack frame: pop (of a callee-saved
 * register), leave, add $n,%rsp. gcc keeps one stack depth at every point of
 * a function's body, so a jump right after it is on the way out.
 */
function tearsDown(b: Buffer): boolean {
  const k = b.length === 2 && b[0] === 0x41 ? 1 : 0;
  if (b.length === k + 1 && b[k]! >= 0x58 && b[k]! <= 0x5f) return true;
  if (b.length === 1 && b[0] === 0xc9) return true;
  return b.length >= 4 && b[0] === 0x48 && (b[1] === 0x83 || b[1] === 0x81) && b[2] === 0xc4;
}

/** The register of `jmp *%reg` (with an optional notrack or bnd prefix), or -1. */
function regOfJmp(b: Buffer): number {
  let k = 0;
  if (b[k] === 0x3e || b[k] === 0xf2) k++;
  let rexB = 0;
  if ((b[k]! & 0xf0) === 0x40) rexB = (b[k++]! & 1) << 3;
  if (b[k] !== 0xff || b[k + 1]! >> 3 !== 0x1c) return -1;
  return (b[k + 1]! & 7) | rexB;
}
