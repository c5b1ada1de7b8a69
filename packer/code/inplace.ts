/**
 * Comparing in place: two builds laid out alike (the same segments at the
 * same addresses, the same RELRO range) need no decoding for most of their
 * code. A function with the same bytes at the same address in both builds
 * has every PC-relative field pointing at the same address in both; it is
 * the same code (compare.ts) exactly when each of those addresses is named
 * the same in both builds (targets.ts). So instead of naming every target
 * of every instruction, this module finds the few addresses whose name *can*
 * differ, from what differs between the builds, and a function that cannot
 * reach any of them is unchanged without being decoded.
 *
 * A target's name (targets.ts, resolve/roIdentity) is read from:
 *  - the segment kind of its address: the same by the layout condition;
 *  - the symbol covering it: differs only inside the symbols that differ;
 *  - code: the PLT-stub bytes at it (11) and the relocation of the GOT slot
 *    the stub jumps through;
 *  - read-only and RELRO data: the relocation at it, the bytes from it (at
 *    most 256: strings, switch tables) and the relocations in its first 32
 *    bytes (constants, arrays); writable data: nothing but the symbol (and
 *    the region's start, the same by the layout condition).
 * A relocation's name is read from its type, symbol and addend, and for a
 * RELATIVE one from the (shallow) name of the address it holds, so whether
 * relocations agree is decided first, recursively.
 *
 * What this does not rely on: identical bytes at a *shifted* address. When
 * a function moves, its references keep their displacements only if their
 * targets moved by as much, which says nothing about what the targets are;
 * such pairs, and anything this module cannot clear, take the decoding path.
 */
import type { Build, SegmentKind } from '../model.js';
import { RelocType, symbolIndex, type ElfSymbol, type Relocation } from '../../elf/index.js';
import { decode, newInsn, relDisplacement } from '../../elf/x86/decode.js';
import { Ranges } from './ranges.js';
import { PLT_STUB_BYTES, RO_MAX_READ, RO_WINDOW } from './targets.js';

export interface InPlace {
  /**
   * The function [start, end) has the same bytes in both builds and no
   * PC-relative field that could reach an address named differently in the
   * two: it is the same code (a false answer decides nothing).
   */
  codeUnchanged(start: number, end: number): boolean;
  /**
   * [start, end) has the same bytes in both builds and each relocation in it
   * holds the same name: its normalised contents are equal (a false answer
   * decides nothing).
   */
  dataUnchanged(start: number, end: number): boolean;
}

/** The in-place view of two builds (symmetric), or undefined when they are not laid out alike. */
export function inPlace(a: Build, b: Build): InPlace | undefined {
  const [x, y] = a.sha256 < b.sha256 ? [a, b] : [b, a];
  let inner = memo.get(x);
  if (!inner) memo.set(x, (inner = new WeakMap()));
  let v = inner.get(y);
  if (v === undefined) inner.set(y, (v = sameLayout(x, y) ? createInPlace(x, y) : null));
  return v ?? undefined;
}

const memo = new WeakMap<Build, WeakMap<Build, InPlace | null>>();

interface Segment {
  start: number;
  fileEnd: number;
  end: number;
  offsetA: number;
  offsetB: number;
  kind: SegmentKind;
}

function sameLayout(a: Build, b: Build): boolean {
  const sa = a.obj.loadSegments;
  const sb = b.obj.loadSegments;
  if (sa.length !== sb.length) return false;
  for (let i = 0; i < sa.length; i++) {
    const p = sa[i]!;
    const q = sb[i]!;
    if (p.vaddr !== q.vaddr || p.memsz !== q.memsz || p.filesz !== q.filesz || p.flags !== q.flags)
      return false;
  }
  const ra = a.obj.relro;
  const rb = b.obj.relro;
  return (
    ra === rb || (ra !== undefined && rb !== undefined && ra.vaddr === rb.vaddr && ra.memsz === rb.memsz)
  );
}

