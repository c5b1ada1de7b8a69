/**
 * Two versions of one function, instruction by instruction: each function
 * is decoded into a list of instruction *shapes* (the bytes with every
 * field that can vary without a change of logic left out: branch and
 * RIP-relative displacements, memory displacements, immediates), and the two
 * lists are aligned as a shortest edit script (Myers' O((n+m)·D) diff, fast
 * when the functions differ in a few places, as security fixes do).
 *
 * The layout check (analyze/layout.ts) reads what differs between aligned
 * instructions of the same shape; the function matcher (match.ts) uses the
 * share of aligned instructions to confirm pairs it matched by position.
 */
import type { Build } from '../model.js';
import { decode, Flow, newInsn, relDisplacement } from '../../elf/x86/decode.js';
import { targetsOf, type Targets } from './targets.js';

/**
 * A decoded function, one row per instruction, as flat typed arrays (one
 * buffer per function, read by index through the accessors below): an
 * object per instruction cost about 1 µs each and most of the garbage of
 * the layout check, whose changed and position-paired functions hold tens
 * of thousands of instructions.
 */
export interface Decoded {
  /** Number of instructions. */
  count: number;
  /** Per instruction, a 32-bit hash of the shape: equal shapes are the same operation on the same registers. */
  shapes: Uint32Array;
  /** Per instruction, the shape with the displacement and the immediate: equal means the same instruction. */
  exacts: Uint32Array;
  /** Per instruction, STRIDE int32s: offset from the function start, packed INFO bits, displacement. */
  rows: Int32Array;
  /** Per instruction, the immediate operand (HAS_IMM), or the target of a call out of the function (CALL_OUT). */
  values: Float64Array;
  /** `mov %rsp,%rbp` among its first instructions: %rbp addresses the stack frame, not an object. */
  framePointer: boolean;
  /** The shapes in ascending order, made when shapeOverlap first needs them (there from the start, so every Decoded has one hidden class). */
  sortedShapes: Uint32Array | undefined;
  /** How call targets are named (targets.ts): callees are named when asked, not for every call. */
  names: Pick<Targets, 'nameOf'>;
}

const STRIDE = 3;
const OFFSET = 0;
const INFO = 1;
const DISP = 2;
// INFO bits: length (0-3), flow (4-6), base + 1 (7-11), immReg + 1 (12-16), then flags.
const FLOW_SHIFT = 4;
const BASE_SHIFT = 7;
const IMMREG_SHIFT = 12;
const ACCESS = 1 << 17;
const INDEXED = 1 << 18;
const HAS_IMM = 1 << 19;
const CALL_OUT = 1 << 20;
const EVIDENCE = 1 << 21;
/** %rsp: accesses off it are stack slots, not fields. */
const RSP = 4;
/** What a `mov $imm` loads an allocation size into: %rdi and %rsi (analyze/layout.ts SIZE_REGISTERS). */
const RDI = 7;
const RSI = 6;

/** Offset of instruction i from the function start. */
export function offsetAt(d: Decoded, i: number): number {
  return d.rows[i * STRIDE + OFFSET]!;
}

export function lengthAt(d: Decoded, i: number): number {
  return d.rows[i * STRIDE + INFO]! & 15;
}

export function flowAt(d: Decoded, i: number): Flow {
  return ((d.rows[i * STRIDE + INFO]! >> FLOW_SHIFT) & 7) as Flow;
}

/** The base register of a memory operand (0..15), -1 without one. */
export function baseAt(d: Decoded, i: number): number {
  return ((d.rows[i * STRIDE + INFO]! >> BASE_SHIFT) & 31) - 1;
}

/** For `mov $imm, reg`: the register written (0..15), else -1. */
export function immRegAt(d: Decoded, i: number): number {
  return ((d.rows[i * STRIDE + INFO]! >> IMMREG_SHIFT) & 31) - 1;
}

/** The memory operand is read or written (not an address computed by LEA, not a NOP's or a prefetch's). */
export function isAccess(d: Decoded, i: number): boolean {
  return (d.rows[i * STRIDE + INFO]! & ACCESS) !== 0;
}

export function isIndexed(d: Decoded, i: number): boolean {
  return (d.rows[i * STRIDE + INFO]! & INDEXED) !== 0;
}

/** Signed displacement off the base register (0 when the encoding has none); undefined without a base. */
export function dispAt(d: Decoded, i: number): number | undefined {
  return baseAt(d, i) < 0 ? undefined : d.rows[i * STRIDE + DISP]!;
}

