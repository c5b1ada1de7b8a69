/**
 * The data-reference map of one build: every place whose value is an
 * address inside the build's own writable region (.data, .bss, a
 * partial-RELRO .got.plt), with the region offset it refers to. The trigger
 * rewrites each of them when it stages the build, so that the build's code
 * addresses the canonical (first loaded) build's copy of each datum: one
 * address per datum, whatever code touches it. Plain aliasing of the region
 * gives each global a second address, which breaks pointer comparisons
 * (list sentinels, objects handed out earlier) and futex keys (a waiter on
 * the old address is never woken by an unlock through the new one).
 *
 * Two kinds of places:
 *   - code: the disp32 of a RIP-relative operand (`lea head(%rip)`,
 *     `mov counter(%rip), %eax`), found by decoding the executable sections;
 *   - words: relocations outside the region whose value lies in it
 *     (RELATIVE with the addend there, GLOB_DAT/64 to the build's own data).
 *
 * A map is only worth something with a proof that it is complete, so every
 * byte of the executable sections is accounted for: decoded as part of a
 * function (symbols, unwind tables, code reached from them or from pointers
 * the relocations hold), padding between functions, or bytes of which no
 * 4-byte window, read as a RIP-relative displacement, can reach the region
 * (data tables that hand-written assembly keeps in .text). What is left is
 * listed as uncovered, with the reason. Pure: it reads a parsed build.
 */
import { PF_X, RelocType, SHF_EXECINSTR } from '../../elf/index.js';
import type { Build } from '../model.js';
import { decode, endsStraightLine, newInsn, relDisplacement, type Insn } from '../../elf/x86/decode.js';
import { effectiveAddend } from '../analyze/sites.js';
import type { CodeRef, CoverageRange, DataRefs, WordRef } from '../../patches/datarefs.js';
import { decodeLogOf, type DecodeLog } from './decode-log.js';

export type { CodeRef, Coverage, CoverageRange, DataRefs, WordRef } from '../../patches/datarefs.js';

const enum Mark {
  /** A RIP-relative operand of decoded code points here. */
  Addressed = 1,
  /** A branch of decoded code, a function start or a relocated pointer points here. */
  Entered = 2,
  /** Both: the largest value a byte of `marks` holds (values are searched for natively, see addressedOnly). */
  Both = 3,
}

const enum Byte {
  Unknown = 0,
  Code = 1,
  Padding = 2,
  Scanned = 3,
  Table = 4,
}

/** Immediates that may follow a disp32 in one instruction: none, imm8, imm16, imm32. */
const TRAILING = [0, 1, 2, 4];

interface Area {
  start: number;
  end: number;
  /** Sections decoded linearly from their start (PLT stubs, .init, .fini): they hold only code. */
  stubs: boolean;
}

/** The executable bytes of the build: SHF_EXECINSTR sections, or PF_X segments without section headers. */
function executableAreas(build: Build): Area[] {
  const secs = build.obj.sections.filter((s) => (s.flags & SHF_EXECINSTR) !== 0n && s.size > 0n);
  if (secs.length > 0) {
    return secs
      .map((s) => ({ start: Number(s.addr), end: Number(s.addr + s.size), stubs: s.name !== '.text' }))
      .sort((a, b) => a.start - b.start);
  }
  return build.obj.loadSegments
    .filter((p) => (p.flags & PF_X) !== 0)
    .map((p) => ({ start: Number(p.vaddr), end: Number(p.vaddr + p.filesz), stubs: false }));
}

/**
 * The state of one build's map while it is made, with the walks over its code as methods: one
 * function per walk for every build (closures made anew per build sent V8's optimised code of the
 * first build back to the interpreter at the second, for a "wrong call target").
 */