function createInPlace(a: Build, b: Build): InPlace {
  const segments: Segment[] = a.obj.loadSegments.map((p, i) => ({
    start: Number(p.vaddr),
    fileEnd: Number(p.vaddr + p.filesz),
    end: Number(p.vaddr + p.memsz),
    offsetA: Number(p.offset),
    offsetB: Number(b.obj.loadSegments[i]!.offset),
    kind: a.kindAt(Number(p.vaddr)),
  }));
  const bytes = differingBytes(a, b, segments);
  const symbols = differingSymbols(a, b);
  const relocs = differingRelocations(a, b, segments, bytes, symbols);
  const targets = changedTargets(segments, bytes, symbols, relocs);
  const reaching = fieldsReaching(a, segments, targets);
  const relocRanges = new Ranges(relocs.offsets.map((o) => [o, o + 1] as const));
  return {
    codeUnchanged: (start, end) =>
      !bytes.intersects(start, end) &&
      (!reaching.intersects(start, end) ||
        !decodedFieldReaches(a.bytesAt(start, end - start), start, targets)),
    dataUnchanged: (start, end) => !bytes.intersects(start, end) && !relocRanges.intersects(start, end),
  };
}

/** Where the file images differ, by vaddr (past p_filesz both read as zeros). */
function differingBytes(a: Build, b: Build, segments: Segment[]): Ranges {
  const spans: Array<[number, number]> = [];
  const BLOCK = 4096;
  for (const s of segments) {
    const size = s.fileEnd - s.start;
    for (let at = 0; at < size; at += BLOCK) {
      const n = Math.min(BLOCK, size - at);
      // One memcmp per block; only blocks that differ are walked byte by byte.
      if (
        a.bytes.compare(b.bytes, s.offsetB + at, s.offsetB + at + n, s.offsetA + at, s.offsetA + at + n) === 0
      )
        continue;
      for (let i = 0; i < n; i++) {
        if (a.bytes[s.offsetA + at + i] === b.bytes[s.offsetB + at + i]) continue;
        let j = i + 1;
        while (j < n && a.bytes[s.offsetA + at + j] !== b.bytes[s.offsetB + at + j]) j++;
        spans.push([s.start + at + i, s.start + at + j]);
        i = j;
      }
    }
  }
  return new Ranges(spans);
}

/**
 * Where the symbol naming an address may differ. The candidate lists
 * (elf's addressSymbols, sorted by address) are walked in step: every
 * position where they disagree in name, address, size or binding marks the
 * extent of both entries. An address outside every marked extent is covered,
 * in each build, only by entries at positions where both lists agree, so the
 * same entry wins in both and the name is the same.
 */
function differingSymbols(a: Build, b: Build): Ranges {
  // Symbol tables that agree entry by entry give the same candidate lists, without building them.
  const alike = (x: ElfSymbol, y: ElfSymbol) =>
    x.value === y.value &&
    x.size === y.size &&
    x.bind === y.bind &&
    x.type === y.type &&
    x.shndx === y.shndx &&
    x.name === y.name &&
    a.nameOf(x) === b.nameOf(y);
  const sameTable = (x: ElfSymbol[], y: ElfSymbol[]) =>
    x.length === y.length && x.every((s, i) => alike(s, y[i]!));
  if (sameTable(a.obj.symtab, b.obj.symtab) && sameTable(a.obj.dynamicSymbols, b.obj.dynamicSymbols))
    return new Ranges([]);
  const la = symbolIndex(a.obj).symbols;
  const lb = symbolIndex(b.obj).symbols;
  const spans: Array<[number, number]> = [];
  const extent = (s: ElfSymbol): [number, number] => [
    Number(s.value),
    Number(s.value + (s.size === 0n ? 1n : s.size)),
  ];
  for (let i = 0; i < Math.max(la.length, lb.length); i++) {
    const x = la[i];
    const y = lb[i];
    if (
      x &&
      y &&
      x.value === y.value &&
      x.size === y.size &&
      x.bind === y.bind &&
      a.nameOf(x) === b.nameOf(y)
    )
      continue;
    if (x) spans.push(extent(x));
    if (y) spans.push(extent(y));
  }
  return new Ranges(spans);
}

