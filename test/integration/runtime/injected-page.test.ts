/**
 * Finding an injected page (runtime/injected-page.ts) from /proc/PID/maps
 * and memory, on fixed maps text and a memory image: only a page whose
 * named header and code read as expected and whose code is executable.
 * Creation runs on real processes in remote.test.ts (stub) and
 * test/integration/trigger/fork.test.ts (fork page).
 */
import assert from 'node:assert/strict';
import { findInjectedPages, type InjectedPage } from '../../../runtime/injected-page.js';
import { parseMaps } from '../../../runtime/maps.js';
import type { RemoteMemory } from '../../../runtime/memory.js';

const header = Buffer.alloc(4096);
header.write('TESTPAGE', 0, 'latin1');
header.writeUInt32LE(7, 8);
const code = Buffer.from('c3'.repeat(64), 'hex');
const PAGE: InjectedPage = { name: 'ulp:test', header, headerCheck: 12, codeOff: 0x1000, code };

/** A process's memory as a map of base address -> bytes. */
function memoryOf(regions: Map<number, Buffer>): RemoteMemory {
  const tryRead = (addr: bigint, length: number): Buffer | undefined => {
    for (const [base, bytes] of regions) {
      const off = Number(addr) - base;
      if (off >= 0 && off + length <= bytes.length) return bytes.subarray(off, off + length);
    }
    return undefined;
  };
  return { tryRead } as unknown as RemoteMemory;
}

const hex = (n: number) => n.toString(16);
const line = (start: number, end: number, perms: string, offset: number, path: string) =>
  `${hex(start)}-${hex(end)} ${perms} ${hex(offset).padStart(8, '0')} 00:01 1 ${path}`;

function page(
  base: number,
  opts: { codePerms?: string; header?: Buffer; code?: Buffer; offset?: number; name?: string } = {},
) {
  const maps = [
    line(base, base + 0x1000, 'r--s', opts.offset ?? 0, `/memfd:${opts.name ?? 'ulp:test'} (deleted)`),
    line(base + 0x1000, base + 0x2000, opts.codePerms ?? 'r-xp', 0, ''),
  ];
  const bytes = Buffer.concat([opts.header ?? header, opts.code ?? code]);
  return { maps, bytes };
}

function find(...pages: Array<{ base: number; maps: string[]; bytes: Buffer }>): bigint[] {
  const maps = parseMaps(pages.flatMap((p) => p.maps).join('\n'));
  return findInjectedPages(maps, memoryOf(new Map(pages.map((p) => [p.base, p.bytes]))), PAGE);
}

describe('injected pages', () => {
  it('finds a complete page by its name, header and code', () => {
    assert.deepEqual(find({ base: 0x10000, ...page(0x10000) }), [0x10000n]);
  });

  it('ignores a page of another name, header, code or offset, and one whose code is not executable', () => {
    const otherHeader = Buffer.from(header);
    otherHeader.writeUInt32LE(8, 8); // another layout version
    const cases = [
      page(0x10000, { name: 'ulp:other' }),
      page(0x10000, { header: otherHeader }),
      page(0x10000, { code: Buffer.alloc(code.length) }),
      page(0x10000, { offset: 0x1000 }),
      page(0x10000, { codePerms: 'rw-p' }),
    ];
    for (const c of cases) assert.deepEqual(find({ base: 0x10000, ...c }), []);
  });

  it('compares only the identifying part of the header, and lists every valid page', () => {
    const later = Buffer.from(header);
    later.writeUInt32LE(0xdead, 100); // beyond headerCheck
    assert.deepEqual(
      find({ base: 0x10000, ...page(0x10000) }, { base: 0x40000, ...page(0x40000, { header: later }) }),
      [0x10000n, 0x40000n],
    );
  });
});