class Scan {
  /** What decoding found each byte of the areas to be (Byte). */
  readonly state: Uint8Array;
  /** What decoded code and the loader's pointers say about a byte: addressed as data, or entered. */
  readonly marks: Uint8Array;
  /**
   * 1 where a symbol of any type starts (assembly labels of tables): where a run of unknown bytes is
   * split. Apart from `marks` so that the next label is found natively (indexOf), not byte by byte.
   */
  readonly labels: Uint8Array;
  /** The bytes of each area (one view each: decoding a function reads its area's view between bounds). */
  readonly bufs: Buffer[];
  /**
   * Bytes in each state but Code, counted as pass 3 fills them (it is the only pass that sets them, each
   * byte once): the coverage figures without another walk over every byte. Code is what is left.
   */
  readonly counts = [0, 0, 0, 0, 0];
  readonly refs = new Map<number, CodeRef>();
  /** Branch targets outside known code, to decode later by control flow. */
  readonly roots: number[] = [];
  /** Branch targets inside the range `linear` is decoding, kept until it knows how far it got. */
  private readonly inner: number[] = [];
  readonly uncovered: CoverageRange[] = [];
  readonly accounted: CoverageRange[] = [];
  private readonly ins = newInsn();

  constructor(
    readonly build: Build,
    readonly areas: readonly Area[],
    readonly lo: number,
    readonly hi: number,
    readonly rs: number,
    readonly re: number,
  ) {
    this.state = new Uint8Array(hi - lo);
    this.marks = new Uint8Array(hi - lo);
    this.labels = new Uint8Array(hi - lo);
    this.bufs = areas.map((a) => build.bytesAt(a.start, a.end - a.start));
  }

  /** The index of the area holding `v`, or -1 (a loop: it runs for every root and function). */
  areaOf(v: number): number {
    const { areas } = this;
    for (let i = 0; i < areas.length; i++) if (v >= areas[i]!.start && v < areas[i]!.end) return i;
    return -1;
  }

  /** Records the instruction's RIP-relative operand when it points into the region. */
  note(buf: Buffer, base: number, p: number, insn: Insn): void {
    if (insn.ripOff < 0) return;
    const { lo, hi, rs, re } = this;
    const end = base + p + insn.length;
    const target = end + buf.readInt32LE(p + insn.ripOff);
    if (target >= lo && target < hi) this.marks[target - lo]! |= Mark.Addressed;
    if (target >= rs && target < re)
      this.refs.set(base + p + insn.ripOff, { site: base + p + insn.ripOff, end, offset: target - rs });
  }

  branchTarget(buf: Buffer, base: number, p: number, insn: Insn): void {
    if (insn.relOff < 0) return;
    const rel = relDisplacement(buf, p, insn);
    const target = base + p + insn.length + rel;
    this.roots.push(target);
    if (target >= this.lo && target < this.hi) this.marks[target - this.lo]! |= Mark.Entered;
  }

  /**
   * A branch of decoded code to `target`, outside the decoded part of its own function: the byte is
   * entered, and the target a root to follow. Targets outside [lo, hi) are in no area, and targets that
   * are decoded code already stay so: roots there would be dropped unfollowed, and pass 3 reads the
   * marks of unknown bytes only, so neither is kept (most calls go to functions decoded before).
   */
  private enter(target: number): void {
    const { lo } = this;
    if (target < lo || target >= this.hi || this.state[target - lo] === Byte.Code) return;
    this.marks[target - lo]! |= Mark.Entered;
    this.roots.push(target);
  }

  /**
   * Branches into [start, end) wait in `inner` until the decoded part, [start, stop), is known: a
   * target there is decoded code, whose mark pass 3 never reads (it reads those of unknown bytes only)
   * and which no root needs to reach. The others are entered, after the function's other branches.
   */
  private settle(start: number, stop: number): void {
    const { lo, inner } = this;
    this.state.fill(Byte.Code, start - lo, stop - lo);
    for (let i = 0; i < inner.length; i++) if (inner[i]! >= stop) this.enter(inner[i]!);
    inner.length = 0;
  }

