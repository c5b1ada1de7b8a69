/**
 * Issue 12's nginx evidence: Debian's nginx (master and workers) serving TLS
 * on loopback, with regex locations, under a verifying load while the real
 * pcre2 10.42-1 -> 10.42-1+deb12u2 and libcrypto and libssl 3.0.19 -> 3.0.20
 * bundles are applied with `ulp-trigger --all --pid` (the machine's own
 * processes map the same builds and are left alone), the patched master
 * re-forks its workers, and all three are reverted: zero failed requests
 * (lab/nginx/tls-scenario.ts).
 *
 * The pcre2 update changes the layout of the JIT compiler's per-call state
 * (`compiler_common` gained a field), which lives only on jit_compile's
 * stack: ulp-pack proves every shifted access reaches that frame and writes
 * a bundle compatible on the condition that no thread is inside jit_compile
 * at the switch (LAYOUT_STACK_CONFINED, docs/COMPATIBILITY.md), which the
 * trigger checks in every process.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runTlsScenario, type TlsBundle } from '../../../lab/nginx/tls-scenario.js';
import { NGINX } from '../../../lab/nginx/scenario.js';
import { ROOT, runCli } from '../../../lab/cli.js';
import { REAL, REAL_FILES, realBuild, realBuildsDir } from '../../../lab/real-builds.js';

const BUILD_ID = {
  crypto19: '30563306a0d30a4a',
  crypto20: '7d90f38412d00023',
  ssl19: 'c0b9959017cf64b0',
  ssl20: 'aa0eeee44fa27da2',
};
const PCRE2 = 'libpcre2-8.so.0';

describe('nginx over TLS under load while pcre2, libcrypto and libssl are applied with --all --pid, the master re-forks, and all is reverted', function () {
  this.timeout(15 * 60_000);
  let work: string;
  let real: string;
  let pcre2: Record<string, string>;

  before(function () {
    assert.ok(
      existsSync(NGINX),
      `${NGINX} is missing: npm test installs nginx-light as root (scripts/test-deps.sh)`,
    );
    assert.equal(
      process.getuid?.(),
      0,
      'nginx workers switch users and the trigger traces them: run the suite as root',
    );
    const d = realBuildsDir();
    if (!d) this.skip();
    real = d!;
    const r = spawnSync(join(ROOT, 'scripts/real-libs/fetch-pcre2.sh'), [], {
      encoding: 'utf8',
      timeout: 300_000,
    });
    if (r.status === 77 && !process.env.CI) {
      console.log(`      skipped: ${r.stderr.trim().split('\n').at(-1)}`);
      this.skip();
    }
    assert.equal(r.status, 0, r.stderr);
    pcre2 = Object.fromEntries(
      r.stdout
        .trim()
        .split('\n')
        .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 2, -1)]),
    );
    work = mkdtempSync(join(tmpdir(), 'ulp-nginx-tls-libs-'));
    // nginx's private library folder: the unmodified 3.0.19 builds and pcre2 10.42-1.
    copyFileSync(realBuild(real, REAL.ssl19, REAL_FILES.crypto), join(work, REAL_FILES.crypto));
    copyFileSync(realBuild(real, REAL.ssl19, REAL_FILES.ssl), join(work, REAL_FILES.ssl));
    copyFileSync(pcre2.PCRE2_OLD!, join(work, PCRE2));
  });
  after(() => {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('accepts the pcre2 update on the condition that no thread is inside jit_compile, both ways', () => {
    const out = join(work, 'pcre2.ulp');
    const r = runCli('ulp-pack', [pcre2.PCRE2_OLD!, pcre2.PCRE2_NEW!, '-o', out, '--json']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.equal(r.json.verdict, 'compatible');
    // jit_compile is static (unnamed in the stripped builds): pcre2_jit_compile_8 calls it, and its frame holds compiler_common.
    const creators = {
      forward: { start: '0x4e4b0', end: '0x51c18' },
      reverse: { start: '0x4e500', end: '0x51e35' },
    };
    for (const dir of ['forward', 'reverse'] as const) {
      const layout = r.json[dir].categories.layout;
      assert.equal(layout.verdict, 'compatible', JSON.stringify(layout.findings));
      const moved = layout.findings.find((f: { code: string }) => f.code === 'LAYOUT_FIELD_MOVED');
      // One field inserted: every shifted access moves by the same 4 bytes, from offset 0xc4 on.
      const shifts = moved.details.shifts as Array<{ from: string; to: string }>;
      assert.equal(shifts.length, 62, JSON.stringify(shifts));
      for (const s of shifts) {
        assert.equal(Math.abs(Number(s.to) - Number(s.from)), 4, JSON.stringify(s));
        assert.ok(Math.min(Number(s.from), Number(s.to)) >= 0xc4, JSON.stringify(s));
      }
      const confined = layout.findings.find((f: { code: string }) => f.code === 'LAYOUT_STACK_CONFINED');
      assert.ok(confined, JSON.stringify(layout.findings));
      assert.deepEqual(r.json[dir].conditions, [
        {
          kind: 'inactive',
          functions: [creators[dir]],
          reason: r.json[dir].conditions[0].reason,
        },
      ]);
    }
    assert.ok(existsSync(out));
    const inspected = runCli('ulp-pack', ['--inspect', out, '--json']);
    assert.equal(inspected.code, 0, inspected.stderr);
    assert.equal(inspected.json.manifest.format, '2.0.0');
  });

  it('serves every request correctly; the patched master forks workers that run the live builds', async () => {
    const pack = (file: string, name: string): string => {
      const out = join(work, name);
      const r = runCli('ulp-pack', [
        realBuild(real, REAL.ssl19, file),
        realBuild(real, REAL.ssl20, file),
        '-o',
        out,
      ]);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      return out;
    };
    const pcre2Bundle = join(work, 'pcre2.ulp');
    const packed = runCli('ulp-pack', [pcre2.PCRE2_OLD!, pcre2.PCRE2_NEW!, '-o', pcre2Bundle]);
    assert.equal(packed.code, 0, packed.stdout + packed.stderr);
    const bundles: TlsBundle[] = [
      {
        soname: PCRE2,
        path: pcre2Bundle,
        fromBuildId: pcre2.PCRE2_OLD_BUILD_ID!.slice(0, 16),
        toBuildId: pcre2.PCRE2_NEW_BUILD_ID!.slice(0, 16),
      },
      {
        soname: REAL_FILES.crypto,
        path: pack(REAL_FILES.crypto, 'crypto-19-20.ulp'),
        fromBuildId: BUILD_ID.crypto19,
        toBuildId: BUILD_ID.crypto20,
      },
      {
        soname: REAL_FILES.ssl,
        path: pack(REAL_FILES.ssl, 'ssl-19-20.ulp'),
        fromBuildId: BUILD_ID.ssl19,
        toBuildId: BUILD_ID.ssl20,
      },
    ];
    const lines: string[] = [];
    const r = await runTlsScenario({
      libDir: work,
      bundles,
      untouched: [],
      workers: 2,
      clients: 4,
      responsesPerPhase: 40,
      log: (l) => lines.push(l),
    });
    const why = `${lines.join('\n')}\n${JSON.stringify(r, null, 1)}`;
    if (process.env.ULP_NGINX_LOG) console.log(lines.join('\n'));
    assert.deepEqual(r.problems, [], why);
    assert.equal(r.requests.failed + r.requests.errors, 0, why);
    assert.ok(r.requests.tls12 > 0 && r.requests.tls13 > 0, why);
    assert.deepEqual(r.crashes, []);
    assert.equal(r.reloads, 2);

    // --all --pid found exactly this nginx's processes (master and the workers of the moment), each switched.
    assert.equal(r.triggers.length, 6);
    for (const t of r.triggers) {
      assert.equal(t.code, 0, why);
      assert.deepEqual(t.strangers, [], why);
      assert.equal(Object.keys(t.outcomes).length, 3, `master and 2 workers: ${JSON.stringify(t)}`);
      for (const o of Object.values(t.outcomes))
        assert.match(o, t.revert ? /^reverted(-partly)?$/ : /^applied(-partly)?$/, JSON.stringify(t));
    }

    const starts = (id: string | undefined, prefix: string) => id !== undefined && id.startsWith(prefix);
    const byWhen = (when: string) => r.checks.filter((c) => c.when === when);
    assert.equal(byWhen('before').length, 3);
    for (const when of ['applied', 'forked patched']) {
      for (const c of byWhen(when)) {
        for (const b of bundles)
          assert.ok(
            starts(c.live[b.soname], b.toBuildId),
            `${when}: ${c.role} ${c.pid} runs ${b.soname} ${c.live[b.soname]}`,
          );
        assert.ok(c.forkProtection, `${when}: ${c.role} ${c.pid} has no fork protection`);
      }
    }
    // The workers after the reload are new processes, forked by the patched master.
    const forked = byWhen('forked patched')
      .filter((c) => c.role === 'worker')
      .map((c) => c.pid);
    assert.equal(forked.length, 2);
    assert.ok(forked.every((p) => !byWhen('applied').some((c) => c.pid === p)));
    for (const when of ['reverted', 'forked reverted']) {
      for (const c of byWhen(when))
        for (const b of bundles)
          assert.ok(
            starts(c.live[b.soname], b.fromBuildId),
            `${when}: ${c.role} ${c.pid} runs ${b.soname} ${c.live[b.soname]}`,
          );
    }
  });
});
