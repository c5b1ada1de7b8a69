/**
 * The data-reference map (packer/code/datarefs.ts) on real gcc builds,
 * checked against binutils: every RIP-relative operand objdump shows
 * pointing into .data/.bss, every relocation readelf shows holding an
 * address there; the coverage proof on hand-written assembly in .text; the
 * real libcrypto 3.0.19 -> 3.0.20 pair; and the map's trip through a bundle.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { dataRefMap } from '../../../packer/code/datarefs.js';
import { loadBuild } from '../../../packer/pack.js';
import { analyzePair } from '../../../packer/analyze/index.js';
import { decodeLogOf, startDecodeLog } from '../../../packer/code/decode-log.js';
import {
  decodeBundle,
  decodeDataRefs,
  encodeBundle,
  encodeDataRefs,
  parseManifest,
  serializeManifest,
  type DataRefs,
} from '../../../patches/index.js';
import { compile } from '../../../lab/compile.js';
import { REAL, REAL_FILES, realBuildsDir } from '../../../lab/real-builds.js';
import { stripped } from '../../../lab/packer/fixtures.js';
import { tempDir, ulpPack } from '../../../lab/packer/run.js';

const RELRO = { full: ['-Wl,-z,relro,-z,now'], partial: ['-Wl,-z,relro,-z,lazy'] };

function libident(version: number, relro: 'full' | 'partial', extra: string[] = []): string {
  return compile({
    sources: ['datarefs/libident.c'],
    out: 'libident.so.1',
    flags: [
      '-shared',
      '-fPIC',
      '-O2',
      `-DVERSION=${version}`,
      '-Wl,-soname,libident.so.1',
      '-Wl,--build-id',
      ...RELRO[relro],
      '-pthread',
      ...extra,
    ],
  });
}

function libasm(version: number, stray: boolean): string {
  return compile({
    sources: ['datarefs/libasm.c'],
    out: 'libasm.so.1',
    flags: [
      '-shared',
      '-fPIC',
      '-O2',
      `-DVERSION=${version}`,
      ...(stray ? ['-DSTRAY'] : []),
      '-Wl,-soname,libasm.so.1',
      '-Wl,--build-id',
      ...RELRO.full,
    ],
  });
}

const mapOf = (path: string): DataRefs => {
  const m = dataRefMap(loadBuild('new', path));
  assert.ok(m, `${path} has a writable region`);
  return m;
};

/** `end:target` of every instruction objdump decodes whose RIP-relative operand points into [rs, re). */
function objdumpRefs(path: string, rs: number, re: number): string[] {
  const text = execFileSync('objdump', ['-d', '--insn-width=16', path], {
    encoding: 'utf8',
    maxBuffer: 1 << 30,
  });
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*([0-9a-f]+):\t((?:[0-9a-f]{2} )+)\s*\t.*\(%rip\).*# ([0-9a-f]+)/.exec(line);
    if (!m) continue;
    const target = parseInt(m[3]!, 16);
    if (target < rs || target >= re) continue;
    out.push(`${(parseInt(m[1]!, 16) + m[2]!.trim().split(' ').length).toString(16)}:${target.toString(16)}`);
  }
  return out.sort();
}

const mapRefs = (m: DataRefs) =>
  m.code.map((r) => `${r.end.toString(16)}:${(m.region.start + r.offset).toString(16)}`).sort();

/** `site:target` of the relocations readelf lists outside [rs, re) whose value lies inside it. */
function readelfWords(path: string, rs: number, re: number): string[] {
  const out: string[] = [];
  for (const line of execFileSync('readelf', ['-rW', path], { encoding: 'utf8', maxBuffer: 1 << 30 }).split(
    '\n',
  )) {
    const rel = /^([0-9a-f]{16})\s+[0-9a-f]+\s+R_X86_64_RELATIVE\s+([0-9a-f]+)$/.exec(line.trim());
    const sym =
      /^([0-9a-f]{16})\s+[0-9a-f]+\s+R_X86_64_(?:GLOB_DAT|64)\s+([0-9a-f]{16})\s+\S+ \+ ([0-9a-f]+)$/.exec(
        line.trim(),
      );
    const site = rel ? parseInt(rel[1]!, 16) : sym ? parseInt(sym[1]!, 16) : undefined;
    const value = rel
      ? parseInt(rel[2]!, 16)
      : sym && parseInt(sym[2]!, 16) !== 0
        ? parseInt(sym[2]!, 16) + (line.includes('R_X86_64_64') ? parseInt(sym[3]!, 16) : 0)
        : undefined;
    if (site === undefined || value === undefined) continue;
    if (value >= rs && value < re && (site < rs || site >= re))
      out.push(`${site.toString(16)}:${value.toString(16)}`);
  }
  return out.sort();
}

