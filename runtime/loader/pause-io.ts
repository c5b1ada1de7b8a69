/**
 * Memory access for the pause, laid out before it. Every page the pause
 * must look at (the slots, the function pointers, the code under the
 * jumps) is known once the plan is made, so the buffers, the iovec arrays
 * and the descriptor of /proc/PID/mem are made then; inside the pause a
 * single process_vm_readv fills every page and each write is one pwrite,
 * with nothing parsed or allocated but the values themselves.
 *
 * Writes go through /proc/PID/mem, which writes through page protections
 * (a read-only GOT, code) where the kernel allows it (proc_mem.force_override,
 * memory.ts procMemWrite); where it refuses, through PTRACE_POKEDATA on a
 * stopped thread (Session.poke), for that write and every later one.
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { PAGE_SIZE } from '../../elf/index.js';
import { bufferAddress, processVmReadv } from '../sys/libc.js';
import type { Session } from '../session.js';
import type { PatchBlock } from './switch-plan.js';

/** The kernel's UIO_MAXIOV: at most this many iovecs per process_vm_readv. */
const IOV_MAX = 1024;

export interface Watched {
  addr: bigint;
  len: number;
}

interface Span {
  start: bigint;
  len: number;
  /** Where the span's bytes are in the buffer. */
  at: number;
}

export class PauseIO {
  private readonly buf: Buffer;
  /** The bytes of the read the plan was made on (keep()), and 32-bit views of both for word comparisons. */
  private readonly kept: Buffer;
  private readonly now32: Uint32Array;
  private readonly kept32: Uint32Array;
  private readonly spans: Span[];
  /** Per watched range: its offset in `buf`, and the span that holds it. */
  private readonly offsets: Int32Array;
  private readonly spanOf: Int32Array;
  /** Per span, whether the last read() got it (an unmapped page is not an error until it is asked for). */
  private readonly ok: Uint8Array;
  private readonly local: Buffer[] = [];
  private readonly remote: Buffer[] = [];
  private readonly counts: number[] = [];
  private readonly total: number;
  private fd: number | undefined;
  /** Write system calls made so far (a poke fallback counts once). */
  writes = 0;

  /** Lays out the pages that hold `watched`; opens /proc/PID/mem for the writes. */
  constructor(
    private readonly s: Session,
    readonly watched: readonly Watched[],
  ) {
    const pages = new Set<bigint>();
    for (const w of watched)
      for (let p = w.addr & ~(PAGE_SIZE - 1n); p < w.addr + BigInt(Math.max(w.len, 1)); p += PAGE_SIZE)
        pages.add(p);
    const sorted = [...pages].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    this.spans = [];
    let at = 0;
    for (const p of sorted) {
      const last = this.spans.at(-1);
      if (last && last.start + BigInt(last.len) === p) last.len += Number(PAGE_SIZE);
      else this.spans.push({ start: p, len: Number(PAGE_SIZE), at });
      at += Number(PAGE_SIZE);
    }
    this.total = at;
    this.buf = Buffer.allocUnsafeSlow(Math.max(at, 8));
    this.kept = Buffer.allocUnsafeSlow(this.buf.length);
    this.now32 = new Uint32Array(this.buf.buffer, this.buf.byteOffset, this.buf.length >> 2);
    this.kept32 = new Uint32Array(this.kept.buffer, this.kept.byteOffset, this.kept.length >> 2);
    this.ok = new Uint8Array(this.spans.length);
    this.offsets = new Int32Array(watched.length);
    this.spanOf = new Int32Array(watched.length);
    watched.forEach((w, i) => {
      const k = this.spanIndex(w.addr);
      this.spanOf[i] = k;
      this.offsets[i] = this.spans[k]!.at + Number(w.addr - this.spans[k]!.start);
    });
    const base = bufferAddress(this.buf);
    for (let first = 0; first < this.spans.length; first += IOV_MAX) {
      const group = this.spans.slice(first, first + IOV_MAX);
      const local = Buffer.allocUnsafeSlow(16 * group.length);
      const remote = Buffer.allocUnsafeSlow(16 * group.length);
      group.forEach((sp, j) => {
        local.writeBigUInt64LE(base + BigInt(sp.at), 16 * j);
        local.writeBigUInt64LE(BigInt(sp.len), 16 * j + 8);
        remote.writeBigUInt64LE(sp.start, 16 * j);
        remote.writeBigUInt64LE(BigInt(sp.len), 16 * j + 8);
      });
      this.local.push(local);
      this.remote.push(remote);
      this.counts.push(group.length);
    }
    try {
      this.fd = openSync(`/proc/${s.pid}/mem`, 'r+');
    } catch {
      this.fd = undefined;
    }
  }

  private spanIndex(addr: bigint): number {
    let lo = 0;
    let hi = this.spans.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.spans[mid]!.start <= addr) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /** Reads every watched page: one system call per 1024 spans; spans it could not read are read alone. */
  read(): void {
    let spanBase = 0;
    for (let g = 0; g < this.local.length; g++) {
      const n = Number(
        processVmReadv(this.s.pid, this.local[g]!, this.counts[g]!, this.remote[g]!, this.counts[g]!, 0),
      );
      // process_vm_readv stops at the first span it cannot read: those before it are complete. The rest are read
      // alone, through RemoteMemory, which says so when the process is gone.
      const got = n < 0 ? 0 : n;
      let done = 0;
      for (let j = 0; j < this.counts[g]!; j++) {
        const sp = this.spans[spanBase + j]!;
        if (done + sp.len <= got) this.ok[spanBase + j] = 1;
        else this.ok[spanBase + j] = this.readAlone(sp) ? 1 : 0;
        done += sp.len;
      }
      spanBase += this.counts[g]!;
    }
  }