/** The immediate operand, sign-extended from its size (undefined without one). */
export function immAt(d: Decoded, i: number): number | undefined {
  return (d.rows[i * STRIDE + INFO]! & HAS_IMM) !== 0 ? d.values[i]! : undefined;
}

/**
 * Whether instruction i can carry layout evidence (analyze/layout.ts): an
 * access off a base register other than %rsp, or a `mov $imm` into %rdi or
 * %rsi. Set while decoding, so the layout check's first test of a changed
 * pair reads one bit per instruction.
 */
export function carriesEvidence(d: Decoded, i: number): boolean {
  return (d.rows[i * STRIDE + INFO]! & EVIDENCE) !== 0;
}

/**
 * The exact hashes of the instructions that carry evidence, sorted: equal
 * for two functions when they hold the same multiset of such instructions.
 */
export function evidenceKeys(d: Decoded): Uint32Array {
  const rows = d.rows;
  const exacts = d.exacts;
  let n = 0;
  for (let i = 0, r = INFO; i < d.count; i++, r += STRIDE) if ((rows[r]! & EVIDENCE) !== 0) n++;
  const keys = new Uint32Array(n);
  n = 0;
  for (let i = 0, r = INFO; i < d.count; i++, r += STRIDE)
    if ((rows[r]! & EVIDENCE) !== 0) keys[n++] = exacts[i]!;
  return keys.sort();
}

/** For a call out of the function: the name of its target (targets.ts), else undefined. */
export function calleeAt(d: Decoded, i: number): string | undefined {
  return (d.rows[i * STRIDE + INFO]! & CALL_OUT) !== 0 ? d.names.nameOf(d.values[i]!) : undefined;
}

/** Decoded functions are cached per build and start: both directions and every check share them. */
const decoded = new WeakMap<Build, Map<number, Decoded | null>>();

/**
 * The instructions of [start, end), or undefined when some bytes do not
 * decode (data in hand-written assembly): such functions are not aligned.
 */
export function instructionsOf(build: Build, start: number, end: number): Decoded | undefined {
  let memo = decoded.get(build);
  if (!memo) decoded.set(build, (memo = new Map()));
  let d = memo.get(start);
  if (d === undefined) {
    d = decodeInstructions(build.bytesAt(start, end - start), start, targetsOf(build)) ?? null;
    memo.set(start, d);
  }
  return d ?? undefined;
}

/**
 * The share of instructions of the larger function that have a counterpart
 * of the same shape in the other, counted as multisets: a cheap upper bound
 * of the aligned share, enough to tell one function changed from two
 * different functions.
 */
export function shapeOverlap(a: Decoded, b: Decoded): number {
  // Both multisets sorted (once per function: a leftover is tried against several candidates), then merged.
  const x = (a.sortedShapes ??= a.shapes.slice().sort());
  const y = (b.sortedShapes ??= b.shapes.slice().sort());
  let common = 0;
  for (let i = 0, j = 0; i < x.length && j < y.length;) {
    if (x[i]! === y[j]!) {
      common++;
      i++;
      j++;
    } else if (x[i]! < y[j]!) i++;
    else j++;
  }
  return common / Math.max(x.length, y.length, 1);
}

const ins = newInsn();

/**
 * Rows being decoded, reused for every function and copied into one buffer
 * of the right size at the end (a function's length in instructions is
 * not known before it is decoded).
 */
let scratchRows = new Int32Array(4096 * STRIDE);
let scratchShapes = new Uint32Array(4096);
let scratchExacts = new Uint32Array(4096);
let scratchValues = new Float64Array(4096);

function growScratch(): void {
  const grown = (n: number) => n * 2;
  const rows = new Int32Array(grown(scratchRows.length));
  rows.set(scratchRows);
  const shapes = new Uint32Array(grown(scratchShapes.length));
  shapes.set(scratchShapes);
  const exacts = new Uint32Array(grown(scratchExacts.length));
  exacts.set(scratchExacts);
  const values = new Float64Array(grown(scratchValues.length));
  values.set(scratchValues);
  scratchRows = rows;
  scratchShapes = shapes;
  scratchExacts = exacts;
  scratchValues = values;
}

/**
 * The instructions of the function whose bytes are `buf`, loaded at
 * `start`, or undefined when some bytes do not decode. Pure: the build is
 * seen only through its bytes and the naming of targets outside the function.
 */
