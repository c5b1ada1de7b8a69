/**
 * ulp-pack's verdicts on unmodified Debian builds of real security updates
 * (../shared/real-builds, whose README says what is known about each): every
 * pair gets the verdict an expert gives it, for the reason the README gives.
 */
import assert from 'node:assert/strict';
import { REAL, REAL_FILES, realBuild, realBuildsDir } from '../helpers/real-builds.js';
import { codes, ulpPack } from './run.js';

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
  const shiftsOf = (report: any): Shift[] => report.categories.layout.findings.find((x: { code: string }) => x.code === 'LAYOUT_FIELD_MOVED')?.details.shifts ?? [];

  for (const [from, to, file] of [
    [REAL.ssl19, REAL.ssl20, REAL_FILES.crypto],
    [REAL.ssl20, REAL.ssl22, REAL_FILES.crypto],
    [REAL.ssl19, REAL.ssl20, REAL_FILES.ssl],
  ] as const) {
    it(`${file} ${from} -> ${to}: compatible both ways, no layout evidence`, () => {
      const { r, f, b } = pack(from, to, file);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.equal(f.verdict, 'compatible', codes(f).join(' '));
      assert.equal(f.categories.layout.verdict, 'unchanged', JSON.stringify(f.categories.layout));
      assert.equal(b.categories.layout.verdict, 'unchanged');
    });
  }

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
    const ssl = shifts.filter((s) => parseInt(s.from, 16) >= 0x1d00 && parseInt(s.to, 16) - parseInt(s.from, 16) === 0x10);
    assert.ok(new Set(ssl.map((s) => s.function)).size >= 28, `${new Set(ssl.map((s) => s.function)).size} functions`);
    assert.match(r.stdout, /SSL_get_max_early_data: 0x1d40\(%rdi\) -> 0x1d50\(%rdi\)|LAYOUT_FIELD_MOVED/);
  });

  it('libexpat deb12u2 -> deb12u5: refused for the larger parser struct (XML_GetBase 0x2d8 -> 0x2e0), not for its moved data', () => {
    const { r, f } = pack(REAL.expat2, REAL.expat5, REAL_FILES.expat);
    assert.equal(r.code, 2);
    assert.deepEqual(
      shiftsOf(f).filter((s) => s.function === 'XML_GetBase').map((s) => [s.from, s.to]),
      [['0x2d8', '0x2e0']],
    );
    assert.ok(!codes(f).some((c) => c.startsWith('data:') && /REGION|SEGMENT|SECTIONS/.test(c)), codes(f).join(' '));
  });

  it('libevent stable-8 -> deb12u1: refused, bufferevent_private grew by 0x60 (the DNS request stored at 0x210 -> 0x270)', () => {
    const { r, f } = pack(REAL.event8, REAL.event8u1, REAL_FILES.event);
    assert.equal(r.code, 2);
    assert.deepEqual(
      shiftsOf(f).filter((s) => s.function === 'bufferevent_socket_connect_hostname').map((s) => [s.register, s.from, s.to]),
      [['rbx', '0x210', '0x270']],
    );
    const sizes = f.categories.layout.findings.find((x: { code: string }) => x.code === 'LAYOUT_SIZE_CHANGED');
    assert.ok(sizes?.details.sizes.every((s: { from: number; to: number }) => s.to - s.from === 0x60), JSON.stringify(sizes));
  });
});