  /** A span the batched read could not finish: page by page, the unmapped ones left unread. */
  private readAlone(sp: Span): boolean {
    let all = true;
    for (let off = 0; off < sp.len; off += Number(PAGE_SIZE)) {
      const page = this.s.memory.tryRead(sp.start + BigInt(off), Number(PAGE_SIZE));
      if (page) page.copy(this.buf, sp.at + off);
      else all = false;
    }
    return all;
  }

  /** Keeps what the last read() saw: the values the plan is made on. */
  keep(): void {
    this.buf.copy(this.kept);
  }

  /**
   * Whether watched words [first, first + count) hold what they held at
   * keep(): compared as 32-bit halves, so that no value is made for a word
   * that did not change (nearly all of them).
   */
  sameWords(first: number, count: number): boolean {
    for (let i = first; i < first + count; i++) {
      if (this.ok[this.spanOf[i]!] !== 1) return false;
      const off = this.offsets[i]!;
      if ((off & 3) !== 0) {
        if (this.buf.compare(this.kept, off, off + 8, off, off + 8) !== 0) return false;
        continue;
      }
      const k = off >> 2;
      if (this.now32[k] !== this.kept32[k] || this.now32[k + 1] !== this.kept32[k + 1]) return false;
    }
    return true;
  }

  /** The word at watched range `i` (8 bytes), as the last read() saw it; throws when its page could not be read. */
  u64(i: number): bigint {
    if (this.ok[this.spanOf[i]!] !== 1) return this.s.memory.readU64(this.watched[i]!.addr);
    return this.buf.readBigUInt64LE(this.offsets[i]!);
  }

  /** Whether watched range `i` held `expect` at the last read() (false when it could not be read). */
  holds(i: number, expect: Buffer): boolean {
    if (this.ok[this.spanOf[i]!] !== 1) return false;
    const off = this.offsets[i]!;
    return this.buf.compare(expect, 0, expect.length, off, off + expect.length) === 0;
  }

  /**
   * Before the pause: gives each block of several patches whose span lies in
   * one span of the read kept by keep() its image (PatchBlock.image), the
   * patches laid over that read, and where that span is in the buffers.
   */
  prepare(blocks: readonly PatchBlock[]): void {
    for (const b of blocks) {
      const at = this.blockAt(b);
      if (at < 0 || b.patches.length === 1) continue;
      const image = Buffer.allocUnsafeSlow(b.len);
      this.kept.copy(image, 0, at, at + b.len);
      for (const p of b.patches) p.bytes.copy(image, Number(p.addr - b.addr));
      b.image = image;
    }
  }

  /** Where block `b`'s span starts in the buffers, or -1 when it does not lie inside one read span. */
  private blockAt(b: PatchBlock): number {
    const k = this.spanIndex(b.addr);
    const sp = this.spans[k]!;
    const base = sp.at + Number(b.addr - sp.start);
    return b.addr < sp.start || base + b.len > sp.at + sp.len ? -1 : base;
  }

  /**
   * Writes a block of patches (switch-plan.ts PatchBlock) as one write: its
   * image when the last read() found its span as the plan read it (one
   * comparison), else each patch's bytes laid into the buffer of the last
   * read() and the block's span of that buffer, whose other bytes are as that
   * read saw them. A block whose pages were not all read is written patch by
   * patch.
   */
  writeBlock(b: PatchBlock): void {
    const k = this.spanIndex(b.addr);
    const sp = this.spans[k]!;
    const base = sp.at + Number(b.addr - sp.start);
    if (b.patches.length === 1 || this.ok[k] !== 1 || b.addr < sp.start || base + b.len > sp.at + sp.len) {
      for (const p of b.patches) this.write(p.addr, p.bytes);
      return;
    }
    if (b.image && this.buf.compare(this.kept, base, base + b.len, base, base + b.len) === 0) {
      this.writeFrom(b.image, 0, b.len, b.addr);
      return;
    }
    for (const p of b.patches) p.bytes.copy(this.buf, base + Number(p.addr - b.addr));
    const len = b.len;
    const addr = b.addr;
    this.writeFrom(this.buf, base, len, addr);
  }

  /** Writes `data` at `addr`, through page protections. */
  write(addr: bigint, data: Buffer): void {
    this.writeFrom(data, 0, data.length, addr);
  }

  /**
   * The same write through /proc/PID/mem only, for the warm-up before the
   * pause: PTRACE_POKEDATA needs a stopped thread, which there is not then.
   * False when the descriptor is not there or the kernel refused the write.
   */
  tryWriteNow(addr: bigint, data: Buffer): boolean {
    if (this.fd === undefined) return false;
    try {
      return writeSync(this.fd, data, 0, data.length, Number(addr)) === data.length;
    } catch {
      return false;
    }
  }

  private writeFrom(data: Buffer, off: number, len: number, addr: bigint): void {
    this.writes++;
    if (this.fd !== undefined) {
      try {
        if (writeSync(this.fd, data, off, len, Number(addr)) === len) return;
      } catch {
        // The kernel refuses writes through /proc/PID/mem here (proc_mem.force_override=never): poke instead.
      }
      this.close();
    }
    this.s.poke(addr, data.subarray(off, off + len));
  }

  /** Pages every read() moves: with `writes`, the figures the benchmark's floor repeats. */
  get pages(): number {
    return this.total / Number(PAGE_SIZE);
  }

  close(): void {
    if (this.fd === undefined) return;
    try {
      closeSync(this.fd);
    } catch {
      // Already closed: nothing holds it.
    }
    this.fd = undefined;
  }
}