const mapWords = (m: DataRefs) =>
  m.words.map((w) => `${w.site.toString(16)}:${(m.region.start + w.offset).toString(16)}`).sort();

function assertProven(m: DataRefs): void {
  const c = m.coverage;
  assert.deepEqual(c.uncovered, []);
  assert.equal(
    c.decoded + c.padding + c.scanned + c.tables,
    c.executable,
    'every executable byte is accounted for exactly once',
  );
}

describe('data-reference map', function () {
  this.timeout(120_000);

  for (const relro of ['full', 'partial'] as const) {
    it(`lists every RIP-relative operand into .data/.bss that objdump shows (gcc -O2, ${relro} RELRO, with and without .symtab)`, () => {
      const lib = libident(1, relro);
      for (const path of [lib, stripped(lib)]) {
        const m = mapOf(path);
        const expected = objdumpRefs(path, m.region.start, m.region.end);
        assert.ok(
          expected.length >= 10,
          `the fixture has RIP-relative references into its data (${expected.length})`,
        );
        assert.deepEqual(mapRefs(m), expected);
        assertProven(m);
      }
    });
  }

  it('partial RELRO: every .got.plt slot in the region is in the map, through the PLT jump that reads it', () => {
    const path = libident(1, 'partial');
    const m = mapOf(path);
    const b = loadBuild('new', path);
    const plt = b.obj.sections.find((s) => s.name === '.plt')!;
    const slots = b.obj.relocations.filter(
      (r) =>
        r.type === 7 /* JUMP_SLOT */ && Number(r.offset) >= m.region.start && Number(r.offset) < m.region.end,
    );
    assert.ok(slots.length >= 2, 'pthread_mutex_lock and _unlock have lazy slots in the region');
    for (const r of slots) {
      const ref = m.code.find((c) => c.offset === Number(r.offset) - m.region.start);
      assert.ok(
        ref && ref.site >= Number(plt.addr) && ref.site < Number(plt.addr + plt.size),
        `slot 0x${r.offset.toString(16)}`,
      );
    }
  });

  it('lists the relocated words outside the region that hold addresses inside it (readelf -r), and counts the ones inside', () => {
    const path = libident(1, 'full');
    const m = mapOf(path);
    const expected = readelfWords(path, m.region.start, m.region.end);
    assert.equal(
      expected.length,
      2,
      'ident_exported through its GOT slot, ident_counter_ref in .data.rel.ro',
    );
    assert.deepEqual(mapWords(m), expected);
    assert.ok(
      m.sharedWords >= 3,
      'the list sentinel {&head, &head} and __dso_handle are relocated inside the region',
    );
  });

  it('accounts for a table in .text that the code addresses with lea, and says where the proof fails for bytes nothing reaches', () => {
    const clean = mapOf(libasm(1, false));
    assertProven(clean);
    assert.ok(clean.coverage.tables >= 12, 'asm_table is accounted for as a table');
    assert.ok(clean.coverage.accounted.some((r) => /table inside the code/.test(r.reason)));

    const path = libasm(1, true);
    const m = mapOf(path);
    assert.equal(m.coverage.uncovered.length, 1, JSON.stringify(m.coverage.uncovered));
    const u = m.coverage.uncovered[0]!;
    const stray = parseInt(
      execFileSync('sh', ['-c', `nm ${path} | awk '$3 == "asm_stray" { print $1 }'`], {
        encoding: 'utf8',
      }).trim(),
      16,
    );
    assert.ok(
      u.start <= stray && stray + 8 <= u.end,
      `the uncovered range [0x${u.start.toString(16)}, 0x${u.end.toString(16)}) holds asm_stray at 0x${stray.toString(16)}`,
    );
    assert.match(u.reason, /would point into the writable region/);
    // The references the C code and asm_table_sum make are still all there.
    assert.equal(m.code.length, clean.code.length);
  });

  it("ulp-pack records both builds' maps; a bundle reads back to the same maps, deterministically", () => {
    const dir = tempDir();
    try {
      const out = join(dir.path, 'fix.ulp');
      const r = ulpPack([
        libident(1, 'full'),
        libident(2, 'full'),
        '-o',
        out,
        '--created-at',
        '2025-01-01T00:00:00Z',
      ]);
      assert.equal(r.code, 0, r.stderr);
      const b = decodeBundle(execFileSync('cat', [out], { maxBuffer: 1 << 30 }) as Buffer);
      assert.equal(b.manifest.format, '1.1.0');
      const stored = b.manifest.datarefs!;
      assert.deepEqual(decodeDataRefs(stored.new!), mapOf(libident(2, 'full')));
      assert.deepEqual(decodeDataRefs(stored.old!), mapOf(libident(1, 'full')));
      assert.equal(stored.new!.coverage.proven, true);
      // Old bundles (format 1.0, no map) still read; a damaged list is refused.
      const old = { ...b.manifest, format: '1.0.0' } as typeof b.manifest;
      delete old.datarefs;
      assert.equal(parseManifest(serializeManifest(old)).datarefs, undefined);
      assert.ok(decodeBundle(encodeBundle({ manifest: old, oldBuild: b.oldBuild, newBuild: b.newBuild })));
      const bad = structuredClone(stored.new!);
      bad.code.packed = bad.code.packed.slice(0, -8);
      assert.throws(
        () => decodeDataRefs(bad),
        (e: { code?: string }) => e.code === 'BUNDLE_MANIFEST_INVALID',
      );
      const lying = structuredClone(stored.new!);
      lying.coverage.proven = false;
      assert.throws(
        () => parseManifest(serializeManifest({ ...b.manifest, datarefs: { old: stored.old, new: lying } })),
        (e: { code?: string }) => e.code === 'BUNDLE_MANIFEST_INVALID',
      );
      const again = join(dir.path, 'again.ulp');
      assert.equal(
        ulpPack([
          libident(1, 'full'),
          libident(2, 'full'),
          '-o',
          again,
          '--created-at',
          '2025-01-01T00:00:00Z',
        ]).code,
        0,
      );
      assert.ok(execFileSync('cmp', [out, again]) !== undefined, 'same inputs, same bytes');
    } finally {
      dir.dispose();
    }
  });

  it('encodes sites compactly: a few bytes each', () => {
    const m = mapOf(libident(1, 'full'));
    const s = encodeDataRefs(m);
    assert.ok(Buffer.from(s.code.packed, 'base64').length <= m.code.length * 6);
  });

  describe('real libcrypto 3.0.19 -> 3.0.20 (Debian bookworm, stripped)', () => {
    const dir = realBuildsDir();
    const paths = dir ? [REAL.ssl19, REAL.ssl20].map((v) => join(dir, v, REAL_FILES.crypto)) : [];
    before(function () {
      if (!dir) this.skip();
    });

    it('covers every byte of its code: decoded, padding, or the constant tables its assembly keeps in .text', () => {
      for (const path of paths) {
        const m = mapOf(path);
        assertProven(m);
        // Measured: 1215 RIP-relative operands into .data/.bss in both builds, the same list objdump finds.
        assert.deepEqual(mapRefs(m), objdumpRefs(path, m.region.start, m.region.end));
        assert.equal(m.code.length, 1215);
        assert.deepEqual(mapWords(m), readelfWords(path, m.region.start, m.region.end));
        // The tables: Camellia's S-boxes and the P-256 precomputed table (0x25000 bytes), among others.
        const tables = m.coverage.accounted.filter((r) => /table inside the code/.test(r.reason));
        assert.ok(
          tables.some((r) => r.end - r.start >= 0x25000),
          'the P-256 table',
        );
        assert.ok(m.coverage.tables >= 0x25000 && m.coverage.decoded > 0.85 * m.coverage.executable);
        console.log(
          `      ${path.split('/').at(-2)}: ${m.code.length} code references, ${m.words.length} words; ${m.coverage.decoded} bytes decoded, ${m.coverage.padding} padding, ${m.coverage.scanned} scanned, ${m.coverage.tables} in ${tables.length} tables`,
        );
      }
    });

    it("replayed from the code comparison's decoding (as -o makes it), each map is the decoded one", () => {
      const [old, neu] = paths.map((p, i) => loadBuild(i === 0 ? 'old' : 'new', p));
      for (const b of [old!, neu!]) startDecodeLog(b);
      analyzePair(old!, neu!, () => {});
      for (const [b, path] of [
        [old!, paths[0]!],
        [neu!, paths[1]!],
      ] as const) {
        const log = decodeLogOf(b)!;
        const fns = b.functions();
        const replayed = fns.filter((f) => log.replay(f.start, f.end)).length;
        // Measured: 10374 of 10911 functions (the others are cleared without a digest).
        assert.ok(replayed > 0.9 * fns.length, `${replayed} of ${fns.length} functions logged`);
        assert.deepEqual(dataRefMap(b), mapOf(path));
      }
    });
  });
});
