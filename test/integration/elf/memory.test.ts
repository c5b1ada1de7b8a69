/**
 * Memory mode: objects loaded in a live process, read through
 * /proc/<pid>/mem, must parse to the same facts as their files — which shows
 * that the dynamic entries ld.so relocated in place are turned back into
 * link-time vaddrs, and that sizes come from the hash tables alone.
 */
import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  DT_DEBUG,
  DT_STRTAB,
  parseElf,
  parseElfFromMemory,
  PT_DYNAMIC,
  type ElfObject,
} from '../../../elf/index.js';
import { isUlpError } from '../../../common/errors.js';
import { compareWithReadelf } from '../../../lab/elf/compare.js';
import { fixture } from '../../../lab/elf/fixtures.js';
import { biasOf, procMem, readMaps, simulateLoad } from '../../../lab/elf/memory.js';
import { readelfSync } from '../../../lab/elf/readelf.js';

/** Everything a memory parse must share with the file parse of the same build. */
function assertSameBuild(mem: ElfObject, file: ElfObject, label: string): void {
  assert.equal(mem.origin, 'memory');
  assert.deepEqual(mem.header, file.header, label);
  assert.deepEqual(mem.programHeaders, file.programHeaders, label);
  assert.equal(mem.buildId, file.buildId, label);
  assert.equal(mem.soname, file.soname, label);
  assert.deepEqual(mem.notes, file.notes, label);
  // DT_DEBUG is the one entry a running program changes (ld.so stores &r_debug there).
  const strip = (o: ElfObject) => ({
    ...o.dynamic!,
    debug: undefined,
    entries: o.dynamic!.entries.filter((e) => e.tag !== DT_DEBUG),
  });
  assert.deepEqual(strip(mem), strip(file), label);
  assert.deepEqual(mem.dynamicSymbols, file.dynamicSymbols, label);
  assert.deepEqual(mem.relocations, file.relocations, label);
  assert.deepEqual(mem.sections, [], label);
  assert.deepEqual(mem.symtab, [], label);
  for (const s of file.dynamicSymbols.filter((x) => x.defined).slice(0, 200)) {
    assert.equal(
      mem.lookup(s.name, s.version)?.index,
      file.lookup(s.name, s.version)?.index,
      `${label}: ${s.name}`,
    );
  }
}

