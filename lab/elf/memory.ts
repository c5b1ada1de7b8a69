/**
 * Reading loaded objects without ptrace: a process's own memory through
 * /proc/<pid>/mem, its mappings from /proc/<pid>/maps, and a simulated load
 * of a file (segments placed at a bias, dynamic entries relocated the way
 * glibc's ld.so does) for tests that need to damage memory on purpose.
 */
import { closeSync, openSync, readFileSync, readSync } from 'node:fs';
import {
  DT_GNU_HASH,
  DT_HASH,
  DT_JMPREL,
  DT_PLTGOT,
  DT_REL,
  DT_RELA,
  DT_RELR,
  DT_STRTAB,
  DT_SYMTAB,
  DT_VERSYM,
  PT_DYNAMIC,
  PT_LOAD,
  parseElf,
  type ElfObject,
  type ReadMemory,
} from '../../elf/index.js';

export interface Mapping {
  start: bigint;
  end: bigint;
  perms: string;
  offset: bigint;
  path: string;
}

export function readMaps(pid: number | 'self'): Mapping[] {
  return readFileSync(`/proc/${pid}/maps`, 'utf8')
    .trim()
    .split('\n')
    .map((l) => {
      const m = /^([0-9a-f]+)-([0-9a-f]+) (\S+) ([0-9a-f]+) \S+ \d+\s*(.*)$/.exec(l)!;
      return {
        start: BigInt(`0x${m[1]}`),
        end: BigInt(`0x${m[2]}`),
        perms: m[3]!,
        offset: BigInt(`0x${m[4]}`),
        path: m[5]!,
      };
    });
}

/** A reader over /proc/<pid>/mem. Positions must be Numbers: user-space addresses fit in 2^53. */
export function procMem(pid: number | 'self'): { read: ReadMemory; close: () => void } {
  const fd = openSync(`/proc/${pid}/mem`, 'r');
  return {
    read: (addr, len) => {
      const b = Buffer.alloc(len);
      const n = readSync(fd, b, 0, len, Number(addr));
      return b.subarray(0, n);
    },
    close: () => closeSync(fd),
  };
}

/** The load bias of the file mapped at `path`: where offset 0 is mapped minus the vaddr of the segment holding it. */
export function biasOf(maps: Mapping[], path: string, file: ElfObject): bigint {
  const m = maps.find((x) => x.path === path && x.offset === 0n);
  if (!m) throw new Error(`${path} is not mapped`);
  const first = file.loadSegments.find((p) => p.offset === 0n)!;
  return m.start - (first.vaddr & ~0xfffn);
}

const LDSO_RELOCATED = new Set([
  DT_HASH,
  DT_PLTGOT,
  DT_STRTAB,
  DT_SYMTAB,
  DT_RELA,
  DT_REL,
  DT_JMPREL,
  DT_RELR,
  DT_VERSYM,
  DT_GNU_HASH,
]);

export interface SimulatedLoad {
  read: ReadMemory;
  /** The simulated memory, region by region, for tests that damage it. */
  regions: Array<{ start: bigint; bytes: Buffer }>;
}

/**
 * Places the PT_LOAD segments of a file at `bias` (page-granular, zero-filled
 * .bss) and relocates the dynamic entries ld.so relocates in place. Reads
 * outside the mapped pages throw, as /proc/<pid>/mem does.
 */
export function simulateLoad(buf: Buffer, bias: bigint): SimulatedLoad {
  const obj = parseElf(buf, { expect: 'any' });
  const regions: Array<{ start: bigint; bytes: Buffer }> = [];
  for (const p of obj.programHeaders.filter((x) => x.type === PT_LOAD)) {
    const start = p.vaddr & ~0xfffn;
    const end = (p.vaddr + p.memsz + 0xfffn) & ~0xfffn;
    const bytes = Buffer.alloc(Number(end - start));
    const fileStart = p.offset - (p.vaddr - start);
    buf.copy(bytes, 0, Number(fileStart), Number(p.offset + p.filesz));
    bytes.fill(0, Number(p.vaddr - start + p.filesz));
    regions.push({ start: start + bias, bytes });
  }
  const dyn = obj.programHeaders.find((x) => x.type === PT_DYNAMIC);
  const find = (addr: bigint, len: number) =>
    regions.find((r) => addr >= r.start && addr + BigInt(len) <= r.start + BigInt(r.bytes.length));
  if (dyn && bias !== 0n) {
    for (let a = dyn.vaddr + bias; ; a += 16n) {
      const r = find(a, 16);
      if (!r) break;
      const o = Number(a - r.start);
      const tag = r.bytes.readBigInt64LE(o);
      if (tag === 0n) break;
      if (LDSO_RELOCATED.has(tag))
        r.bytes.writeBigUInt64LE(BigInt.asUintN(64, r.bytes.readBigUInt64LE(o + 8) + bias), o + 8);
    }
  }
  return {
    regions,
    read: (addr, len) => {
      const r = find(addr, len);
      if (!r) throw new Error(`EIO: ${len} bytes at 0x${addr.toString(16)} are not mapped`);
      const o = Number(addr - r.start);
      return Buffer.from(r.bytes.subarray(o, o + len));
    },
  };
}