  /**
   * Decodes [start, end) of area `ai` instruction by instruction; stops at the first byte that is not an
   * instruction. Reads the area's view up to `end` (decode never reads past the bound it is given).
   */
  linear(ai: number, start: number, end: number): void {
    if (end <= start) return;
    const { inner, ins } = this;
    const base = this.areas[ai]!.start;
    const buf = this.bufs[ai]!;
    const n = end - base;
    let p = start - base;
    while (p < n) {
      if (!decode(buf, p, n, ins)) break;
      if (ins.ripOff >= 0) this.note(buf, base, p, ins);
      if (ins.relOff >= 0) {
        const rel = relDisplacement(buf, p, ins);
        const target = base + p + ins.length + rel;
        if (target >= start && target < end) inner.push(target);
        else this.enter(target);
      }
      p += ins.length;
    }
    this.settle(start, base + p);
  }

  /**
   * What `linear` does for [start, end) of area `ai`, from a log of an earlier decoding of exactly that
   * range (decode-log.ts): the same operands noted and branches followed, in the same order, the fields
   * read from the bytes. False when the log does not hold that range: then it must be decoded.
   */
  replay(log: DecodeLog, ai: number, start: number, end: number): boolean {
    const r = log.replay(start, end);
    if (!r) return false;
    const { lo, hi, marks, inner, rs, re, refs } = this;
    const base = this.areas[ai]!.start;
    const buf = this.bufs[ai]!;
    const stop = start + r.stop;
    const { data, to } = r;
    for (let i = r.from; i < to; i += 2) {
      const p = start - base + data[i]!;
      const v = data[i + 1]!;
      // Unpacked inline (decode-log.ts's lengthOf, relOffOf, ripOffOf, relSizeOf): the first map runs
      // JIT-cold, before V8 would inline calls to them.
      const length = v & 0xf;
      const relOff = ((v >> 4) & 0xf) - 1;
      const ripOff = ((v >> 8) & 0xf) - 1;
      if (ripOff >= 0) {
        const site = base + p + ripOff;
        const next = base + p + length;
        const target = next + buf.readInt32LE(p + ripOff);
        if (target >= lo && target < hi) marks[target - lo]! |= Mark.Addressed;
        if (target >= rs && target < re) refs.set(site, { site, end: next, offset: target - rs });
      }
      if (relOff >= 0) {
        const rel = ((v >> 12) & 0x7) === 1 ? buf.readInt8(p + relOff) : buf.readInt32LE(p + relOff);
        const target = base + p + length + rel;
        // Known to land in the decoded part (nearly every jump of a function): nothing to do (settle).
        if (target >= start && target < stop) continue;
        if (target >= start && target < end) inner.push(target);
        else this.enter(target);
      }
    }
    this.settle(start, stop);
    return true;
  }

  /** Decodes from `entry` (in an area) along its control flow until it leaves or meets decoded code. */
  flow(ai: number, entry: number): void {
    const { lo, state, ins } = this;
    const a = this.areas[ai]!;
    const buf = this.bufs[ai]!;
    const from = entry - a.start;
    let p = from;
    while (p < buf.length && state[a.start + p - lo] !== Byte.Code) {
      if (!decode(buf, p, buf.length, ins)) break;
      if (ins.ripOff >= 0) this.note(buf, a.start, p, ins);
      if (ins.relOff >= 0) this.branchTarget(buf, a.start, p, ins);
      p += ins.length;
      if (endsStraightLine(ins.flow)) break;
    }
    state.fill(Byte.Code, a.start + from - lo, a.start + p - lo);
  }

