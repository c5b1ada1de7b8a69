/**
 * Address-independent comparison of machine code. Two functions are the same
 * code when they decode to the same instructions, byte for byte, except for
 * the PC-relative fields (branch displacements, RIP-relative disp32), which
 * are compared by what they point at instead:
 *
 *  - a target inside the function: by its offset from the function start;
 *  - anything else: by its name (targets.ts): an import, a named function or
 *    object, unnamed writable data by its offset into the writable region;
 *  - unnamed read-only data (string literals, constant pools, switch tables):
 *    by content (targets.ts, roIdentity);
 *  - unnamed code (stripped builds): masked by the digest; handed to
 *    `onCode` by the pairwise comparison, which decides.
 *
 * Bytes that do not decode as instructions are compared raw.
 *
 * `fingerprint` digests one function this way (comparable across builds);
 * `compareCode` walks two functions in step and can follow callees.
 */
import { decode, newInsn, type Insn } from '../../elf/x86/decode.js';
import type { Build } from '../model.js';
import { roIdentity, targetsOf, type Targets } from './targets.js';
import { decodeLogOf } from './decode-log.js';

export interface CodeRef {
  build: Build;
  start: number;
  end: number;
}

export interface Difference {
  /** Offset from the function start where the two stop matching. */
  offset: number;
  reason: string;
}

export interface CompareHooks {
  /** Pairs of unnamed code targets referenced at the same place; return false if they differ. */
  onCode?(a: number, b: number): boolean;
  /** Pairs of named code targets (calls, or addresses taken, of other functions); return false if they differ. */
  onCall?(a: number, b: number, name: string): boolean;
  /** Imports referenced at the same place (a PLT call may land in the library itself); return false if they differ. */
  onImport?(name: string): boolean;
}

const insA = newInsn();
const insB = newInsn();

const bytesOf = (f: CodeRef) => f.build.bytesAt(f.start, f.end - f.start);

function rel(buf: Buffer, at: number, size: number): number {
  return size === 1 ? buf.readInt8(at) : buf.readInt32LE(at);
}

/** The name of a field's target as the digest sees it (unnamed read-only data by content). */
function targetName(f: CodeRef, names: Targets, target: number, lea: boolean): string {
  if (target >= f.start && target < f.end) return `l:${target - f.start}`;
  const n = names.nameOf(target);
  return n === 'r' ? roIdentity(f.build, target, f.start, f.end, lea) : n;
}

function maskedEqual(ba: Buffer, bb: Buffer, p: number, len: number, ins: Insn): boolean {
  for (let i = 0; i < len; i++) {
    if (ba[p + i] === bb[p + i]) continue;
    if (ins.relOff >= 0 && i >= ins.relOff && i < ins.relOff + ins.relSize) continue;
    if (ins.ripOff >= 0 && i >= ins.ripOff && i < ins.ripOff + 4) continue;
    return false;
  }
  return true;
}

export function compareCode(a: CodeRef, b: CodeRef, hooks: CompareHooks = {}): Difference | undefined {
  const ba = bytesOf(a);
  const bb = bytesOf(b);
  if (ba.length !== bb.length)
    return { offset: Math.min(ba.length, bb.length), reason: `size ${ba.length} -> ${bb.length}` };
  const na = targetsOf(a.build);
  const nb = targetsOf(b.build);
  const field = (p: number, len: number, off: number, size: number): string | undefined => {
    const ta = a.start + p + len + rel(ba, p + off, size);
    const tb = b.start + p + len + rel(bb, p + off, size);
    const x = targetName(a, na, ta, insA.lea);
    const y = targetName(b, nb, tb, insA.lea);
    if (x === 'c' && y === 'c')
      return !hooks.onCode || hooks.onCode(ta, tb) ? undefined : 'called code differs';
    if (x !== y) return `reference ${describe(x)} -> ${describe(y)}`;
    if (hooks.onImport && x.startsWith('i:') && !hooks.onImport(x.slice(2)))
      return `import ${x.slice(2)} differs`;
    // Calls, tail calls and function addresses taken (pthread_once, atexit...) of named code.
    if (hooks.onCall && x.startsWith('s:') && a.build.kindAt(ta) === 'code') {
      const callee = x.slice(2).replace(/\+0$/, '');
      if (!hooks.onCall(ta, tb, callee)) return `callee ${callee} differs`;
    }
    return undefined;
  };
  let p = 0;
  while (p < ba.length) {
    const okA = decode(ba, p, ba.length, insA);
    const okB = decode(bb, p, bb.length, insB);
    if (!okA || !okB || insA.length !== insB.length) {
      // Not both decodable in step (data in code, or different instructions): compare the rest raw.
      return ba.subarray(p).equals(bb.subarray(p)) ? undefined : { offset: p, reason: 'instructions differ' };
    }
    const len = insA.length;
    if (insA.relOff !== insB.relOff || insA.ripOff !== insB.ripOff || !maskedEqual(ba, bb, p, len, insA)) {
      return { offset: p, reason: 'instructions differ' };
    }
    const d =
      (insA.relOff >= 0 ? field(p, len, insA.relOff, insA.relSize) : undefined) ??
      (insA.ripOff >= 0 ? field(p, len, insA.ripOff, 4) : undefined);
    if (d) return { offset: p, reason: d };
    p += len;
  }
  return undefined;
}

