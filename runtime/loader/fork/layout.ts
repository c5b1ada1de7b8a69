/**
 * Layout of the fork page a patched process carries (one per process,
 * created the first time a library's writable data is about to be shared,
 * found again by later runs through its memfd name, like the stub page):
 *
 *   base + 0x0000  header page   /memfd:ulp:fork, sealed, read-only: magic, version, layout
 *   base + 0x1000  code page     the three fork handlers (code.ts), r-x
 *   base + 0x2000  table         what the handlers work on, rw-, private anonymous memory
 *
 * The table is private memory on purpose: a child gets a copy that describes
 * exactly the mappings it inherited, and its own later forks use that copy.
 *
 * Table:
 *   +0x0000  u32 registered      1 once __register_atfork accepted the handlers
 *   +0x0004  u32 nlibs           published library entries (written last, < 256)
 *   +0x0008  u64 prepares        forks seen by the prepare handler (lock xadd)
 *   +0x0010  u32 done_pid        in a child: its pid once its copies are private
 *   +0x0100  library entries     MAX_LIBS × LIB.SIZE
 *   +0x4100  fork entries        MAX_FORKS × FORK.SIZE, one per fork in flight
 *
 * Library entry: one per library whose writable data is shared:
 *   +0x000  u64 len              region length (bytes, whole pages)
 *   +0x008  u32 nalias           published aliases (written after the alias, < 256)
 *   +0x010  u64 idaddr           16 bytes of the loader's build (its build-id) that
 *   +0x018  u8[16] id            tell whether the library is still mapped there
 *   +0x030  char name[256]       memfd name of the copies, `ulp:data:<soname>`
 *   +0x130  u64 alias[MAX_ALIAS] alias[0]: the loader's build's region (the copy
 *                                source); then each staged build's region
 *
 * Fork entry: claimed by the prepare handler of one forking thread, keyed by
 * that thread's TCB address (%fs:0, the same in the child):
 *   +0x00  u64 key               0 = free
 *   +0x08  u32 count             libraries prepared (fd[0..count))
 *   +0x10  i32 fd[MAX_LIBS]      snapshot memfd, -1 = none made, -2 = library gone
 */
import { FORK_MEMFD } from '../../memfd-names.js';

export const FORK_NAME = FORK_MEMFD;
export const FORK_MAGIC = Buffer.from('ULPFORK\0', 'latin1');
export const FORK_VERSION = 1;

export const HEADER_OFF = 0x0000;
export const CODE_OFF = 0x1000;
export const CODE_SIZE = 0x1000;
export const TABLE_OFF = 0x2000;
export const TABLE_SIZE = 0x6000;
export const FORK_PAGE_SIZE = TABLE_OFF + TABLE_SIZE;

export const MAX_LIBS = 16;
export const MAX_ALIAS = 90;
export const MAX_FORKS = 64;
/** Counts are published with one store; below 256 only their low byte changes, so even a byte-wise copy cannot tear them. */
export const MAX_COUNT = 255;

/** Offsets inside the table. */
export const TABLE = {
  REGISTERED: 0x00,
  NLIBS: 0x04,
  PREPARES: 0x08,
  DONE_PID: 0x10,
  LIBS: 0x100,
  FORKS: 0x4100,
} as const;

export const LIB = {
  LEN: 0x000,
  NALIAS: 0x008,
  IDADDR: 0x010,
  ID: 0x018,
  ID_SIZE: 16,
  NAME: 0x030,
  NAME_SIZE: 256,
  ALIAS: 0x130,
  SIZE: 0x400,
} as const;

export const FORK = {
  KEY: 0x00,
  COUNT: 0x08,
  FD: 0x10,
  SIZE: 0x50,
} as const;

/** A fork entry's fd for a library gone from the process (-1, none made, is written by the handler code only). */
export const FD_GONE = -2;

/** Header fields (little-endian u32 after the 8-byte magic). */
export const HEADER = {
  MAGIC: 0,
  VERSION: 8,
  CODE_OFF: 12,
  TABLE_OFF: 16,
  TABLE_SIZE: 20,
  MAX_LIBS: 24,
  MAX_ALIAS: 28,
  MAX_FORKS: 32,
  PREPARE: 36,
  PARENT: 40,
  CHILD: 44,
  SIZE: 48,
} as const;

export function encodeHeader(entry: { prepare: number; parent: number; child: number }): Buffer {
  const h = Buffer.alloc(4096);
  FORK_MAGIC.copy(h, HEADER.MAGIC);
  h.writeUInt32LE(FORK_VERSION, HEADER.VERSION);
  h.writeUInt32LE(CODE_OFF, HEADER.CODE_OFF);
  h.writeUInt32LE(TABLE_OFF, HEADER.TABLE_OFF);
  h.writeUInt32LE(TABLE_SIZE, HEADER.TABLE_SIZE);
  h.writeUInt32LE(MAX_LIBS, HEADER.MAX_LIBS);
  h.writeUInt32LE(MAX_ALIAS, HEADER.MAX_ALIAS);
  h.writeUInt32LE(MAX_FORKS, HEADER.MAX_FORKS);
  h.writeUInt32LE(entry.prepare, HEADER.PREPARE);
  h.writeUInt32LE(entry.parent, HEADER.PARENT);
  h.writeUInt32LE(entry.child, HEADER.CHILD);
  return h;
}