describe('elf: memory mode', function () {
  this.timeout(120_000);

  it('parses every library loaded in this process like its file (/proc/self/mem)', () => {
    const maps = readMaps('self');
    const paths = [
      ...new Set(maps.filter((m) => m.offset === 0n && /\.so(\.|$)/.test(m.path)).map((m) => m.path)),
    ];
    assert.ok(
      paths.some((p) => p.endsWith('/libc.so.6')),
      'libc is loaded',
    );
    const mem = procMem('self');
    try {
      let relocatedSeen = 0;
      for (const p of paths) {
        const file = parseElf(readFileSync(p));
        const bias = biasOf(maps, p, file);
        const obj = parseElfFromMemory(mem.read, { bias });
        assertSameBuild(obj, file, p);
        // The raw DT_STRTAB in memory is absolute when ld.so relocated it: the reader had work to do.
        const dyn = file.programHeaders.find((x) => x.type === PT_DYNAMIC)!;
        const raw = mem.read(bias + dyn.vaddr, Number(dyn.memsz));
        for (let o = 0; o + 16 <= raw.length; o += 16) {
          if (
            raw.readBigInt64LE(o) === DT_STRTAB &&
            raw.readBigUInt64LE(o + 8) === bias + file.dynamic!.strtab!.addr
          )
            relocatedSeen++;
        }
      }
      assert.ok(paths.length >= 4, `${paths.length} libraries`);
      assert.equal(relocatedSeen, paths.length, 'every library has its DT_STRTAB relocated by ld.so');
    } finally {
      mem.close();
    }
  });

  it('parses the running node executable from memory (non-PIE here: bias 0, header at its link address)', () => {
    const maps = readMaps('self');
    const path = readlinkSync('/proc/self/exe');
    const file = parseElf(readFileSync(path), { expect: 'any' });
    const mem = procMem('self');
    try {
      const bias = biasOf(maps, path, file);
      const headerAddr = bias + (file.loadSegments[0]!.vaddr & ~0xfffn);
      const obj = parseElfFromMemory(mem.read, { bias, headerAddr, expect: 'any' });
      assertSameBuild(obj, file, path);
      assert.notEqual(obj.dynamic!.debug, 0n, 'ld.so filled DT_DEBUG with &r_debug');
      assert.throws(
        () => parseElfFromMemory(mem.read, { bias, headerAddr }),
        (e: unknown) => isUlpError(e) && e.code === 'ELF_NOT_SHARED_OBJECT',
      );
    } finally {
      mem.close();
    }
  });

  it('parses the vDSO, whose read-only dynamic section ld.so leaves unrelocated', function () {
    const maps = readMaps('self');
    const v = maps.find((m) => m.path === '[vdso]');
    if (!v) return this.skip();
    const mem = procMem('self');
    const dir = mkdtempSync(join(tmpdir(), 'ulp-vdso-'));
    try {
      const image = mem.read(v.start, Number(v.end - v.start));
      const file = parseElf(image);
      const obj = parseElfFromMemory(mem.read, { bias: v.start - (file.loadSegments[0]!.vaddr & ~0xfffn) });
      assertSameBuild(obj, file, 'vdso');
      assert.ok(obj.lookup('__vdso_clock_gettime', 'LINUX_2.6'));
      const dumped = join(dir, 'vdso.so');
      writeFileSync(dumped, image);
      assert.deepEqual(
        compareWithReadelf(file, readelfSync(dumped), { symbolDetails: true, relocDetails: true }),
        [],
      );
    } finally {
      mem.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reads a running non-PIE executable (bias 0, header at its link address) and a PIE, with their libraries', async () => {
    for (const name of ['exe-nopie', 'exe-pie']) {
      const f = fixture(name);
      const lib = fixture('full-relro').path;
      const child = spawn(f.path, ['wait'], {
        env: { ...process.env, LD_LIBRARY_PATH: join(lib, '..') },
        stdio: ['pipe', 'pipe', 'inherit'],
      });
      try {
        await new Promise<void>((resolve, reject) => {
          child.stdout.once('data', () => resolve());
          child.once('error', reject);
          child.once('exit', (c) => reject(new Error(`${name} exited with ${c}`)));
        });
        const maps = readMaps(child.pid!);
        const file = parseElf(readFileSync(f.path), { expect: 'any' });
        const mem = procMem(child.pid!);
        try {
          const bias = biasOf(maps, f.path, file);
          const headerAddr = bias + (file.loadSegments[0]!.vaddr & ~0xfffn);
          if (name === 'exe-nopie') assert.equal(bias, 0n);
          const obj = parseElfFromMemory(mem.read, { bias, headerAddr, expect: 'any' });
          assertSameBuild(obj, file, name);
          assert.ok(obj.dynamic!.debug! > 0n, 'DT_DEBUG points at r_debug');
          const libFile = parseElf(readFileSync(lib));
          assertSameBuild(
            parseElfFromMemory(mem.read, { bias: biasOf(maps, lib, libFile) }),
            libFile,
            `${name}: libbasic`,
          );
        } finally {
          mem.close();
        }
      } finally {
        child.kill();
      }
    }
  });

  it('agrees with the file on fixtures loaded at a simulated bias (RELR, TLS, versions, SysV hash only)', () => {
    for (const name of ['relr', 'tls-desc', 'versioned', 'sysv-hash', 'ifunc', 'partial-relro', 'no-relro']) {
      const buf = readFileSync(fixture(name).path);
      const file = parseElf(buf);
      for (const bias of [0n, 0x7f0000000000n, 0x555555554000n]) {
        const sim = simulateLoad(buf, bias);
        assertSameBuild(parseElfFromMemory(sim.read, { bias }), file, `${name} at 0x${bias.toString(16)}`);
      }
    }
  });

  it('reports unreadable memory and a wrong bias as UlpErrors', () => {
    const buf = readFileSync(fixture('full-relro').path);
    const sim = simulateLoad(buf, 0x7f0000000000n);
    const code = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        assert.ok(isUlpError(e), String(e));
        assert.ok(e.hint);
        return e.code;
      }
      return 'no error';
    };
    assert.equal(
      code(() => parseElfFromMemory(sim.read, { bias: 0x7e0000000000n })),
      'ELF_MEMORY_READ',
    );
    assert.equal(
      code(() => parseElfFromMemory(sim.read, { bias: 0x7f0000000000n, headerAddr: 0x7f0000001000n })),
      'ELF_NOT_ELF',
    );
    assert.equal(
      code(() => parseElfFromMemory(() => Buffer.alloc(3), { bias: 0x1000n })),
      'ELF_TRUNCATED',
    );
    // Headers readable, the rest of the object gone (unmapped while we read).
    const firstPage = (a: bigint, n: number) => {
      if (a + BigInt(n) > 0x7f0000001000n) throw new Error('EIO');
      return sim.read(a, n);
    };
    const obj = parseElfFromMemory(firstPage, { bias: 0x7f0000000000n, expect: 'any' });
    assert.equal(
      code(() => obj.dynamicSymbols),
      'ELF_MEMORY_READ',
    );
    assert.equal(
      code(() => obj.relocations),
      'ELF_MEMORY_READ',
    );
  });
});