  /** Unknown bytes [k, j) of one area (no label inside): scanned clean, a table, or uncovered. */
  classify(buf: Buffer, areaStart: number, k: number, j: number): void {
    const { lo, state } = this;
    const hits = reachingWindows(buf, areaStart, k, j, this.rs, this.re);
    if (hits.length === 0) {
      state.fill(Byte.Scanned, k - lo, j - lo);
      this.counts[Byte.Scanned]! += j - k;
      this.accounted.push({
        start: k,
        end: j,
        reason:
          'not reached as code; no 4-byte window in it, read as a RIP-relative displacement, points into the writable region',
      });
    } else if (addressedOnly(this.marks, k - lo, j - lo)) {
      // Hand-written assembly keeps constant tables in .text (OpenSSL's Camellia S-boxes, the P-256
      // precomputed table): operands of decoded code address them, nothing branches or points into them.
      state.fill(Byte.Table, k - lo, j - lo);
      this.counts[Byte.Table]! += j - k;
      this.accounted.push({
        start: k,
        end: j,
        reason:
          'a table inside the code: decoded code addresses it as data (RIP-relative operands), and no branch, function start or relocated pointer enters it',
      });
    } else {
      this.counts[Byte.Unknown]! += j - k;
      this.uncovered.push({
        start: k,
        end: j,
        reason: `not reached as code, and ${hits.length === 1 ? 'the window' : `${hits.length} windows`} at ${hits
          .slice(0, 4)
          .map((h) => `0x${h.toString(16)}`)
          .join(
            ', ',
          )}${hits.length > 4 ? ', ...' : ''} would point into the writable region if ${hits.length === 1 ? 'it were' : 'they were'} the displacement of a RIP-relative operand`,
      });
    }
  }
}

