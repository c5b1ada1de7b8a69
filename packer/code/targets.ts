/**
 * What a PC-relative reference in code points at, named so that the same
 * target in two builds gets the same name even though its address moved.
 * Names are short strings whose first letter is their kind:
 *
 *   i:<symbol>      an import, reached through a PLT stub or a GOT slot
 *   s:<name>+<off>  inside a named function or object of this build
 *   w:<offset>      unnamed writable data, by its offset from the start of the
 *                   build's writable region: the region may sit at another
 *                   address in the other build (moved by whole pages), the
 *                   layout rules fix everything inside it
 *   c               unnamed code (stripped builds); compared by the caller
 *   r               unnamed read-only data; see roIdentity
 *   u:<vaddr>       outside every segment
 */
import { RELOC_NAMES, RelocType, symbolIndex, type Relocation } from '../../elf/index.js';
import type { Build } from '../model.js';

export interface Targets {
  nameOf(vaddr: number): string;
  /** nameOf without following a relocation found at the target (breaks pointer-to-pointer cycles). */
  shallowNameOf(vaddr: number): string;
  relocName(r: Relocation): string;
  /** A 32-bit hash of the target's name (unnamed read-only data: of its roIdentity within [fnStart, fnEnd)). */
  hashOf(vaddr: number, fnStart: number, fnEnd: number, addressTaken: boolean): number;
}

const cache = new WeakMap<Build, Targets>();

export function targetsOf(build: Build): Targets {
  let t = cache.get(build);
  if (!t) cache.set(build, (t = new TargetNames(build)));
  return t;
}

/**
 * A class, not an object of closures per build: the digests and the
 * alignment's decoding call hashOf for every PC-relative operand of both
 * builds, and one method shared by both keeps those call sites monomorphic
 * (with a closure per build, V8 deoptimised the alignment's decoding for a
 * "wrong call target" when the second build came).
 */
class TargetNames implements Targets {
  private readonly deep = new Map<number, string>();
  private readonly shallow = new Map<number, string>();
  private readonly relocNames = new Map<Relocation, string>();
  private readonly hashes = new Map<number, number>();
  private readonly loadHashes = new Map<number, number>();

  constructor(private readonly build: Build) {}

  hashOf(vaddr: number, fnStart: number, fnEnd: number, addressTaken: boolean): number {
    const memo = addressTaken ? this.hashes : this.loadHashes;
    let h = memo.get(vaddr);
    if (h !== undefined) return h;
    const n = this.name(vaddr);
    if (n !== 'r') {
      memo.set(vaddr, (h = hashString(n)));
      return h;
    }
    const table = addressTaken ? switchTable(this.build, vaddr, fnStart, fnEnd) : undefined;
    if (table !== undefined) return hashString(table);
    memo.set(vaddr, (h = hashString(roContent(this.build, vaddr, addressTaken))));
    return h;
  }

  /** Bound: callers take it as a plain function (analyze/data.ts). */
  readonly nameOf = (vaddr: number): string => this.name(vaddr);

  private name(vaddr: number): string {
    let n = this.deep.get(vaddr);
    if (n === undefined) this.deep.set(vaddr, (n = resolve(this.build, this, vaddr, true)));
    return n;
  }

  shallowNameOf(vaddr: number): string {
    let n = this.shallow.get(vaddr);
    if (n === undefined) this.shallow.set(vaddr, (n = resolve(this.build, this, vaddr, false)));
    return n;
  }

  relocName(r: Relocation): string {
    let n = this.relocNames.get(r);
    if (n === undefined) this.relocNames.set(r, (n = nameReloc(this.build, this, r)));
    return n;
  }
}

function named(build: Build, vaddr: number): string | undefined {
  const sym = symbolIndex(build.obj).containing(vaddr);
  return sym ? `s:${build.nameOf(sym)}+${vaddr - Number(sym.value)}` : undefined;
}

function resolve(build: Build, t: Targets, vaddr: number, followRelocs: boolean): string {
  const kind = build.kindAt(vaddr);
  if (kind === 'code') {
    const slot = pltSlot(build, vaddr);
    const r = slot === undefined ? undefined : build.relocAt.get(slot);
    if (r) return 'i:' + t.relocName(r);
    return named(build, vaddr) ?? 'c';
  }
  if (kind === 'none') return 'u:' + vaddr.toString(16);
  if (kind === 'writable') return named(build, vaddr) ?? 'w:' + regionOffset(build, vaddr).toString(16);
  const r = followRelocs ? build.relocAt.get(vaddr) : undefined;
  if (r) return 'i:' + t.relocName(r);
  return named(build, vaddr) ?? 'r';
}

/** A writable address as an offset into the build's writable region (its vaddr when it lies outside, which no build of GNU ld has). */
function regionOffset(build: Build, vaddr: number): number {
  const r = build.writable;
  if (!r) return vaddr;
  const start = Number(r.start);
  return vaddr >= start && vaddr < Number(r.end) ? vaddr - start : vaddr;
}

/** Name of what a relocated word will hold: a symbol, a TLS reference, or (RELATIVE) its target's name. */
function nameReloc(build: Build, t: Targets, r: Relocation): string {
  if (r.symbol && r.symIndex !== 0) {
    const s = r.symbol;
    const tls =
      r.type === RelocType.DTPMOD64 ||
      r.type === RelocType.DTPOFF64 ||
      r.type === RelocType.TPOFF64 ||
      r.type === RelocType.TLSDESC;
    // The build's own symbols are named without version: a renamed version node does not change what they are.
    return `${s.version && !s.defined ? `${s.name}@${s.version}` : s.name}${r.addend ? `+${r.addend}` : ''}${tls ? `(${RELOC_NAMES[r.type]})` : ''}`;
  }
  if (r.type === RelocType.RELATIVE || r.type === RelocType.IRELATIVE) {
    const target =
      r.table === 'relr' ? Number(build.bytesAt(Number(r.offset), 8).readBigUInt64LE(0)) : Number(r.addend);
    return `${r.type === RelocType.IRELATIVE ? 'ifunc' : 'ptr'}(${t.shallowNameOf(target)})`;
  }
  return RELOC_NAMES[r.type] ?? String(r.type);
}

