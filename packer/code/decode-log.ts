/**
 * What one linear decoding of a function found, kept per build for a later
 * walk over the same bytes: the code comparison (compare.ts `fingerprint`,
 * and `sameDigest`, which records both functions of a pair it finds the
 * same) decodes nearly every function of both builds, and the data-reference map
 * (datarefs.ts) decodes them all again when a bundle is made. With a log
 * started for a build, the first walk records, per function, the
 * instructions that carry a PC-relative field (where they are, their length
 * and where the fields lie in them) and how far decoding got; the map
 * replays that for the same [start, end) instead of decoding it. The fields'
 * values are read from the bytes again: a log holds only what the decoder
 * found.
 *
 * No log is kept unless one is started (pack.ts does, for -o): the
 * comparison alone (--check) pays one lookup per function. Pure.
 */
import type { Build } from '../model.js';

/** One recorded instruction: its offset from the function start, its length and its fields. */
export interface LoggedInsn {
  offset: number;
  length: number;
  /** Offset of the branch displacement inside the instruction, or -1. */
  relOff: number;
  /** 1 or 4 bytes (0 when there is none). */
  relSize: number;
  /** Offset of a RIP-relative disp32 inside the instruction, or -1. */
  ripOff: number;
}

/** The fields of one instruction packed into 16 bits: 4 for the length (at most 15), 4 each for the offsets + 1, 3 for the size. */
const pack = (length: number, relOff: number, relSize: number, ripOff: number): number =>
  length | ((relOff + 1) << 4) | ((ripOff + 1) << 8) | (relSize << 12);

export class DecodeLog {
  /** Per recorded instruction: offset from the function start, packed fields. */
  private data = new Int32Array(1 << 16);
  private n = 0;
  /** Per function start: its end, its first and past-last instruction in `data`, and where decoding stopped. */
  private readonly functions = new Map<number, [end: number, from: number, to: number, stop: number]>();
  private start = -1;
  private end = -1;
  private from = 0;

  /** A linear decoding of [start, end) begins. */
  begin(start: number, end: number): void {
    this.start = start;
    this.end = end;
    this.from = this.n;
  }

  /** An instruction at `offset` from the start with a branch displacement or a RIP-relative operand. */
  insn(offset: number, length: number, relOff: number, relSize: number, ripOff: number): void {
    if (this.n + 2 > this.data.length) {
      const bigger = new Int32Array(this.data.length * 2);
      bigger.set(this.data);
      this.data = bigger;
    }
    this.data[this.n++] = offset;
    this.data[this.n++] = pack(length, relOff, relSize, ripOff);
  }

  /** Decoding stopped `stop` bytes from the start (at the end, or at the first byte that is not an instruction). */
  finish(stop: number): void {
    if (this.start < 0) return;
    this.functions.set(this.start, [this.end, this.from, this.n, stop]);
    this.start = -1;
  }

  /**
   * The recorded decoding of exactly [start, end): how far it got, and the instructions with fields in
   * order (as `each` calls), or undefined when that range was not decoded.
   */
  replay(start: number, end: number): Replay | undefined {
    const f = this.functions.get(start);
    if (!f || f[0] !== end) return undefined;
    return { stop: f[3], data: this.data, from: f[1], to: f[2] };
  }
}

/** A recorded decoding: pairs (offset, packed fields) in data[from, to), and where decoding stopped. */
export interface Replay {
  stop: number;
  data: Int32Array;
  from: number;
  to: number;
}

/** The fields of the instruction whose packed value is `v` (see pack). */
export const lengthOf = (v: number): number => v & 0xf;
export const relOffOf = (v: number): number => ((v >> 4) & 0xf) - 1;
export const ripOffOf = (v: number): number => ((v >> 8) & 0xf) - 1;
export const relSizeOf = (v: number): number => (v >> 12) & 0x7;

/** The recorded instructions of a replay, unpacked (for tests and readers; datarefs.ts's replay unpacks inline: keep both in step with `pack`). */
export function loggedInsns(r: Replay): LoggedInsn[] {
  const out: LoggedInsn[] = [];
  for (let i = r.from; i < r.to; i += 2) {
    const v = r.data[i + 1]!;
    out.push({
      offset: r.data[i]!,
      length: lengthOf(v),
      relOff: relOffOf(v),
      relSize: relSizeOf(v),
      ripOff: ripOffOf(v),
    });
  }
  return out;
}

const logs = new WeakMap<Build, DecodeLog>();

/** Keep a log of the linear decodings of this build's functions from now on (idempotent). */
export function startDecodeLog(build: Build): DecodeLog {
  let log = logs.get(build);
  if (!log) logs.set(build, (log = new DecodeLog()));
  return log;
}

/** The build's log, when one was started. */
export function decodeLogOf(build: Build): DecodeLog | undefined {
  return logs.get(build);
}