function describe(name: string): string {
  if (name === 'c') return 'unnamed code';
  if (name.startsWith('l:')) return `+0x${Number(name.slice(2)).toString(16)}`;
  if (name.startsWith('w:')) return `writable region+0x${name.slice(2)}`;
  if (name.startsWith('u:')) return `0x${name.slice(2)}`;
  if (name.startsWith('s:')) return JSON.stringify(name.slice(2));
  if (name.startsWith('j:')) return 'a switch table';
  if (name.startsWith('b:')) return 'a constant';
  return name.slice(2);
}

const insF = newInsn();

/** Intra-function targets as offsets, others by the hash of their name. */
function fieldHash(
  f: CodeRef,
  names: Targets,
  buf: Buffer,
  p: number,
  len: number,
  at: number,
  size: number,
): number {
  const target = f.start + p + len + rel(buf, p + at, size);
  return target >= f.start && target < f.end
    ? 0x40000000 + target - f.start
    : names.hashOf(target, f.start, f.end, insF.lea);
}

/**
 * A digest of a function that does not depend on where it or its targets
 * are (two 32-bit FNV-style lanes over the masked bytes and target names).
 * Unnamed code targets are masked: this is the code report's notion of
 * "unchanged", not the init check's. Written as one flat loop: it runs over
 * every instruction of both builds.
 */
export function fingerprint(f: CodeRef): string {
  const buf = bytesOf(f);
  const names = targetsOf(f.build);
  const n = buf.length;
  let h1 = 0x811c9dc5;
  let h2 = 0x2545f491;
  // When a bundle is being made, what this walk decodes is kept for the data-reference map (decode-log.ts).
  const log = decodeLogOf(f.build);
  log?.begin(f.start, f.end);
  let p = 0;
  while (p < n) {
    if (!decode(buf, p, n, insF)) {
      for (let i = p; i < n; i++) {
        h1 = Math.imul(h1 ^ buf[i]!, 0x01000193);
        h2 = Math.imul(h2 ^ buf[i]!, 0x5bd1e995);
      }
      break;
    }
    const len = insF.length;
    const ro = insF.relOff;
    const ip = insF.ripOff;
    // The masked bytes as bits over the instruction's (at most 15) bytes: one test per byte.
    const masked = (ro >= 0 ? ((1 << insF.relSize) - 1) << ro : 0) | (ip >= 0 ? 0xf << ip : 0);
    if (log !== undefined && masked !== 0) log.insn(p, len, ro, insF.relSize, ip);
    for (let i = 0; i < len; i++) {
      const b = (masked >> i) & 1 ? 0x100 : buf[p + i]!;
      h1 = Math.imul(h1 ^ b, 0x01000193);
      h2 = Math.imul(h2 ^ b, 0x5bd1e995);
    }
    if (ro >= 0) {
      const v = fieldHash(f, names, buf, p, len, ro, insF.relSize);
      h1 = Math.imul(h1 ^ v, 0x01000193);
      h2 = Math.imul(h2 ^ v, 0x5bd1e995) ^ (h2 >>> 15);
    }
    if (ip >= 0) {
      const v = fieldHash(f, names, buf, p, len, ip, 4);
      h1 = Math.imul(h1 ^ v, 0x01000193);
      h2 = Math.imul(h2 ^ v, 0x5bd1e995) ^ (h2 >>> 15);
    }
    p += len;
  }
  log?.finish(p);
  return `${n}:${(h1 >>> 0).toString(36)}:${(h2 >>> 0).toString(36)}`;
}