export function decodeInstructions(
  buf: Buffer,
  start: number,
  names: Pick<Targets, 'nameOf' | 'hashOf'>,
): Decoded | undefined {
  const end = start + buf.length;
  let n = 0;
  let p = 0;
  while (p < buf.length) {
    if (!decode(buf, p, buf.length, ins)) {
      // Trailing padding that does not decode (zeros after the last ret) is not code.
      if (buf.subarray(p).every((b) => b === 0 || b === 0xcc)) break;
      return undefined;
    }
    if (n === scratchShapes.length) growScratch();
    const len = ins.length;
    // The bytes of the fields left out, as a bit mask over the instruction's (at most 15) bytes.
    const fields =
      field(ins.relOff, ins.relSize) |
      field(ins.ripOff, 4) |
      field(ins.dispOff, ins.dispSize) |
      field(ins.immOff, ins.immSize);
    let h = 0x811c9dc5;
    for (let i = 0; i < len; i++) {
      if ((fields >> i) & 1) continue;
      // The ModRM's mod bits say how long the displacement is: a field that moves past 0x7f changes them, not the operation.
      h = Math.imul(h ^ (i === ins.modrmOff && ins.base >= 0 ? buf[p + i]! & 0x3f : buf[p + i]!), 0x01000193);
    }
    h = Math.imul(h ^ (ins.immOff >= 0 ? 0x100 + ins.immSize : 0), 0x01000193);
    const access = ins.base >= 0 && !ins.lea && !ins.hint;
    let info =
      len |
      (ins.flow << FLOW_SHIFT) |
      ((ins.base + 1) << BASE_SHIFT) |
      (access ? ACCESS : 0) |
      (access && ins.base !== RSP ? EVIDENCE : 0) |
      (ins.indexed ? INDEXED : 0);
    let value = 0;
    if (ins.relOff >= 0) {
      const target = start + p + len + relDisplacement(buf, p, ins);
      if (target < start || target >= end) {
        // Targets are named as the code comparison names them (targets.ts), so moved code compares equal.
        h = Math.imul(h ^ names.hashOf(target, start, end, false), 0x01000193);
        if (ins.flow === Flow.Call && ins.immOff < 0) {
          // A relative branch has no immediate: its slot holds the target, named when asked (calleeAt).
          info |= CALL_OUT;
          value = target;
        }
      } else h = Math.imul(h ^ 0x200, 0x01000193);
    }
    if (ins.ripOff >= 0)
      h = Math.imul(
        h ^ names.hashOf(start + p + len + buf.readInt32LE(p + ins.ripOff), start, end, ins.lea),
        0x01000193,
      );
    const disp =
      ins.base < 0
        ? 0x5a5a5a5a
        : ins.dispOff < 0
          ? 0
          : ins.dispSize === 1
            ? buf.readInt8(p + ins.dispOff)
            : buf.readInt32LE(p + ins.dispOff);
    const shape = h >>> 0;
    let exact: number;
    if (ins.immOff >= 0) {
      const imm = readImm(buf, p + ins.immOff, ins.immSize);
      const reg = movImmRegister(buf, p, ins.modrmOff, ins.immOff);
      info |= HAS_IMM | ((reg + 1) << IMMREG_SHIFT) | (reg === RDI || reg === RSI ? EVIDENCE : 0);
      value = imm;
      exact =
        (Math.imul(Math.imul(shape ^ disp, 0x01000193) ^ imm, 0x01000193) ^ Math.floor(imm / 2 ** 32)) >>> 0;
    } else exact = Math.imul(Math.imul(shape ^ disp, 0x01000193) ^ 0x3c3c3c3c, 0x01000193) >>> 0;
    const r = n * STRIDE;
    scratchRows[r + OFFSET] = p;
    scratchRows[r + INFO] = info;
    scratchRows[r + DISP] = ins.base < 0 ? 0 : disp;
    scratchShapes[n] = shape;
    scratchExacts[n] = exact;
    scratchValues[n] = value;
    n++;
    p += len;
  }
  return packed(n, setsFramePointer(buf, n), names);
}

/** The n rows decoded so far, copied out of the scratch arrays into one buffer. */
function packed(n: number, framePointer: boolean, names: Pick<Targets, 'nameOf'>): Decoded {
  const mem = new ArrayBuffer(n * (8 + 4 + 4 + 4 * STRIDE));
  const values = new Float64Array(mem, 0, n);
  const shapes = new Uint32Array(mem, n * 8, n);
  const exacts = new Uint32Array(mem, n * 12, n);
  const rows = new Int32Array(mem, n * 16, n * STRIDE);
  values.set(scratchValues.subarray(0, n));
  shapes.set(scratchShapes.subarray(0, n));
  exacts.set(scratchExacts.subarray(0, n));
  rows.set(scratchRows.subarray(0, n * STRIDE));
  return { count: n, shapes, exacts, rows, values, framePointer, sortedShapes: undefined, names };
}