/** Same type, table, addend and symbol (name, version, defined): the same name unless RELATIVE. */
function sameRaw(x: Relocation, y: Relocation): boolean {
  if (
    x.type !== y.type ||
    x.table !== y.table ||
    x.addend !== y.addend ||
    (x.symIndex !== 0) !== (y.symIndex !== 0)
  )
    return false;
  const s = x.symIndex !== 0 ? x.symbol : undefined;
  const t = y.symIndex !== 0 ? y.symbol : undefined;
  return (
    s === t ||
    (s !== undefined &&
      t !== undefined &&
      s.name === t.name &&
      s.version === t.version &&
      s.defined === t.defined)
  );
}

/** The address a RELATIVE or IRELATIVE relocation holds (RELR keeps it in the word itself). */
function heldAddress(build: Build, r: Relocation): number {
  return r.table === 'relr'
    ? Number(build.bytesAt(Number(r.offset), 8).readBigUInt64LE(0))
    : Number(r.addend);
}

/** `jmp *disp32(%rip)` in code: where a PLT stub may start (endbr64 and bnd may precede it), and its GOT slot. */
interface Stub {
  start: number;
  slot: number;
}

function stubsOf(a: Build, segments: Segment[]): Stub[] {
  const out: Stub[] = [];
  for (const s of segments) {
    if (s.kind !== 'code') continue;
    const buf = a.bytesAt(s.start, s.fileEnd - s.start);
    for (let q = buf.indexOf(0x25, 1); q >= 0 && q + 5 <= buf.length; q = buf.indexOf(0x25, q + 1)) {
      if (buf[q - 1] === 0xff)
        out.push({ start: s.start + q - 1 - 5, slot: s.start + q + 5 + buf.readInt32LE(q + 1) });
    }
  }
  return out;
}

interface RelocationDelta {
  /** Offsets, sorted, where the relocation's name (targets.ts, relocName) may differ. */
  offsets: number[];
  /** PLT stubs (as [start - 5, start + 1) spans) that jump through one of them. */
  stubs: Array<[number, number]>;
}

/**
 * Where relocations may be named differently: present in one build only,
 * different raw fields, or RELATIVE to the same address whose shallow name
 * (resolve() without following data relocations) may differ: inside a
 * differing symbol, or code whose stub bytes differ or that is a PLT stub
 * through a slot that differs, which is found by rounds until none is added.
 */
function differingRelocations(
  a: Build,
  b: Build,
  segments: Segment[],
  bytes: Ranges,
  symbols: Ranges,
): RelocationDelta {
  const differ = new Set<number>();
  // RELATIVE relocations to code (offset, target), cleared unless the target turns out to be a stub through a differing slot.
  const toCode: number[] = [];
  a.relocAt.forEach((x, o) => {
    const y = b.relocAt.get(o);
    if (!y || !sameRaw(x, y)) return differ.add(o);
    if (x.symIndex !== 0 || (x.type !== RelocType.RELATIVE && x.type !== RelocType.IRELATIVE)) return;
    const t = heldAddress(a, x);
    if (t !== heldAddress(b, y) || symbols.has(t)) return differ.add(o);
    if (a.kindAt(t) !== 'code') return;
    if (bytes.intersects(t, t + PLT_STUB_BYTES)) return differ.add(o);
    toCode.push(o, t);
  });
  b.relocAt.forEach((_, o) => {
    if (!a.relocAt.has(o)) differ.add(o);
  });
  let stubs: Array<[number, number]> = [];
  if (differ.size > 0) {
    const all = stubsOf(a, segments);
    for (let size = -1; size !== differ.size;) {
      size = differ.size;
      stubs = all.filter((s) => differ.has(s.slot)).map((s) => [s.start, s.start + 6]);
      const through = new Ranges(stubs);
      for (let i = 0; i < toCode.length; i += 2) if (through.has(toCode[i + 1]!)) differ.add(toCode[i]!);
    }
  }
  return { offsets: [...differ].sort((p, q) => p - q), stubs };
}

/**
 * Every address whose name as a code target (nameOf, hashOf) may differ:
 * inside differing symbols; before differing bytes by as much as a name
 * reads at a target of that segment's kind; at and just before differing
 * relocations of read-only and RELRO data; and PLT stubs that jump through
 * a differing slot.
 */