/**
 * Whether two functions have the same digest (fingerprint), decided by one
 * walk of both in step instead of a digest of each: the answer of comparing
 * their fingerprints, without the chance of a collision. Functions matched
 * by name are nearly always one function moved by a constant; walking them
 * together decodes one of the two, compares bytes instead of hashing them,
 * and stops at the first difference.
 *
 * The digest hashes, per instruction, its bytes with the PC-relative fields
 * masked, then the value (fieldHash) of each field. Two functions give the
 * same sequence exactly when, instruction by instruction, the bytes outside
 * the first one's fields are equal and the fields' values are equal: the
 * decoder reads prefixes, opcode, ModRM and SIB, never a displacement's or
 * an immediate's value, so bytes equal outside the fields decode to the same
 * length and the same fields in both (test/unit/packer/code/same-digest
 * checks this on every instruction of a real build). Where the first stops
 * decoding, the digest hashes the rest raw; so does this comparison.
 */
export function sameDigest(a: CodeRef, b: CodeRef): boolean {
  const ba = bytesOf(a);
  const bb = bytesOf(b);
  const n = ba.length;
  if (n !== bb.length) return false;
  const na = targetsOf(a.build);
  const nb = targetsOf(b.build);
  // When a bundle is being made, a walk that finds the two the same is kept for both builds' data-reference
  // maps (decode-log.ts): the second function decodes to the same instructions as the first.
  const la = decodeLogOf(a.build);
  const lb = decodeLogOf(b.build);
  la?.begin(a.start, a.end);
  lb?.begin(b.start, b.end);
  let stop = n;
  let p = 0;
  while (p < n) {
    const ok = decode(ba, p, n, insF);
    stop = ok || stop < n ? stop : p;
    // Bytes that do not decode are the digest's raw rest: one run of bytes compared unmasked, in the same loop as
    // instructions (a branch of its own, reached only by data in code, made V8 throw this function's compiled
    // code away and compile it again).
    const rest = n - p;
    const len = ok ? insF.length : rest;
    const ro = ok ? insF.relOff : -1;
    const ip = ok ? insF.ripOff : -1;
    const masked = (ro >= 0 ? ((1 << insF.relSize) - 1) << ro : 0) | (ip >= 0 ? 0xf << ip : 0);
    for (let i = 0; i < len; i++)
      if (ba[p + i] !== bb[p + i] && (i > 15 || ((masked >> i) & 1) === 0)) return false;
    if (
      ro >= 0 &&
      fieldHash(a, na, ba, p, len, ro, insF.relSize) !== fieldHash(b, nb, bb, p, len, ro, insF.relSize)
    )
      return false;
    if (ip >= 0 && fieldHash(a, na, ba, p, len, ip, 4) !== fieldHash(b, nb, bb, p, len, ip, 4)) return false;
    if (masked !== 0) {
      la?.insn(p, len, ro, insF.relSize, ip);
      lb?.insn(p, len, ro, insF.relSize, ip);
    }
    p += len;
  }
  la?.finish(stop);
  lb?.finish(stop);
  return true;
}

/**
 * The common case of a security fix: a function with the same bytes at the
 * same address in both builds. It is the same code exactly when every
 * target it references has the same name in both (one decode, no digest).
 * Returns undefined when the function moved or its bytes differ.
 */
export function sameInPlace(a: CodeRef, b: CodeRef): boolean | undefined {
  if (a.start !== b.start || a.end !== b.end) return undefined;
  const buf = bytesOf(a);
  if (!buf.equals(bytesOf(b))) return undefined;
  const na = targetsOf(a.build);
  const nb = targetsOf(b.build);
  const n = buf.length;
  let p = 0;
  while (p < n) {
    if (!decode(buf, p, n, insF)) return true; // the rest is identical raw bytes
    const len = insF.length;
    if (
      insF.relOff >= 0 &&
      fieldHash(a, na, buf, p, len, insF.relOff, insF.relSize) !==
        fieldHash(b, nb, buf, p, len, insF.relOff, insF.relSize)
    )
      return false;
    if (
      insF.ripOff >= 0 &&
      fieldHash(a, na, buf, p, len, insF.ripOff, 4) !== fieldHash(b, nb, buf, p, len, insF.ripOff, 4)
    )
      return false;
    p += len;
  }
  return true;
}