/**
 * The register `mov $imm, reg` writes (B8+r, or C7 /0 with a register
 * operand), with REX.B; -1 for any other instruction. An allocation size
 * is loaded this way into the argument registers.
 */
function movImmRegister(buf: Buffer, p: number, modrmOff: number, immOff: number): number {
  const rexB = (at: number) => (at > p && (buf[at - 1]! & 0xf0) === 0x40 ? (buf[at - 1]! & 1) << 3 : 0);
  if (modrmOff < 0) {
    const op = p + immOff - 1;
    return (buf[op]! & 0xf8) === 0xb8 ? (buf[op]! & 7) | rexB(op) : -1;
  }
  const op = p + modrmOff - 1;
  const modrm = buf[op + 1]!;
  return buf[op] === 0xc7 && modrm >> 6 === 3 && ((modrm >> 3) & 7) === 0 ? (modrm & 7) | rexB(op) : -1;
}

/** Reads the first rows still in the scratch arrays. */
function setsFramePointer(bytes: Buffer, n: number): boolean {
  for (let k = 0; k < n && k < 8; k++) {
    const info = scratchRows[k * STRIDE + INFO]!;
    if ((info & 15) === 3 && isMovRspRbp(bytes, scratchRows[k * STRIDE + OFFSET]!)) return true;
  }
  return false;
}

/** 48 89 e5 or 48 8b ec: the two encodings of `mov %rsp,%rbp`. */
function isMovRspRbp(b: Buffer, at: number): boolean {
  return (
    b[at] === 0x48 &&
    ((b[at + 1] === 0x89 && b[at + 2] === 0xe5) || (b[at + 1] === 0x8b && b[at + 2] === 0xec))
  );
}

/** The bits of bytes [off, off + size) (none when off is -1); an 8-byte immediate after 7 bytes still fits in 15 bits. */
function field(off: number, size: number): number {
  return off < 0 ? 0 : ((1 << size) - 1) << off;
}

function readImm(buf: Buffer, at: number, size: number): number {
  if (size === 1) return buf.readInt8(at);
  if (size === 2) return buf.readInt16LE(at);
  if (size === 4) return buf.readInt32LE(at);
  if (size === 8) return Number(buf.readBigInt64LE(at));
  return buf[at]!; // enter's imm16+imm8 and other odd shapes: only equality matters
}

/**
 * Aligned instructions, in order: the t-th pair is instruction a[t] of the
 * first function and b[t] of the second; `exact` marks those that are the
 * same instruction. Flat arrays of indices, not a tuple per pair: a changed
 * function of a few thousand instructions made as many small arrays.
 */
export interface Alignment {
  a: number[];
  b: number[];
  exact: boolean[];
}

/**
 * Aligns in two passes: identical instructions first (so that repeated
 * code, such as a run of field copies the compiler reordered, is paired
 * with its true counterpart), then, inside each gap between identical
 * runs, instructions of the same shape. Undefined when the functions differ
 * by more than `maxEdits` identical-instruction edits: too different to say
 * anything about.
 */
export function align(da: Decoded, db: Decoded, maxEdits = 1000): Alignment | undefined {
  const la = da.count;
  const lb = db.count;
  const ex: Pairs = { a: [], b: [] };
  if (!diff(da.exacts, db.exacts, 0, la, 0, lb, maxEdits, ex)) return undefined;
  const sa = da.shapes;
  const sb = db.shapes;
  const out: Alignment = { a: [], b: [], exact: [] };
  const shaped: Pairs = { a: [], b: [] };
  let i = 0;
  let j = 0;
  const gap = (i1: number, j1: number) => {
    if (i1 > i && j1 > j) {
      shaped.a.length = 0;
      shaped.b.length = 0;
      // A gap too different to align by shape keeps no pairs (as before: the pairs found so far are dropped).
      if (!diff(sa, sb, i, i1, j, j1, maxEdits, shaped)) return;
      for (let t = 0; t < shaped.a.length; t++) {
        out.a.push(shaped.a[t]!);
        out.b.push(shaped.b[t]!);
        out.exact.push(false);
      }
    }
  };
  for (let t = 0; t < ex.a.length; t++) {
    const x = ex.a[t]!;
    const y = ex.b[t]!;
    gap(x, y);
    out.a.push(x);
    out.b.push(y);
    out.exact.push(true);
    i = x + 1;
    j = y + 1;
  }
  gap(la, lb);
  return out;
}

