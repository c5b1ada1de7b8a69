/**
 * Page layout against the real thing: libraries loaded by ld.so in a helper
 * process, whose /proc/self/maps shows which pages stayed writable after
 * RELRO. writableRegion must name exactly those pages.
 */
import { strict as assert } from 'node:assert';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import {
  imageSpan,
  pageAlignDown,
  pageAlignUp,
  parseElf,
  writableRegion,
  writableRegions,
} from '../../../elf/index.js';
import { isUlpError } from '../../../common/errors.js';
import { compile } from '../../../lab/compile.js';
import { fixture } from '../../../lab/elf/fixtures.js';

interface Mapping {
  start: bigint;
  end: bigint;
  perms: string;
  offset: bigint;
  path: string;
}

function parseMaps(text: string): Mapping[] {
  return text
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

const SYS = '/usr/lib/x86_64-linux-gnu';

describe('elf: layout', function () {
  this.timeout(120_000);

  it('writableRegion is exactly what stays writable once ld.so has loaded the library', () => {
    const libs = [
      'full-relro',
      'partial-relro',
      'no-relro',
      'relr',
      'tls',
      'versioned',
      'ifunc',
      'symbolic',
    ].map((n) => fixture(n).path);
    // Real libraries with each RELRO flavour (libexpat and libz are partial RELRO).
    libs.push(
      ...['libz.so.1', 'libexpat.so.1', 'libcrypto.so.3', 'libstdc++.so.6']
        .filter((n) => existsSync(`${SYS}/${n}`))
        .map((n) => realpathSync(`${SYS}/${n}`)),
    );
    const helper = compile({ sources: ['elf/maps.c'], out: 'maps', flags: ['-O1'] });
    const maps = parseMaps(execFileSync(helper, libs, { encoding: 'utf8' }));
    for (const path of libs) {
      const obj = parseElf(readFileSync(path));
      const head = maps.find((m) => m.path === path && m.offset === 0n);
      assert.ok(head, `${path} is mapped`);
      const bias = head.start - imageSpan(obj).start;
      const span = imageSpan(obj);
      // Every page of the image that is writable, merged into ranges.
      const writable: Array<[bigint, bigint]> = [];
      for (const m of maps) {
        // The kernel merges the .bss mapping with adjacent anonymous memory: clip to the image.
        const s = m.start > bias + span.start ? m.start : bias + span.start;
        const e = m.end < bias + span.end ? m.end : bias + span.end;
        if (s >= e || !m.perms.includes('w')) continue;
        const last = writable[writable.length - 1];
        if (last && last[1] === s) last[1] = e;
        else writable.push([s, e]);
      }
      const w = writableRegion(obj);
      assert.deepEqual(w ? [[w.start + bias, w.end + bias]] : [], writable, path);
      if (obj.relro) {
        const protectedPage = bias + pageAlignDown(obj.relro.vaddr);
        const m = maps.find((x) => x.start <= protectedPage && protectedPage < x.end)!;
        assert.ok(!m.perms.includes('w'), `${path}: RELRO start is read-only`);
      }
    }
  });

  it('names the sections of the writable region', () => {
    const w = writableRegion(parseElf(readFileSync(fixture('partial-relro').path)))!;
    assert.deepEqual(
      w.sections.map((s) => s.name),
      ['.got.plt', '.data', '.bss'],
    );
    assert.deepEqual(writableRegions(parseElf(readFileSync(fixture('partial-relro').path))).length, 1);
  });

  it('aligns to pages', () => {
    assert.equal(pageAlignDown(0x1234n), 0x1000n);
    assert.equal(pageAlignUp(0x1234n), 0x2000n);
    assert.equal(pageAlignUp(0x2000n), 0x2000n);
    assert.equal(pageAlignDown(0x12345n, 0x10000n), 0x10000n);
    assert.throws(
      () => pageAlignUp(1n, 3000n),
      (e: unknown) => isUlpError(e) && e.code === 'ELF_INVALID_ARGUMENT',
    );
  });

  it('spans all PT_LOADs', () => {
    const obj = parseElf(readFileSync(`${SYS}/libc.so.6`));
    const s = imageSpan(obj);
    assert.equal(s.start, 0n);
    const last = obj.loadSegments[obj.loadSegments.length - 1]!;
    assert.equal(s.end, pageAlignUp(last.vaddr + last.memsz));
  });
});
