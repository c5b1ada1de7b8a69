/**
 * Bounds-checked little-endian reads. Every read of untrusted bytes goes
 * through a View, which knows where its bytes came from (file offset or vaddr)
 * so that a failure names the field and the address the user can look up.
 */
import { malformed, truncated } from './errors.js';

export class View {
  constructor(
    readonly buf: Buffer,
    /** File offset or vaddr of buf[0], for messages. */
    readonly base: bigint,
    /** What these bytes are, e.g. ".dynsym" or "program header 3". */
    readonly what: string,
  ) {}

  get length(): number {
    return this.buf.length;
  }

  /** Throws ELF_TRUNCATED unless [off, off+len) lies inside the view. */
  need(off: number, len: number, field = this.what): void {
    if (!(off >= 0 && len >= 0 && off + len <= this.buf.length)) {
      throw truncated(field, this.base + BigInt(Math.max(0, off)), len, Math.max(0, this.buf.length - off));
    }
  }

  u8(off: number, field?: string): number {
    this.need(off, 1, field);
    return this.buf[off]!;
  }

  u16(off: number, field?: string): number {
    this.need(off, 2, field);
    return this.buf.readUInt16LE(off);
  }

  u32(off: number, field?: string): number {
    this.need(off, 4, field);
    return this.buf.readUInt32LE(off);
  }

  u64(off: number, field?: string): bigint {
    this.need(off, 8, field);
    return this.buf.readBigUInt64LE(off);
  }

  i64(off: number, field?: string): bigint {
    this.need(off, 8, field);
    return this.buf.readBigInt64LE(off);
  }

  sub(off: number, len: number, what: string): View {
    this.need(off, len, what);
    return new View(this.buf.subarray(off, off + len), this.base + BigInt(off), what);
  }
}

/**
 * A string table. Names are decoded as latin1 so that every byte maps to one
 * char code and back: hashing a looked-up name gives the same value ld.so
 * computes over the raw bytes, whatever the encoding of the name.
 */
export class StringTable {
  constructor(private readonly view: View) {}

  get size(): number {
    return this.view.length;
  }

  /** The NUL-terminated name at `off`; `field`/`index` name the referring field in errors only (hot loops build no labels). */
  get(off: number, field: string, index?: number): string {
    const buf = this.view.buf;
    if (!(off >= 0 && off < buf.length)) {
      throw malformed(
        label(field, index),
        `string offset ${off} is outside ${this.view.what} (${buf.length} bytes)`,
      );
    }
    const end = buf.indexOf(0, off);
    if (end < 0)
      throw malformed(
        label(field, index),
        `string at offset ${off} of ${this.view.what} has no terminating NUL`,
      );
    return end === off ? '' : buf.toString('latin1', off, end);
  }
}

const label = (field: string, index: number | undefined) =>
  index === undefined ? field : field.replace('#', String(index));

/** Converts a 64-bit field to a JS number, refusing values that cannot be a size or offset here. */
export function toNum(v: bigint, field: string, max: number = Number.MAX_SAFE_INTEGER): number {
  if (v < 0n || v > BigInt(Math.floor(max)))
    throw malformed(field, `value ${v} is out of range (at most ${max})`);
  return Number(v);
}

export const U64_MAX = (1n << 64n) - 1n;

/** a + b, refusing wrap-around past 2^64 (a crafted size must not wrap a range back into bounds). */
export function add64(a: bigint, b: bigint, field: string): bigint {
  const r = a + b;
  if (r > U64_MAX) throw malformed(field, `${a} + ${b} overflows 64 bits`);
  return r;
}

const LITTLE_ENDIAN_HOST = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * The same bytes as 64-bit (unsigned and signed) and 32-bit words, for
 * tables of many 64-bit fields: a typed array's element becomes a BigInt
 * natively, where Buffer's readBig*64LE assembles it from two halves with
 * BigInt arithmetic. No copy when the bytes are 8-byte aligned in their
 * buffer; undefined on a big-endian host, where typed arrays would read
 * them the wrong way round.
 */
export function words(
  buf: Buffer,
): { u64: BigUint64Array; i64: BigInt64Array; u32: Uint32Array } | undefined {
  if (!LITTLE_ENDIAN_HOST) return undefined;
  let b = buf;
  if (b.byteOffset % 8 !== 0) {
    b = Buffer.from(new ArrayBuffer(buf.length));
    buf.copy(b);
  }
  const n8 = b.length >> 3;
  return {
    u64: new BigUint64Array(b.buffer, b.byteOffset, n8),
    i64: new BigInt64Array(b.buffer, b.byteOffset, n8),
    u32: new Uint32Array(b.buffer, b.byteOffset, n8 * 2),
  };
}
