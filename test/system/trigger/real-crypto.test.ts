/**
 * A real security update whose writable region moved: Debian's libcrypto
 * 3.0.20 -> 3.0.22 (../shared/real-builds; the region moved from 0x482000
 * to 0x484000 with the same layout). A program built here hashes in a loop
 * with the 3.0.20 build, loaded from a private LD_LIBRARY_PATH folder (the
 * machine's own libcrypto is 3.0.19: patch by pid, never --all), and checks
 * every result against a known answer; it is patched and reverted while it
 * runs and must keep producing correct results on the live build.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli, type Run } from '../../../lab/cli.js';
import { compile } from '../../../lab/compile.js';
import { realBuild, realBuildsDir, REAL, REAL_FILES } from '../../../lab/real-builds.js';
import { realBundle } from '../../../lab/real-bundles.js';
import { startTarget, type Target } from '../../../lab/target.js';

const V20 = '30000140';
const V22 = '30000160';

function ok(r: Run): Run {
  assert.equal(r.code, 0, `exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r;
}

type Round = { round: number; version: string; ok: number; bad: number };

function rounds(out: string): Round[] {
  return out
    .split('\n')
    .map((l) => /^round=(\d+) version=([0-9a-f]+) ok=(\d+) bad=(\d+)$/.exec(l))
    .filter((m): m is RegExpExecArray => m !== null)
    .map((m) => ({ round: Number(m[1]), version: m[2]!, ok: Number(m[3]), bad: Number(m[4]) }));
}

/** At least `n` rounds after `mark`, all on `version`, all hashing right. */
async function hashes(t: Target, mark: number, version: string, n = 20): Promise<Round[]> {
  const rs = rounds((await t.waitFor((o) => rounds(o.slice(mark)).length >= n, 60_000)).slice(mark));
  for (const r of rs) assert.equal(r.version, version, `round ${r.round} runs OpenSSL ${r.version}`);
  const last = rs.at(-1)!;
  assert.equal(last.bad, 0, `${last.bad} rounds computed a wrong digest`);
  assert.equal(last.ok, last.round, 'every round so far checked out');
  return rs;
}

/** A partial outcome names every changed function still reachable in old code, with a reason; most entries are redirected. */
function assertExplained(report: {
  outcome: string;
  switch: { redirects: { active: number; uncovered: Array<{ reason: string }> } };
}): void {
  const { active, uncovered } = report.switch.redirects;
  assert.equal(report.outcome.endsWith('-partly'), uncovered.length > 0);
  for (const u of uncovered) assert.ok(u.reason.length > 10, JSON.stringify(u));
  assert.ok(active > uncovered.length * 10, `${active} jumps, ${uncovered.length} uncovered`);
}

describe('ulp-trigger on a real update whose writable region moved: libcrypto 3.0.20 -> 3.0.22', function () {
  this.timeout(10 * 60_000);
  let dir: string | undefined;
  let work: string;
  let fix: string;
  let exe: string;
  const targets: Target[] = [];
  before(function () {
    dir = realBuildsDir();
    if (!dir) return this.skip();
    work = mkdtempSync(join(tmpdir(), 'ulp-real-crypto-'));
    fix = realBundle(dir, REAL.ssl20, REAL.ssl22, REAL_FILES.crypto);
    exe = compile({
      sources: ['real-crypto/hash_loop.c'],
      out: 'hash_loop',
      flags: ['-O2'],
      libs: ['-lcrypto'],
    });
  });
  after(() => {
    for (const t of targets) t.dispose();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  /** A hashing program on its own copy of one build, from a private folder. */
  function start(version: string, folder: string): Target {
    const lib = join(work, folder);
    mkdirSync(lib);
    copyFileSync(realBuild(dir!, version, REAL_FILES.crypto), join(lib, REAL_FILES.crypto));
    const t = startTarget([exe], { LD_LIBRARY_PATH: lib });
    targets.push(t);
    return t;
  }

  it('patches a hashing program by pid, which keeps hashing right on 3.0.22, then reverts it to 3.0.20', async () => {
    const lib = join(work, 'lib');
    const t = start(REAL.ssl20, 'lib');
    await hashes(t, 0, V20, 5);
    assert.ok(
      readFileSync(`/proc/${t.pid}/maps`, 'utf8').includes(join(lib, REAL_FILES.crypto)),
      'the program runs the private 3.0.20 build, not the machine’s libcrypto',
    );

    const applied = ok(runCli('ulp-trigger', [String(t.pid), fix, '--json'])).json;
    // A real update leaves a few changed functions no jump can cover (no counterpart, a branch into the entry): named, not hidden.
    assert.match(applied.outcome, /^applied(-partly)?$/);
    assertExplained(applied);
    assert.equal(applied.switch.aliasedNow, true);
    let mark = t.output().length;
    await hashes(t, mark, V22);
    const st = ok(runCli('ulp-trigger', ['--status', String(t.pid), '--json'])).json;
    const crypto = st.libraries.find((l: { soname: string }) => l.soname === 'libcrypto.so.3');
    assert.ok(crypto.live.startsWith('4ca7b79d949e1c43'), `live build ${crypto.live}`);
    assert.equal(crypto.mixed, false);

    const reverted = ok(runCli('ulp-trigger', [String(t.pid), fix, '--revert', '--json'])).json;
    assert.match(reverted.outcome, /^reverted(-partly)?$/);
    assertExplained(reverted);
    mark = t.output().length;
    await hashes(t, mark, V20);
    assert.ok(t.alive());
  });

  it('reverts a program that started on 3.0.22 by staging 3.0.20, whose region lies two pages lower, and it keeps hashing right', async () => {
    const t = start(REAL.ssl22, 'lib22');
    await hashes(t, 0, V22, 5);
    const r = ok(runCli('ulp-trigger', [String(t.pid), fix, '--revert', '--json'])).json;
    assert.match(r.outcome, /^reverted(-partly)?$/);
    assertExplained(r);
    assert.equal(r.switch.staged, true);
    await hashes(t, t.output().length, V20);
    assert.ok(t.alive());
  });
});
