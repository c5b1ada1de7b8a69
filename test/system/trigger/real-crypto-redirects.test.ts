/**
 * Entry redirects on a real program and a real update: /usr/bin/python3
 * hashing with Debian's libcrypto 3.0.19 (from a private LD_LIBRARY_PATH
 * folder), patched to 3.0.20 and reverted. OpenSSL 3 keeps provider dispatch
 * pointers in heap objects made before the patch, so without redirects the
 * hashing thread keeps running 3.0.19's code. Checked: every digest stays
 * right throughout, and no sample of the threads' instruction pointers lies
 * inside a changed 3.0.19 function that has a jump (past its first byte);
 * the apply says "applied" only if nothing changed stays reachable, and
 * otherwise names each such function.
 */
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseElf, PF_X } from '../../../elf/index.js';
import { runCli } from '../../../lab/cli.js';
import { ok } from '../../../lab/hard-lab.js';
import { REAL, REAL_FILES, realBuild, realBuildsDir } from '../../../lab/real-builds.js';
import { realBundle } from '../../../lab/real-bundles.js';
import { startTarget, type Target } from '../../../lab/target.js';

const PYTHON = '/usr/bin/python3';

const SCRIPT = `
import hashlib, json, sys
data = bytes(range(256)) * 64
want = hashlib.sha256(data).hexdigest()
n = bad = 0
while True:
    for _ in range(200):
        if hashlib.sha256(data).hexdigest() != want:
            bad += 1
        n += 1
    print(json.dumps({"n": n, "bad": bad}), flush=True)
`;

interface Sample {
  rip: bigint;
}

/** Instruction pointers of every thread, `count` times, through the real ptrace path (the target is not our child). */
async function sampleRips(pid: number, count: number): Promise<Sample[]> {
  const { Session } = await import('../../../runtime/session.js');
  const out: Sample[] = [];
  for (let i = 0; i < count; i++) {
    const s = Session.open(pid);
    try {
      s.stopAll();
      for (const tid of s.tids()) out.push({ rip: s.regs(tid).rip });
      s.resume();
    } finally {
      s.detach();
    }
    await new Promise((r) => setTimeout(r, 5));
  }
  return out;
}

describe('entry redirects: python3 hashing with a real libcrypto update (3.0.19 -> 3.0.20)', function () {
  this.timeout(300_000);
  let dir: string | undefined;
  let work: string;
  let target: Target | undefined;
  before(function () {
    dir = realBuildsDir();
    if (!dir || !existsSync(PYTHON)) this.skip();
    work = mkdtempSync(join(tmpdir(), 'ulp-crypto-'));
  });
  after(() => {
    target?.dispose();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('runs 3.0.20 behind every pointer taken before the patch, and 3.0.19 again after the revert', async () => {
    const old = realBuild(dir!, REAL.ssl19, REAL_FILES.crypto);
    const fix = realBundle(dir!, REAL.ssl19, REAL.ssl20, REAL_FILES.crypto);
    copyFileSync(old, join(work, REAL_FILES.crypto));
    copyFileSync(realBuild(dir!, REAL.ssl19, REAL_FILES.ssl), join(work, REAL_FILES.ssl));
    const t = (target = startTarget([PYTHON, '-c', SCRIPT], { LD_LIBRARY_PATH: work }));
    await t.waitFor((o) => o.includes('"n"'), 60_000);
    const maps = readFileSync(`/proc/${t.pid}/maps`, 'utf8');
    assert.ok(
      maps.includes(join(work, REAL_FILES.crypto)),
      'python loaded the 3.0.19 build from the private folder',
    );
    const base = BigInt(
      '0x' +
        maps
          .split('\n')
          .find((l) => l.endsWith(join(work, REAL_FILES.crypto)) && / 00000000 /.test(l))!
          .split('-')[0],
    );

    const applied = ok(runCli('ulp-trigger', [String(t.pid), fix, '--json'])).json;
    const rd = applied.switch.redirects;
    assert.equal(applied.outcome, rd.uncovered.length ? 'applied-partly' : 'applied');
    assert.ok(rd.active >= 100, `jumps at the changed functions of 3.0.19: ${rd.active}`);
    // Every function the bundle calls changed but could not pair is named, with its reason.
    const manifest = runCli('ulp-pack', ['--inspect', fix, '--json']).json.manifest;
    const unpaired = manifest.forward.report.functions.unpaired as Array<{ start: string }>;
    const named = new Set(rd.uncovered.map((u: { fn: { start: string } }) => u.fn.start));
    for (const u of unpaired) assert.ok(named.has(u.start), `unpaired function at ${u.start} is reported`);

    // Ranges of the 3.0.19 functions that carry a jump, as runtime addresses.
    const status = ok(runCli('ulp-trigger', ['--status', String(t.pid), '--json'])).json;
    const lib = status.libraries.find((l: { soname: string }) => l.soname === 'libcrypto.so.3');
    assert.equal(lib.oldCode.redirected, rd.active);
    const pairs = manifest.forward.report.functions.pairs as Array<{ from: { start: string; end: string } }>;
    const jumped = pairs
      .map((p) => ({ start: base + BigInt(p.from.start), end: base + BigInt(p.from.end) }))
      .filter(
        (r) => !rd.uncovered.some((u: { fn: { start: string } }) => base + BigInt(u.fn.start) === r.start),
      );
    let mark = t.output().length;
    await t.waitFor((o) => o.slice(mark).includes('"n"'), 60_000);
    const samples = await sampleRips(t.pid, 60);
    const inside = samples.filter((s) => jumped.some((r) => s.rip > r.start + 4n && s.rip < r.end));
    const text = parseElf(readFileSync(old))
      .loadSegments.filter((p) => (p.flags & PF_X) !== 0)
      .map((p) => ({ start: base + p.vaddr, end: base + p.vaddr + p.memsz }));
    const inOldText = samples.filter((s) => text.some((r) => s.rip >= r.start && s.rip < r.end));
    const reachable = rd.uncovered.map((u: { fn: { start: string; end: string } }) => ({
      start: base + BigInt(u.fn.start),
      end: base + BigInt(u.fn.end),
    }));
    const inReachable = samples.filter((s) =>
      reachable.some((r: { start: bigint; end: bigint }) => s.rip >= r.start && s.rip < r.end),
    );
    console.log(
      `      ${samples.length} samples after the apply: ${inOldText.length} in 3.0.19's text, ${inReachable.length} of them in functions reported reachable, ${inside.length} inside a redirected function; ${rd.active} jumps, ${rd.uncovered.length} functions reported reachable`,
    );
    assert.equal(inside.length, 0, 'no thread runs a changed 3.0.19 function that has a jump');

    const reverted = ok(runCli('ulp-trigger', [String(t.pid), fix, '--revert', '--json'])).json;
    assert.ok(['reverted', 'reverted-partly'].includes(reverted.outcome), reverted.outcome);
    mark = t.output().length;
    const out = await t.waitFor((o) => (o.slice(mark).match(/"n"/g) ?? []).length >= 2, 60_000);
    const last = JSON.parse(out.trim().split('\n').at(-1)!);
    assert.equal(last.bad, 0, 'every digest was right, before, during and after');
    assert.ok(t.alive());
  });
});
