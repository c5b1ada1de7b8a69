/**
 * A cursor over DWARF-encoded bytes as .eh_frame and .eh_frame_hdr hold
 * them: LEB128 numbers, C strings and DW_EH_PE-encoded pointers. Addresses
 * are Numbers (link-time vaddrs of a shared object fit in a double exactly).
 * Reading past the end throws a RangeError; callers treat that as "no
 * usable unwind information".
 */
export class DwarfReader {
  constructor(
    readonly buf: Buffer,
    /** vaddr of buf[0] */
    readonly base: number,
    public pos = 0,
  ) {}
  get vaddr(): number {
    return this.base + this.pos;
  }
  u8(): number {
    return this.buf.readUInt8(this.pos++);
  }
  u32(): number {
    const v = this.buf.readUInt32LE(this.pos);
    this.pos += 4;
    return v;
  }
  uleb(): number {
    let result = 0;
    let shift = 0;
    for (;;) {
      const b = this.u8();
      result += (b & 0x7f) * 2 ** shift;
      shift += 7;
      if ((b & 0x80) === 0) return result;
      if (shift > 56) throw new RangeError('uleb128 too long');
    }
  }
  sleb(): number {
    let result = 0;
    let shift = 0;
    let b: number;
    do {
      b = this.u8();
      result += (b & 0x7f) * 2 ** shift;
      shift += 7;
      if (shift > 63) throw new RangeError('sleb128 too long');
    } while (b & 0x80);
    if (b & 0x40) result -= 2 ** shift;
    return result;
  }
  cstring(): string {
    const end = this.buf.indexOf(0, this.pos);
    if (end < 0) throw new RangeError('unterminated string');
    const s = this.buf.toString('latin1', this.pos, end);
    this.pos = end + 1;
    return s;
  }
  /** A DW_EH_PE-encoded pointer; `applyPcrel` is false for pc_range, which is a plain length. */
  encoded(enc: number, applyPcrel: boolean): number {
    const at = this.vaddr;
    let v: number;
    switch (enc & 0x0f) {
      case 0x00:
      case 0x04:
      case 0x0c: {
        const big = this.buf.readBigUInt64LE(this.pos);
        this.pos += 8;
        v = Number((enc & 0x0f) === 0x0c ? BigInt.asIntN(64, big) : big);
        break;
      }
      case 0x01:
        v = this.uleb();
        break;
      case 0x02:
        v = this.buf.readUInt16LE(this.pos);
        this.pos += 2;
        break;
      case 0x03:
        v = this.u32();
        break;
      case 0x09:
        v = this.sleb();
        break;
      case 0x0a:
        v = this.buf.readInt16LE(this.pos);
        this.pos += 2;
        break;
      case 0x0b:
        v = this.buf.readInt32LE(this.pos);
        this.pos += 4;
        break;
      default:
        throw new RangeError(`unsupported pointer encoding 0x${enc.toString(16)}`);
    }
    if (applyPcrel && (enc & 0x70) === 0x10) v += at;
    return v;
  }
}