export function dataRefMap(build: Build): DataRefs | undefined {
  const w = build.writable;
  if (!w) return undefined;
  const rs = Number(w.start);
  const re = Number(w.end);
  const areas = executableAreas(build);
  const lo = areas.length ? areas[0]!.start : 0;
  const hi = areas.length ? Math.max(...areas.map((a) => a.end)) : 0;
  const scan = new Scan(build, areas, lo, hi, rs, re);
  const { state, marks, labels, refs, roots, uncovered, accounted, counts } = scan;

  // 1. Functions (symbols and unwind tables) and the stub sections, each decoded from its start.
  for (let i = 0; i < areas.length; i++) if (areas[i]!.stubs) scan.linear(i, areas[i]!.start, areas[i]!.end);
  const functions = build.functions();
  // What the code comparison decoded of the same ranges is replayed, not decoded again (decode-log.ts).
  const log = decodeLogOf(build);
  for (const f of functions) {
    const i = scan.areaOf(f.start);
    if (i < 0) continue;
    const end = Math.min(f.end, areas[i]!.end);
    if (!log || !scan.replay(log, i, f.start, end)) scan.linear(i, f.start, end);
  }

  // 2. Code no symbol or unwind entry describes, reached by a branch, or by a pointer the loader fills in
  //    (.init_array, DT_INIT/DT_FINI, function tables): followed by control flow from its entry.
  const dyn = build.obj.dynamic;
  for (const v of [dyn?.init, dyn?.fini]) if (v !== undefined) roots.push(Number(v));
  for (const f of functions) if (f.start >= lo && f.start < hi) marks[f.start - lo]! |= Mark.Entered;
  for (const syms of [build.obj.symtab, build.obj.dynamicSymbols]) {
    for (const sym of syms) {
      const v = Number(sym.value);
      if (sym.defined && sym.name !== '' && v >= lo && v < hi) labels[v - lo] = 1;
    }
  }
  const words: WordRef[] = [];
  let sharedWords = 0;
  for (const r of build.obj.relocations) {
    const value = relocatedValue(build, r);
    if (value === undefined) continue;
    if (scan.areaOf(value) >= 0) {
      roots.push(value);
      marks[value - lo]! |= Mark.Entered;
    }
    if (value < rs || value >= re) continue;
    const site = Number(r.offset);
    if (site >= rs && site < re) sharedWords++;
    else words.push({ site, offset: value - rs, type: r.type });
  }
  while (roots.length > 0) {
    const root = roots.pop()!;
    const i = scan.areaOf(root);
    if (i < 0 || state[root - lo] === Byte.Code) continue;
    scan.flow(i, root);
  }

  // 3. What is left between them: padding, bytes that cannot reach the region, or uncovered.
  //    Nearly every byte is decoded code, and what is not comes in runs (the constant tables of
  //    assembly are a hundred kilobytes): runs and labels are found natively (indexOf), not byte by
  //    byte in JavaScript. Until this pass a byte is only Unknown or Code, so a run of unknown
  //    bytes ends at the next Code byte.
  for (let ai = 0; ai < areas.length; ai++) {
    const a = areas[ai]!;
    const buf = scan.bufs[ai]!;
    const inThisArea = state.subarray(a.start - lo, a.end - lo);
    let i = a.start;
    while (i < a.end) {
      const next = inThisArea.indexOf(Byte.Unknown, i - a.start);
      if (next < 0) break;
      i = a.start + next;
      const stop = inThisArea.indexOf(Byte.Code, next);
      const j = stop < 0 ? a.end : a.start + stop;
      // Alignment padding first (nop runs end where a table or a function begins).
      const k = a.start + paddingPrefix(buf, i - a.start, j - a.start);
      state.fill(Byte.Padding, i - lo, k - lo);
      counts[Byte.Padding]! += k - i;
      for (let p = k; p < j;) {
        const label = p + 1 < j ? labels.subarray(p + 1 - lo, j - lo).indexOf(1) : -1;
        const q = label < 0 ? j : p + 1 + label;
        scan.classify(buf, a.start, p, q);
        p = q;
      }
      i = j;
    }
  }

  // Two decodings that disagree (a function start inside another's instruction) would rewrite bytes
  // that are not a displacement: neither is kept, and the bytes are reported.
  const code = [...refs.values()].sort((x, y) => x.site - y.site);
  const clash = new Set<CodeRef>();
  for (let i = 1; i < code.length; i++) {
    if (code[i]!.site < code[i - 1]!.site + 4) clash.add(code[i]!).add(code[i - 1]!);
  }
  for (const r of clash)
    uncovered.push({
      start: r.site,
      end: r.site + 4,
      reason:
        'decoded as the displacement of two different instructions (overlapping function bounds): left as it is',
    });
  const executable = areas.reduce((n, a) => n + a.end - a.start, 0);
  // Counted as pass 3 filled them, unless areas overlap (then a byte is counted once per area holding it).
  const overlap = areas.some((a, i) => i > 0 && a.start < areas[i - 1]!.end);
  const states = overlap ? countStates(state, areas, lo) : counts;
  if (!overlap)
    counts[Byte.Code] =
      executable -
      counts[Byte.Unknown]! -
      counts[Byte.Padding]! -
      counts[Byte.Scanned]! -
      counts[Byte.Table]!;
  return {
    region: { start: rs, end: re },
    code: code.filter((r) => !clash.has(r)),
    words: words.sort((x, y) => x.site - y.site),
    sharedWords,
    coverage: {
      executable,
      decoded: states[Byte.Code]!,
      padding: states[Byte.Padding]!,
      scanned: states[Byte.Scanned]!,
      tables: states[Byte.Table]!,
      uncovered: uncovered.sort((x, y) => x.start - y.start),
      accounted,
    },
  };
}

/** The value a relocation stores, when it is an address inside this build (undefined otherwise). */
/**
 * How many bytes of the areas are in each state. Decoded code is what is
 * left: the other states are short runs (padding, tables), found with
 * indexOf instead of a JavaScript loop over every byte of the code.
 */
function countStates(state: Uint8Array, areas: readonly Area[], lo: number): number[] {
  const counts = [0, 0, 0, 0, 0];
  for (const a of areas) {
    const bytes = state.subarray(a.start - lo, a.end - lo);
    let other = 0;
    for (const v of [Byte.Unknown, Byte.Padding, Byte.Scanned, Byte.Table]) {
      for (let i = bytes.indexOf(v); i >= 0; i = bytes.indexOf(v, i)) {
        let j = i;
        while (j < bytes.length && bytes[j] === v) j++;
        counts[v]! += j - i;
        other += j - i;
        i = j;
      }
    }
    counts[Byte.Code]! += bytes.length - other;
  }
  return counts;
}

