/**
 * Real OpenSSL updates in a real program: Debian's python3 hashing, computing
 * HMACs and completing TLS handshakes in a loop (test/fixtures/real/
 * openssl_loop.py, every result checked against a known answer), with the
 * unmodified Debian builds of ../shared/real-builds on a private
 * LD_LIBRARY_PATH. Every bundle ulp-pack writes from those builds is applied
 * by pid, stacked, reverted and applied again; the loop must never report a
 * wrong result, stop, or skip a round.
 */
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runCli } from '../../../lab/cli.js';
import { openSslRounds as rounds, PYTHON, startOpenSslLoop } from '../../../lab/openssl-loop.js';
import { REAL, REAL_FILES, realBuild, realBuildsDir } from '../../../lab/real-builds.js';
import { realBundle } from '../../../lab/real-bundles.js';
import type { Target } from '../../../lab/target.js';

describe('ulp-trigger: real OpenSSL updates in python3 doing hashes, HMACs and TLS handshakes', function () {
  this.timeout(10 * 60_000);
  let dir: string;
  let work: string;
  let target: Target | undefined;

  before(function () {
    const d = realBuildsDir();
    if (!d || !existsSync(PYTHON)) this.skip();
    dir = d!;
    work = mkdtempSync(join(tmpdir(), 'ulp-openssl-'));
    // The process loads 3.0.19 from a folder of its own: the machine's libraries stay out of it.
    for (const f of [REAL_FILES.crypto, REAL_FILES.ssl])
      copyFileSync(realBuild(dir, REAL.ssl19, f), join(work, f));
  });
  after(() => {
    target?.dispose();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  const pack = (from: string, to: string, file: string): string => realBundle(dir, from, to, file);
  const trigger = (args: string[]) => {
    const r = runCli('ulp-trigger', [String(target!.pid), ...args, '--json']);
    assert.equal(r.code, 0, `ulp-trigger ${args.join(' ')}: ${r.stdout}${r.stderr}`);
    return r.json;
  };
  /** Applied, or applied with the few changed functions no jump covers named with a reason (a real update has some). */
  const applied = (args: string[]) => {
    const j = trigger(args);
    assert.match(j.outcome, /^applied(-partly)?$/, JSON.stringify(j.outcome));
    for (const u of j.switch.redirects.uncovered) assert.ok(u.reason, JSON.stringify(u));
  };
  /** A few more rounds after the step, all correct. */
  const goesOn = async () => {
    const mark = target!.output().length;
    await target!.waitFor((o) => rounds(o.slice(mark)).length >= 5, 60_000);
    const bad = rounds(target!.output()).filter((r) => !r.ok);
    assert.deepEqual(bad, [], 'every round gave the known answers');
  };
  const mapped = () => readFileSync(`/proc/${target!.pid}/maps`, 'utf8');

  it('applies libcrypto and libssl 3.0.19 -> 3.0.20, then libcrypto 3.0.22 on top, reverts all and applies again', async () => {
    const crypto20 = pack(REAL.ssl19, REAL.ssl20, REAL_FILES.crypto);
    const ssl20 = pack(REAL.ssl19, REAL.ssl20, REAL_FILES.ssl);
    const crypto22 = pack(REAL.ssl20, REAL.ssl22, REAL_FILES.crypto);

    target = await startOpenSslLoop(work, work);
    assert.ok(mapped().includes(join(work, REAL_FILES.crypto)), 'python3 runs the private 3.0.19 build');

    applied([crypto20]);
    await goesOn();
    applied([ssl20]);
    await goesOn();
    applied([crypto22]); // a moved writable region stacks on 3.0.20
    await goesOn();

    trigger([crypto22, '--revert']);
    await goesOn();
    trigger([crypto20, '--revert']);
    trigger([ssl20, '--revert']);
    await goesOn();
    applied([crypto20]);
    await goesOn();

    const all = rounds(target.output());
    for (let i = 1; i < all.length; i++) assert.equal(all[i]!.round, all[i - 1]!.round + 1, 'no round lost');
    assert.ok(target.alive());
  });
});