/** The bytes a PLT stub check reads at a code target. */
export const PLT_STUB_BYTES = 11;

/**
 * A PLT stub (.plt, .plt.sec, .plt.got): optional endbr64, optional bnd
 * prefix, then `jmp *slot(%rip)`. Returns the GOT slot it jumps through.
 */
function pltSlot(build: Build, vaddr: number): number | undefined {
  if (build.extentAt(vaddr) < PLT_STUB_BYTES) return undefined;
  const b = build.bytesAt(vaddr, PLT_STUB_BYTES);
  // endbr64 (f3 0f 1e fa) as one word and both offsets computed for every target: a chain of byte tests that
  // only code targets beginning with f3 reach made V8 recompile the naming the first time one came.
  const endbr = b.readUInt32LE(0) === 0xfa1e0ff3 ? 4 : 0;
  const bnd = endbr + 1;
  const p = b[endbr] === 0xf2 ? bnd : endbr;
  if (b[p] !== 0xff || b[p + 1] !== 0x25) return undefined;
  return vaddr + p + 6 + b.readInt32LE(p + 2);
}

/**
 * The bytes of [addr, addr + size) as a string, with every relocated word
 * replaced by the name of what it will hold: equal for two builds when the
 * data is the same apart from where its pointers' targets moved.
 */
export function normalizedBytes(build: Build, addr: number, size: number): string {
  // Whole sections are normalised once per build, not once per direction.
  if (size < 4096) return normalize(build, addr, size);
  let memo = sections.get(build);
  if (!memo) sections.set(build, (memo = new Map()));
  const key = `${addr}:${size}`;
  let text = memo.get(key);
  if (text === undefined) memo.set(key, (text = normalize(build, addr, size)));
  return text;
}

const sections = new WeakMap<Build, Map<string, string>>();

function normalize(build: Build, addr: number, size: number): string {
  const bytes = build.bytesAt(addr, size);
  const names = targetsOf(build);
  const parts: string[] = [];
  let raw = 0;
  for (const r of build.relocsIn(addr, addr + size)) {
    const i = Number(r.offset) - addr;
    if (i < raw || i + 8 > size) continue;
    parts.push(bytes.toString('latin1', raw, i), `\u0000[${names.relocName(r)}]`);
    raw = i + 8;
  }
  parts.push(bytes.toString('latin1', raw));
  return parts.join('');
}

/** Unnamed read-only data is compared over at most this many bytes, relocated words included... */
export const RO_WINDOW = 32;
/** ...and strings and switch tables over at most this many: no name of a target reads further. */
export const RO_MAX_READ = 256;

function window(build: Build, vaddr: number, max: number): Buffer {
  return build.bytesAt(vaddr, Math.min(max, build.extentAt(vaddr)));
}

function isText(buf: Buffer, end: number): boolean {
  for (let i = 0; i < end; i++) {
    const c = buf[i]!;
    if (c < 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) return false;
  }
  return true;
}

/**
 * What an unnamed read-only target holds, independent of where it is. Its
 * size is recorded nowhere, so the referencing instruction decides how to
 * read it. An address taken (LEA) is of a string literal (compared up to its
 * NUL; a zero first byte is the empty string), a switch table (compared as
 * the offsets into the referencing function [fnStart, fnEnd) that gcc's
 * 32-bit entries, relative to the table, lead to), or an array (32 bytes).
 * A value read (a numeric constant of .rodata.cst4/8/16/32) is compared over
 * as many bytes as its alignment, since gcc aligns such constants to their
 * size. Relocated words are compared by what they point at.
 */
export function roIdentity(
  build: Build,
  vaddr: number,
  fnStart: number,
  fnEnd: number,
  addressTaken: boolean,
): string {
  return (
    (addressTaken ? switchTable(build, vaddr, fnStart, fnEnd) : undefined) ??
    roContent(build, vaddr, addressTaken)
  );
}

/** Text read as int32 offsets lands far outside any function, so tables are told apart from strings. */
function switchTable(build: Build, vaddr: number, fnStart: number, fnEnd: number): string | undefined {
  const w = window(build, vaddr, RO_MAX_READ);
  let cases = '';
  for (let i = 0; i + 4 <= w.length; i += 4) {
    const label = vaddr + w.readInt32LE(i);
    if (label < fnStart || label >= fnEnd) break;
    cases += `${label - fnStart},`;
  }
  return cases ? 'j:' + cases : undefined;
}

function roContent(build: Build, vaddr: number, addressTaken: boolean): string {
  const w = window(build, vaddr, RO_MAX_READ);
  if (!addressTaken) {
    const align = Math.min(RO_WINDOW, vaddr & -vaddr || RO_WINDOW);
    return 'b:' + normalizedBytes(build, vaddr, Math.min(Math.max(align, 4), w.length));
  }
  let memo = contents.get(build);
  if (!memo) contents.set(build, (memo = new Map()));
  let id = memo.get(vaddr);
  if (id === undefined) {
    const nul = w.indexOf(0);
    id =
      nul >= 0 && isText(w, nul)
        ? 's:' + w.toString('latin1', 0, nul)
        : 'b:' + normalizedBytes(build, vaddr, Math.min(RO_WINDOW, w.length));
    memo.set(vaddr, id);
  }
  return id;
}

const contents = new WeakMap<Build, Map<number, string>>();

function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}