function changedTargets(
  segments: Segment[],
  bytes: Ranges,
  symbols: Ranges,
  relocs: RelocationDelta,
): Ranges {
  const spans: Array<[number, number]> = [...symbols.spans(), ...relocs.stubs];
  const reach = (kind: SegmentKind) =>
    kind === 'code' ? PLT_STUB_BYTES : kind === 'readonly' || kind === 'relro' ? RO_MAX_READ : 0;
  const segmentOf = (v: number) => segments.find((s) => v >= s.start && v < s.end);
  for (const [start, end] of bytes.spans()) {
    const s = segmentOf(start);
    const w = s ? reach(s.kind) : 0;
    if (w > 0) spans.push([Math.max(s!.start, start - w + 1), end]);
  }
  for (const o of relocs.offsets) {
    const s = segmentOf(o);
    if (s && (s.kind === 'readonly' || s.kind === 'relro'))
      spans.push([Math.max(s.start, o - RO_WINDOW + 1), o + 1]);
  }
  return new Ranges(spans);
}

const ins = newInsn();

/**
 * Whether a PC-relative field of the function decodes to a target in
 * `targets`: the fields sameInPlace (compare.ts) names, found by the same
 * walk, which stops where bytes stop decoding (the rest is compared raw).
 * For the few functions the scan below cannot clear.
 */
function decodedFieldReaches(buf: Buffer, start: number, targets: Ranges): boolean {
  for (let p = 0; p < buf.length && decode(buf, p, buf.length, ins); p += ins.length) {
    const end = start + p + ins.length;
    if (ins.relOff >= 0 && targets.has(end + relDisplacement(buf, p, ins))) return true;
    if (ins.ripOff >= 0 && targets.has(end + buf.readInt32LE(p + ins.ripOff))) return true;
  }
  return false;
}

/**
 * The code bytes that could be a PC-relative field designating one of
 * `targets`, found without decoding, over every code segment at once: each
 * 4-byte window is read as a rel32/disp32, whose instruction ends 4 to 8
 * bytes after the field starts (nothing, imm8, imm16 or imm32 follows it); a
 * rel8 ends right after its byte, so any byte within 128 of a target counts.
 * Windows that are not fields only make the answer more cautious.
 */
function fieldsReaching(a: Build, segments: Segment[], targets: Ranges): Ranges {
  if (targets.empty) return targets;
  const spans: Array<[number, number]> = targets.spans().map(([s, e]) => [s - 128, e + 127]);
  // A coarse map of the targets (64-byte chunks) keeps the per-byte loop to two array reads. Targets
  // past the last segment are named by their address alone ('u:'), the same in both builds: not mapped.
  const SHIFT = 6;
  const limit = Math.min(targets.hull[1], Math.max(...segments.map((s) => s.end)));
  if (limit >= 2 ** 30 || segments.some((s) => s.kind === 'code' && s.end >= 2 ** 30))
    return new Ranges(segments.filter((s) => s.kind === 'code').map((s) => [s.start, s.end]));
  const hot = new Uint8Array((limit >> SHIFT) + 2);
  for (const [s, e] of targets.spans())
    if (s < limit) hot.fill(1, Math.max(0, s) >> SHIFT, ((Math.min(e, limit) - 1) >> SHIFT) + 1);
  for (const seg of segments) {
    if (seg.kind !== 'code' || seg.fileEnd - seg.start < 4) continue;
    const buf = a.bytesAt(seg.start, seg.fileEnd - seg.start);
    // v holds the window ending at buf[q] as a signed little-endian int32, shifted along a byte at a
    // time; t is the nearest address its field could designate, in 32-bit arithmetic: every code
    // address is below 2^30, so a target outside [0, 2^31) wraps to >= 2^31 and fails `< limit`.
    let v = (buf[0]! << 8) | (buf[1]! << 16) | (buf[2]! << 24);
    const first = seg.start + 4 - 3;
    for (let q = 3; q < buf.length; q++) {
      v = (v >>> 8) | (buf[q]! << 24);
      const t = ((v + first + q) | 0) >>> 0;
      if (t >= limit || (hot[t >> SHIFT]! | hot[(t + 4) >> SHIFT]!) === 0) continue;
      if (targets.intersects(t, t + 5)) spans.push([seg.start + q - 3, seg.start + q + 1]);
    }
  }
  return new Ranges(spans);
}
