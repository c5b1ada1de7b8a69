/**
 * The fork table (layout.ts) as data, and the trigger's updates to it.
 *
 * The handlers read the table while the process runs, possibly in the middle
 * of an update, so every update is ordered for them: an entry is written
 * completely before the count that publishes it (process_vm_writev calls
 * complete in order, and x86 makes stores visible in order); an alias is
 * withdrawn by first moving the last alias into its slot and only then
 * lowering the count, so at every instant the table lists only regions that
 * are mapped. Counts stay below 256: a store that changes only their low
 * byte cannot be seen torn, however the kernel copies it.
 *
 * A child's table is its own copy, taken by fork() together with its
 * mappings, so it always matches what the child inherited.
 */
import { UlpError } from '../../../common/errors.js';
import type { RemoteMemory } from '../../memory.js';
import { LIB, MAX_ALIAS, MAX_COUNT, MAX_LIBS, TABLE, TABLE_SIZE } from './layout.js';
import { tableAddress } from './page.js';
import { u64Bytes } from '../../../common/u64.js';

export interface ForkLibrary {
  index: number;
  name: string;
  len: bigint;
  idAddr: bigint;
  id: Buffer;
  /** aliases[0] is the loader's build's region, the source of every copy. */
  aliases: bigint[];
}

export interface ForkTable {
  registered: boolean;
  /** Forks the prepare handler has seen in this process (and, for a child, in its ancestors before it). */
  prepares: bigint;
  libs: ForkLibrary[];
}

function libOffset(i: number): number {
  return TABLE.LIBS + i * LIB.SIZE;
}

/** Pure: decodes a table image. */
export function decodeTable(t: Buffer): ForkTable {
  const n = Math.min(t.readUInt32LE(TABLE.NLIBS), MAX_LIBS);
  const libs: ForkLibrary[] = [];
  for (let i = 0; i < n; i++) {
    const o = libOffset(i);
    const nalias = Math.min(t.readUInt32LE(o + LIB.NALIAS), MAX_ALIAS);
    const nameBytes = t.subarray(o + LIB.NAME, o + LIB.NAME + LIB.NAME_SIZE);
    const nul = nameBytes.indexOf(0);
    libs.push({
      index: i,
      name: nameBytes.subarray(0, nul < 0 ? nameBytes.length : nul).toString('latin1'),
      len: t.readBigUInt64LE(o + LIB.LEN),
      idAddr: t.readBigUInt64LE(o + LIB.IDADDR),
      id: Buffer.from(t.subarray(o + LIB.ID, o + LIB.ID + LIB.ID_SIZE)),
      aliases: Array.from({ length: nalias }, (_, k) => t.readBigUInt64LE(o + LIB.ALIAS + 8 * k)),
    });
  }
  return {
    registered: t.readUInt32LE(TABLE.REGISTERED) === 1,
    prepares: t.readBigUInt64LE(TABLE.PREPARES),
    libs,
  };
}

export function readTable(mem: RemoteMemory, base: bigint): ForkTable {
  return decodeTable(mem.read(tableAddress(base), TABLE_SIZE));
}

function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v);
  return b;
}

function full(what: string, limit: number): UlpError {
  return new UlpError(
    'LOADER_FORK_TABLE_FULL',
    `the fork table of the process has no room for another ${what} (${limit} at most)`,
    'Restart the process to start from a clean table; see docs/FORK.md.',
    { limit },
  );
}

export function markRegistered(mem: RemoteMemory, base: bigint): void {
  mem.write(tableAddress(base) + BigInt(TABLE.REGISTERED), u32(1));
}

export interface NewLibrary {
  name: string;
  len: bigint;
  idAddr: bigint;
  id: Buffer;
  canonical: bigint;
}

/** Publishes a library with its loader build's region as alias 0; returns its index. */
export function publishLibrary(mem: RemoteMemory, base: bigint, table: ForkTable, lib: NewLibrary): number {
  const i = table.libs.length;
  if (i >= MAX_LIBS) throw full('library', MAX_LIBS);
  const entry = Buffer.alloc(LIB.ALIAS + 8);
  entry.writeBigUInt64LE(lib.len, LIB.LEN);
  entry.writeUInt32LE(1, LIB.NALIAS); // the entry is invisible until NLIBS covers it
  entry.writeBigUInt64LE(lib.idAddr, LIB.IDADDR);
  lib.id.copy(entry, LIB.ID, 0, LIB.ID_SIZE);
  const name = Buffer.from(lib.name, 'latin1');
  name.copy(entry, LIB.NAME, 0, Math.min(name.length, LIB.NAME_SIZE - 1));
  entry.writeBigUInt64LE(lib.canonical, LIB.ALIAS);
  const t = tableAddress(base);
  mem.write(t + BigInt(libOffset(i)), entry);
  mem.write(t + BigInt(TABLE.NLIBS), u32(i + 1));
  table.libs.push({
    index: i,
    name: lib.name,
    len: lib.len,
    idAddr: lib.idAddr,
    id: Buffer.from(lib.id),
    aliases: [lib.canonical],
  });
  return i;
}

/** Adds `addr` to a library's aliases, unless it is listed already. */
export function publishAlias(mem: RemoteMemory, base: bigint, lib: ForkLibrary, addr: bigint): void {
  if (lib.aliases.includes(addr)) return;
  const k = lib.aliases.length;
  if (k >= Math.min(MAX_ALIAS, MAX_COUNT)) throw full('build of this library', MAX_ALIAS);
  const o = tableAddress(base) + BigInt(libOffset(lib.index));
  mem.write(o + BigInt(LIB.ALIAS + 8 * k), u64Bytes(addr));
  mem.write(o + BigInt(LIB.NALIAS), u32(k + 1));
  lib.aliases.push(addr);
}

/** Withdraws every alias (never alias 0) inside [start, end): the trigger is about to unmap it. Returns how many. */
export function withdrawAliases(
  mem: RemoteMemory,
  base: bigint,
  table: ForkTable,
  start: bigint,
  end: bigint,
): number {
  let n = 0;
  for (const lib of table.libs) {
    const o = tableAddress(base) + BigInt(libOffset(lib.index));
    for (let k = lib.aliases.length - 1; k >= 1; k--) {
      const a = lib.aliases[k]!;
      if (a < start || a >= end) continue;
      const last = lib.aliases.length - 1;
      if (k !== last) {
        // Listed twice for a moment (both mapped), then the count drops: never a region that is gone.
        mem.write(o + BigInt(LIB.ALIAS + 8 * k), u64Bytes(lib.aliases[last]!));
        lib.aliases[k] = lib.aliases[last]!;
      }
      mem.write(o + BigInt(LIB.NALIAS), u32(last));
      lib.aliases.pop();
      n++;
    }
  }
  return n;
}
