/**
 * ulp-pack's verdicts on unmodified Debian builds of real security updates
 * (../shared/real-builds, whose README says what is known about each): every
 * pair gets the verdict an expert gives it, for the reason the README gives.
 */
import assert from 'node:assert/strict';
import { REAL, REAL_FILES, realBuild, realBuildsDir } from '../../../lab/real-builds.js';
import { codes, ulpPack } from '../../../lab/packer/run.js';

interface Shift {
  function: string;
  register: string;
  from: string;
  to: string;
}

describe('ulp-pack on the real Debian builds', function () {
  this.timeout(10 * 60_000);
  let dir: string;
  before(function () {
    const d = realBuildsDir();
    if (!d) this.skip();
    dir = d!;
  });

  const pack = (from: string, to: string, file: string) => {
    const r = ulpPack([realBuild(dir, from, file), realBuild(dir, to, file), '--check', '--json']);
    return { r, f: r.json?.forward, b: r.json?.reverse };
  };
  const shiftsOf = (report: any): Shift[] =>
    report.categories.layout.findings.find((x: { code: string }) => x.code === 'LAYOUT_FIELD_MOVED')?.details
      .shifts ?? [];

  for (const [from, to, file] of [
    [REAL.ssl19, REAL.ssl20, REAL_FILES.crypto],
    [REAL.ssl19, REAL.ssl20, REAL_FILES.ssl],
  ] as const) {
    it(`${file} ${from} -> ${to}: compatible both ways, no layout evidence, the region in place`, () => {
      const { r, f, b } = pack(from, to, file);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.equal(f.verdict, 'compatible', codes(f).join(' '));
      assert.equal(f.categories.layout.verdict, 'unchanged', JSON.stringify(f.categories.layout));
      assert.equal(b.categories.layout.verdict, 'unchanged');
      assert.equal(f.categories.data.verdict, 'unchanged');
      assert.deepEqual(f.writable.to, { start: f.writable.start, end: f.writable.end });
    });
  }

  it('libcrypto 3.0.20 -> 3.0.22: compatible both ways; the region moved by 0x2000 is the only data finding, no init finding', () => {
    const { r, f, b } = pack(REAL.ssl20, REAL.ssl22, REAL_FILES.crypto);
    assert.equal(r.code, 0, r.stderr + r.stdout);
    for (const [report, from, to] of [
      [f, '0x482000', '0x484000'],
      [b, '0x484000', '0x482000'],
    ] as const) {
      assert.equal(report.verdict, 'compatible', codes(report).join(', '));
      assert.equal(report.categories.layout.verdict, 'unchanged', JSON.stringify(report.categories.layout));
      assert.deepEqual(
        codes(report).filter((c) => c.startsWith('data:') || c.startsWith('init:')),
        ['data:DATA_REGION_MOVED'],
      );
      const moved = report.categories.data.findings[0];
      assert.equal(moved.details.from.start, from);
      assert.equal(moved.details.to.start, to);
      assert.equal(report.writable.start, from);
      assert.equal(report.writable.to.start, to);
      // Every relocated word of the region pairs up by region offset.
      assert.ok(report.writable.sites.length > 400, `${report.writable.sites.length} sites`);
    }
  });

  it('libssl 3.0.20 -> 3.0.22: refused, struct ssl_st grew (SSL_get_max_early_data reads 0x1d40 -> 0x1d50)', () => {
    const { r, f } = pack(REAL.ssl20, REAL.ssl22, REAL_FILES.ssl);
    assert.equal(r.code, 2);
    assert.equal(f.categories.layout.verdict, 'incompatible');
    const shifts = shiftsOf(f);
    assert.deepEqual(
      shifts.filter((s) => s.function === 'SSL_get_max_early_data').map((s) => [s.register, s.from, s.to]),
      [['rdi', '0x1d40', '0x1d50']],
    );
    // Fields from about 0x1d10 on moved by 0x10, in many functions, exported ones among them.
    const ssl = shifts.filter(
      (s) => parseInt(s.from, 16) >= 0x1d00 && parseInt(s.to, 16) - parseInt(s.from, 16) === 0x10,
    );
    assert.ok(
      new Set(ssl.map((s) => s.function)).size >= 28,
      `${new Set(ssl.map((s) => s.function)).size} functions`,
    );
    assert.match(r.stdout, /SSL_get_max_early_data: 0x1d40\(%rdi\) -> 0x1d50\(%rdi\)|LAYOUT_FIELD_MOVED/);
  });

  it('libexpat deb12u2 -> deb12u5: refused for the larger parser struct (XML_GetBase 0x2d8 -> 0x2e0), not for its moved data', () => {
    const { r, f } = pack(REAL.expat2, REAL.expat5, REAL_FILES.expat);
    assert.equal(r.code, 2);
    assert.deepEqual(
      shiftsOf(f)
        .filter((s) => s.function === 'XML_GetBase')
        .map((s) => [s.from, s.to]),
      [['0x2d8', '0x2e0']],
    );
    // Its writable region also moved by 0x3000, which alone is no reason to refuse.
    assert.ok(codes(f).includes('data:DATA_REGION_MOVED'), codes(f).join(' '));
    const errors = Object.entries(f.categories).flatMap(([cat, c]) =>
      (c as { findings: Array<{ code: string; severity: string }> }).findings
        .filter((x) => x.severity === 'error')
        .map((x) => `${cat}:${x.code}`),
    );
    assert.deepEqual(
      errors.filter((c) => !c.startsWith('layout:')),
      [],
      `only the layout refuses: ${errors.join(', ')}`,
    );
  });

  it('libevent stable-8 -> deb12u1: refused, bufferevent_private grew by 0x60 (the DNS request stored at 0x210 -> 0x270)', () => {
    const { r, f } = pack(REAL.event8, REAL.event8u1, REAL_FILES.event);
    assert.equal(r.code, 2);
    assert.deepEqual(
      shiftsOf(f)
        .filter((s) => s.function === 'bufferevent_socket_connect_hostname')
        .map((s) => [s.register, s.from, s.to]),
      [['rbx', '0x210', '0x270']],
    );
    const sizes = f.categories.layout.findings.find(
      (x: { code: string }) => x.code === 'LAYOUT_SIZE_CHANGED',
    );
    assert.ok(
      sizes?.details.sizes.every((s: { from: number; to: number }) => s.to - s.from === 0x60),
      JSON.stringify(sizes),
    );
  });
});