function relocatedValue(
  build: Build,
  r: {
    type: number;
    symIndex: number;
    symbol?: { defined: boolean; value: bigint } | undefined;
    addend: bigint;
    offset: bigint;
    table?: string;
  },
): number | undefined {
  switch (r.type) {
    case RelocType.RELATIVE:
      return Number(effectiveAddend(build, r as Parameters<typeof effectiveAddend>[1]));
    case RelocType.GLOB_DAT:
    case RelocType.JUMP_SLOT:
    case RelocType.R64: {
      const s = r.symIndex ? r.symbol : undefined;
      if (!s) return r.type === RelocType.R64 ? Number(r.addend) : undefined;
      if (!s.defined) return undefined;
      return Number(s.value + (r.type === RelocType.R64 ? r.addend : 0n));
    }
    default:
      return undefined;
  }
}

const padIns = newInsn();

/**
 * Where the leading nops (any length), int3 and zeros of buf[from, to) end: what assemblers and linkers
 * put between functions. Runs once per gap between functions (ten thousand in libcrypto): no view and
 * no instruction record of its own per call.
 */
export function paddingPrefix(buf: Uint8Array, from = 0, to = buf.length): number {
  let p = from;
  while (p < to) {
    const b = buf[p]!;
    if (b === 0xcc || b === 0x00 || b === 0x90) {
      p++;
      continue;
    }
    if (!decode(buf, p, to, padIns) || !isNop(buf, p)) return p;
    p += padIns.length;
  }
  return p;
}

/**
 * Decoded code addresses [from, to) as data and nothing enters it. A byte of `marks` is 0 or a
 * combination of the two bits: each value is searched for natively over the range (tables are long).
 */
function addressedOnly(marks: Uint8Array, from: number, to: number): boolean {
  const range = marks.subarray(from, to);
  if (range.indexOf(Mark.Entered) >= 0 || range.indexOf(Mark.Both) >= 0) return false;
  return range.indexOf(Mark.Addressed) >= 0;
}

/** 0x90 or 0F 1F /0 after operand-size and segment prefixes (the multi-byte nops gas emits). */
function isNop(buf: Uint8Array, p: number): boolean {
  let q = p;
  while (buf[q] === 0x66 || buf[q] === 0x2e || buf[q] === 0x3e) q++;
  if (buf[q] === 0x90) return true;
  return buf[q] === 0x0f && buf[q + 1] === 0x1f && ((buf[q + 2] ?? 0xff) & 0x38) === 0;
}

/**
 * Positions (vaddrs) in [start, end) where 4 bytes, read as the disp32 of an
 * instruction ending right after them or after a trailing immediate, point
 * into [rs, re). None means no RIP-relative operand in these bytes, whatever
 * they are, can refer to the region. Windows reaching into the neighbouring
 * bytes are included: an instruction may straddle the boundary.
 */
export function reachingWindows(
  area: Buffer,
  areaStart: number,
  start: number,
  end: number,
  rs: number,
  re: number,
): number[] {
  const out: number[] = [];
  const from = Math.max(areaStart, start - 3);
  const to = Math.min(areaStart + area.length - 4, end - 1);
  // Runs over every unknown byte (the constant tables of hand-written assembly): an index loop, no
  // iterator. A window hits when v + 4 + t + disp lies in [rs, re) for some trailing immediate size t:
  // the union of [rs - t, re - t) over t, which is [rs - 4, re) whenever the region spans 2 bytes or
  // more (every real one), else checked size by size.
  const wide = re - rs >= 2;
  for (let v = from; v <= to; v++) {
    const i = v - areaStart;
    const disp = area[i]! | (area[i + 1]! << 8) | (area[i + 2]! << 16) | (area[i + 3]! << 24);
    const next = v + 4 + disp;
    if (wide ? next >= rs - 4 && next < re : TRAILING.some((t) => next + t >= rs && next + t < re))
      out.push(v);
  }
  return out;
}
