/**
 * Where an object's bytes come from. Everything past the headers is reached
 * through link-time vaddrs (the dynamic section speaks in vaddrs), so the
 * same parsing code serves a file (vaddr -> file offset through PT_LOAD) and
 * a loaded object (vaddr + bias in the process).
 */
import type { ElfOrigin, ProgramHeader } from './types.js';
import { View } from './bytes.js';
import { PT_LOAD } from './constants.js';
import { PAGE_SIZE } from './layout.js';
import { ElfErrorCode, elfError, malformed, truncated } from './errors.js';
import { hex } from '../common/format.js';

export interface Image {
  readonly origin: ElfOrigin;
  /** Largest single read allowed: no table of a sane object is bigger. */
  readonly maxRead: number;
  /** `len` bytes at link-time `vaddr`, which must lie inside one PT_LOAD's memory image. */
  read(vaddr: bigint, len: number, what: string): View;
  /** Bytes from `vaddr` to the end of its PT_LOAD (0 when unmapped): bounds tables whose size is found while walking them. */
  extent(vaddr: bigint): bigint;
}

function findLoad(loads: ProgramHeader[], vaddr: bigint): ProgramHeader | undefined {
  for (const p of loads) if (vaddr >= p.vaddr && vaddr - p.vaddr < p.memsz) return p;
  return undefined;
}

function checkRange(
  loads: ProgramHeader[],
  vaddr: bigint,
  len: number,
  what: string,
  maxRead: number,
): ProgramHeader {
  if (len > maxRead)
    throw malformed(what, `${len} bytes is more than this object can hold (${maxRead})`, vaddr);
  const p = findLoad(loads, vaddr);
  if (!p) throw malformed(what, 'address is not inside any PT_LOAD segment', vaddr);
  const room = p.memsz - (vaddr - p.vaddr);
  if (BigInt(len) > room)
    throw truncated(`${what} (its PT_LOAD ends at ${hex(p.vaddr + p.memsz)})`, vaddr, len, room);
  return p;
}

export class FileImage implements Image {
  readonly origin = 'file' as const;
  readonly maxRead: number;
  private readonly loads: ProgramHeader[];

  constructor(
    readonly buf: Buffer,
    phdrs: ProgramHeader[],
  ) {
    this.loads = phdrs.filter((p) => p.type === PT_LOAD);
    // A table past the file bytes would be zero-filled .bss: never larger than the file itself.
    this.maxRead = buf.length;
  }

  read(vaddr: bigint, len: number, what: string): View {
    const p = checkRange(this.loads, vaddr, len, what, this.maxRead);
    const rel = vaddr - p.vaddr;
    const off = Number(p.offset + rel); // checkLoads proved offset + filesz <= file size
    if (rel + BigInt(len) <= p.filesz) return new View(this.buf.subarray(off, off + len), vaddr, what);
    const out = Buffer.alloc(len);
    if (rel < p.filesz) this.buf.copy(out, 0, off, Number(p.offset + p.filesz));
    return new View(out, vaddr, what);
  }

  extent(vaddr: bigint): bigint {
    const p = findLoad(this.loads, vaddr);
    return p ? p.memsz - (vaddr - p.vaddr) : 0n;
  }

  /** Bytes at a file offset (section headers and .symtab live outside PT_LOAD). */
  atOffset(off: bigint, len: bigint, what: string): View {
    const size = BigInt(this.buf.length);
    if (off > size || len > size - off) throw truncated(what, off, len, off > size ? 0n : size - off);
    const o = Number(off);
    return new View(this.buf.subarray(o, o + Number(len)), off, what);
  }
}

export type ReadMemory = (addr: bigint, len: number) => Buffer;

/** Reads up to this size go through the page cache: verdef/verneed walks and hash headers are many tiny reads. */
const SMALL_READ = 512;
/** No single table of a real library comes near this; it bounds what a corrupt memsz can make us allocate. */
export const MEMORY_MAX_READ = 256 * 1024 * 1024;

export class MemoryImage implements Image {
  readonly origin = 'memory' as const;
  readonly maxRead = MEMORY_MAX_READ;
  private loads: ProgramHeader[] = [];
  private readonly pages = new Map<bigint, Buffer>();

  constructor(
    private readonly readFn: ReadMemory,
    readonly bias: bigint,
  ) {}

  setLoads(phdrs: ProgramHeader[]): void {
    this.loads = phdrs.filter((p) => p.type === PT_LOAD);
  }

  /** A raw read at an absolute address, turning the callback's failures into UlpError. */
  readAbsolute(addr: bigint, len: number, what: string): Buffer {
    let b: unknown;
    try {
      b = this.readFn(addr, len);
    } catch (e) {
      throw elfError(
        ElfErrorCode.MEMORY_READ,
        `cannot read ${len} bytes of ${what} at ${hex(addr)}: ${e instanceof Error ? e.message : String(e)}`,
        'Check that the bias and header address belong to an object mapped in the process and that it is still running.',
        { address: hex(addr), length: len },
      );
    }
    if (!Buffer.isBuffer(b) || b.length < len) {
      throw truncated(
        `${what} (memory read returned ${Buffer.isBuffer(b) ? b.length : 'no'} bytes)`,
        addr,
        len,
        Buffer.isBuffer(b) ? b.length : 0,
      );
    }
    return b.length === len ? b : b.subarray(0, len);
  }

  read(vaddr: bigint, len: number, what: string): View {
    const p = checkRange(this.loads, vaddr, len, what, this.maxRead);
    const abs = (vaddr + this.bias) & ((1n << 64n) - 1n);
    if (len <= SMALL_READ) {
      const segStart = p.vaddr + this.bias;
      const segEnd = segStart + p.memsz;
      const pageStart = abs - (abs % PAGE_SIZE);
      const chunkStart = pageStart > segStart ? pageStart : segStart;
      const chunkEnd = pageStart + PAGE_SIZE < segEnd ? pageStart + PAGE_SIZE : segEnd;
      if (abs + BigInt(len) <= chunkEnd) {
        let chunk = this.pages.get(chunkStart);
        if (!chunk) {
          chunk = this.readAbsolute(chunkStart, Number(chunkEnd - chunkStart), what);
          this.pages.set(chunkStart, chunk);
        }
        const o = Number(abs - chunkStart);
        return new View(chunk.subarray(o, o + len), vaddr, what);
      }
    }
    return new View(this.readAbsolute(abs, len, what), vaddr, what);
  }

  extent(vaddr: bigint): bigint {
    const p = findLoad(this.loads, vaddr);
    return p ? p.memsz - (vaddr - p.vaddr) : 0n;
  }
}