/** Index pairs being collected, in two flat arrays. */
interface Pairs {
  a: number[];
  b: number[];
}

/**
 * Longest common subsequence of a[a0..a1) and b[b0..b1), appended to `out`
 * in order: common prefix and suffix, then Myers' greedy diff. False when
 * more than `maxEdits` edits apart (`out` then holds a partial result).
 */
function diff(
  a: Uint32Array,
  b: Uint32Array,
  a0: number,
  a1: number,
  b0: number,
  b1: number,
  maxEdits: number,
  out: Pairs,
): boolean {
  while (a0 < a1 && b0 < b1 && a[a0] === b[b0]) {
    out.a.push(a0++);
    out.b.push(b0++);
  }
  const tail = a1;
  while (a1 > a0 && b1 > b0 && a[a1 - 1] === b[b1 - 1]) {
    a1--;
    b1--;
  }
  if (!myers(a, b, a0, a1, b0, b1, maxEdits, out)) return false;
  for (let k = 0; k < tail - a1; k++) {
    out.a.push(a1 + k);
    out.b.push(b1 + k);
  }
  return true;
}

/**
 * The diagonals each step of myers() reached, for the backtrack: step d
 * (d >= 1) keeps the 2d - 1 diagonals -(d - 1)..d - 1, at (d - 1)² in one
 * buffer reused by every call (a slice per step was most of the garbage of
 * aligning a function with a few hundred edits).
 */
let trace = new Int32Array(1 << 16);
/** The furthest x reached on each diagonal, reused likewise. */
let furthest = new Int32Array(2 * 1024 + 3);

function myers(
  a: Uint32Array,
  b: Uint32Array,
  a0: number,
  a1: number,
  b0: number,
  b1: number,
  maxEdits: number,
  out: Pairs,
): boolean {
  const n = a1 - a0;
  const m = b1 - b0;
  if (n === 0 || m === 0) return true;
  const max = Math.min(n + m, maxEdits);
  const offset = max + 1;
  if (furthest.length < 2 * max + 3) furthest = new Int32Array(2 * max + 3);
  const v = furthest;
  // Step 0 reads only diagonal 1 before writing; every later step reads what the one before wrote.
  v[offset + 1] = 0;
  for (let d = 0; d <= max; d++) {
    if (d > 0) {
      const at = (d - 1) * (d - 1);
      if (trace.length < at + 2 * d - 1) {
        const grown = new Int32Array(Math.max(trace.length * 2, at + 2 * d - 1));
        grown.set(trace);
        trace = grown;
      }
      trace.set(v.subarray(offset - d + 1, offset + d), at);
    }
    for (let k = -d; k <= d; k += 2) {
      let x =
        k === -d || (k !== d && v[offset + k - 1]! < v[offset + k + 1]!)
          ? v[offset + k + 1]!
          : v[offset + k - 1]! + 1;
      let y = x - k;
      while (x < n && y < m && a[a0 + x] === b[b0 + y]) {
        x++;
        y++;
      }
      v[offset + k] = x;
      if (x >= n && y >= m) {
        backtrack(a0, b0, n, m, d, out);
        return true;
      }
    }
  }
  return false;
}

/** Appends the common elements of the path found at step dEnd, in order. */
function backtrack(a0: number, b0: number, n: number, m: number, dEnd: number, out: Pairs): void {
  // Walked from the end: collected backwards, then appended in order.
  const xs: number[] = [];
  let x = n;
  let y = m;
  for (let d = dEnd; d > 0; d--) {
    // Diagonal k of step d - 1 is at (d - 1)² + k + d - 1.
    const base = (d - 1) * (d - 1) + d - 1;
    const at = (k: number) => trace[base + k]!;
    const k = x - y;
    const prevK = k === -d || (k !== d && at(k - 1) < at(k + 1)) ? k + 1 : k - 1;
    const prevX = at(prevK);
    const prevY = prevX - prevK;
    while (x > prevX && y > prevY) {
      x--;
      y--;
      xs.push(x, y);
    }
    x = prevX;
    y = prevY;
  }
  while (x > 0 && y > 0) {
    x--;
    y--;
    xs.push(x, y);
  }
  for (let t = xs.length - 2; t >= 0; t -= 2) {
    out.a.push(a0 + xs[t]!);
    out.b.push(b0 + xs[t + 1]!);
  }
}
