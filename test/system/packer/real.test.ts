/**
 * Real builds of real libraries: the system's libexpat and libz against
 * rebuilds of the same Debian sources with and without a visible code-only
 * change, and against Debian's own security update of expat. The builds come
 * from scripts/real-libs (docs/REAL-LIBRARIES.md); without network or tools
 * those scripts exit 77 and this suite is skipped with the reason printed.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { readBundleFile } from '../../../patches/index.js';
import { ROOT } from '../../../lab/cli.js';
import { codes, tempDir, ulpPack } from '../../../lab/packer/run.js';

type Products = Record<string, string>;

/** Runs a scripts/real-libs builder; undefined (and a visible message) when it cannot run here. */
function products(script: string): Products | undefined {
  const r = spawnSync(join(ROOT, 'scripts', 'real-libs', script), [], { encoding: 'utf8', cwd: ROOT });
  if (r.status === 77 || r.error) {
    console.log(`      SKIPPED: ${script}: ${r.error?.message ?? r.stderr.trim().split('\n').pop()}`);
    return undefined;
  }
  if (r.status !== 0) throw new Error(`${script} failed (${r.status}):\n${r.stderr}`);
  return Object.fromEntries(
    r.stdout
      .trim()
      .split('\n')
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 2, -1)]),
  );
}

const dir = tempDir();
after(() => dir.dispose());

/** Packs with --json; returns the run and the forward report. */
function pack(old: string, neu: string, out?: string) {
  const r = ulpPack([old, neu, ...(out ? ['-o', join(dir.path, out)] : ['--check']), '--json']);
  return { r, f: r.json?.forward };
}

describe('ulp-pack on real builds: libexpat (Debian 2.5.0-1+deb12u1)', function () {
  this.timeout(10 * 60_000);
  let p: Products;
  before(function () {
    const got = products('build-expat.sh');
    if (!got) this.skip();
    p = got!;
  });

  it('installed -> rebuild of the same source (same code, new build-id): a no-op update, bundle written', () => {
    const { r, f } = pack(p.EXPAT_INSTALLED!, p.EXPAT_REBUILD!, 'noop.ulp');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(f.verdict, 'unchanged');
    assert.deepEqual(codes(f), []);
    assert.equal(
      readBundleFile(join(dir.path, 'noop.ulp')).manifest.builds.new.buildId,
      p.EXPAT_REBUILD_BUILD_ID,
    );
  });

  it('installed -> visible change: compatible, exactly XML_ErrorString changed, the aliased sites listed', () => {
    const { r, f } = pack(p.EXPAT_INSTALLED!, p.EXPAT_VISIBLE!, 'visible.ulp');
    assert.equal(r.code, 0, r.stderr);
    assert.equal(f.verdict, 'compatible');
    assert.deepEqual(f.functions.changed, ['XML_ErrorString']);
    assert.deepEqual(f.functions.unnamedChanged, {
      from: { count: 0, bytes: 0 },
      to: { count: 0, bytes: 0 },
    });
    assert.deepEqual(codes(f), ['code:CODE_FUNCTION_CHANGED', 'ro:RO_SECTION_CHANGED']);
    const m = readBundleFile(join(dir.path, 'visible.ulp')).manifest;
    assert.equal(m.builds.old.buildId, p.EXPAT_INSTALLED_BUILD_ID);
    // docs/REAL-LIBRARIES.md: 0x2a000..0x2a080, 14 JUMP_SLOT (partial RELRO) + __dso_handle's RELATIVE.
    const w = m.forward.report.writable!;
    assert.deepEqual([w.start, w.end], ['0x2a000', '0x2b000']);
    assert.equal(w.sites.filter((s) => s.typeName === 'R_X86_64_JUMP_SLOT').length, 14);
    assert.equal(w.sites.length, 15);
  });

  it('the same change between the unstripped builds: named the same way', () => {
    const lib = (product: string) =>
      join(
        dirname(p[product]!),
        'work',
        product === 'EXPAT_REBUILD' ? 'rebuild' : 'visible',
        'build',
        'lib',
        '.libs',
        'libexpat.so.1.8.10',
      );
    if (!existsSync(lib('EXPAT_REBUILD'))) return;
    const { r, f } = pack(lib('EXPAT_REBUILD'), lib('EXPAT_VISIBLE'));
    assert.equal(r.code, 0, r.stderr);
    assert.equal(f.functions.named, true);
    assert.deepEqual(f.functions.changed, ['XML_ErrorString']);
  });

  it("installed -> Debian's own deb12u2 security update: refused, it adds global variables", () => {
    const { r, f } = pack(p.EXPAT_INSTALLED!, p.EXPAT_DEB12U2!, 'cve.ulp');
    assert.equal(r.code, 2, r.stderr);
    const found = codes(f);
    // CVE-2023-52425's backport: .data grows by a byte, .bss grows and moves, crtstuff's init code addresses the moved __TMC_END__.
    for (const c of [
      'data:DATA_SEGMENT_LAYOUT_CHANGED',
      'data:DATA_SECTIONS_CHANGED',
      'init:INIT_CODE_CHANGED',
      'api:API_EXPORT_ADDED',
    ])
      assert.ok(found.includes(c), `${c} in ${found.join(', ')}`);
    assert.deepEqual(f.exports.added, [{ name: 'XML_SetReparseDeferralEnabled' }]);
    assert.ok(!existsSync(join(dir.path, 'cve.ulp')));
  });
});

describe('ulp-pack on real builds: libz (Debian 1:1.2.13.dfsg-1)', function () {
  this.timeout(10 * 60_000);
  let p: Products;
  before(function () {
    const got = products('build-zlib.sh');
    if (!got) this.skip();
    p = got!;
  });

  it('installed -> rebuild: a no-op update', () => {
    const { r, f } = pack(p.ZLIB_INSTALLED!, p.ZLIB_REBUILD!);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(f.verdict, 'unchanged');
  });

  it('installed -> visible change: compatible, exactly inflate changed', () => {
    const { r, f } = pack(p.ZLIB_INSTALLED!, p.ZLIB_VISIBLE!, 'zlib.ulp');
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(f.functions.changed, ['inflate']);
    assert.equal(f.categories.data.verdict, 'unchanged');
    // libz is not linked -Bsymbolic: its own exports have .got.plt slots in the shared region (48 JUMP_SLOTs).
    assert.equal(
      f.writable.sites.filter((s: { typeName: string }) => s.typeName === 'R_X86_64_JUMP_SLOT').length,
      48,
    );
  });
});
