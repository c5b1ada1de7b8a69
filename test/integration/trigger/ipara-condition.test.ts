/**
 * The -fipa-ra condition (packer/code/ipara.ts) enforced on a real process.
 * libipara's g keeps values in call-clobbered registers across `call f`;
 * the update makes f write %rcx, which g kept (test/fixtures/ipara/libipara.c,
 * F_RCX) and changes g. A thread that is inside the old g at the switch
 * would reach the new f at its next call and loop on a clobbered counter:
 * the bundle names g in an "inactive" condition, and ulp-trigger refuses
 * while a thread is inside it (LOADER_FUNCTION_ACTIVE), leaving the process
 * as it was; with no thread inside, the update applies and reverts.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { BUILD } from '../../../lab/compile.js';
import { runCli } from '../../../lab/cli.js';
import { applyMappings } from '../../../lab/process-state.js';
import { ulpPack } from '../../../lab/packer/run.js';
import { startTarget, type Target } from '../../../lab/target.js';
import { linkedProgram, sharedLib } from '../../../lab/versioned.js';

const SONAME = 'libipara.so.1';

function libipara(defines: string[], out: string): string {
  return sharedLib({
    sources: ['ipara/libipara.c'],
    out,
    soname: SONAME,
    defines,
    flags: ['-Wl,--build-id'],
  });
}

describe('ulp-trigger and callers in flight that rely on -fipa-ra', function () {
  this.timeout(240_000);
  let bundle: string;
  let exe: string;
  let libDir: string;
  /** g(1000, 5, 9) as each build computes it, from a fresh process linked with it. */
  const expected: Record<'old' | 'new', string> = { old: '', new: '' };
  const targets: Target[] = [];

  async function start(dir: string, args: string[] = []): Promise<Target> {
    const t = startTarget([exe, ...args], { LD_LIBRARY_PATH: dir });
    targets.push(t);
    await t.waitFor((o) => /ready/.test(o));
    return t;
  }

  async function g(t: Target): Promise<string> {
    const mark = t.output().length;
    process.kill(t.pid, 'SIGUSR2');
    const out = await t.waitFor((o) => /g=-?\d+/.test(o.slice(mark)));
    return /g=(-?\d+)/.exec(out.slice(mark))![1]!;
  }

  before(async () => {
    const oldLib = libipara([], 'libipara-v1.so');
    const newLib = libipara(['-DF_RCX', '-DG_CHANGED'], 'libipara-rcx.so');
    bundle = join(BUILD, 'libipara-condition.ulp');
    const r = ulpPack([oldLib, newLib, '-o', bundle, '--json']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    exe = linkedProgram({
      sources: ['ipara/ipara_main.c'],
      out: 'ipara_main',
      against: { [SONAME]: oldLib },
      libs: ['-lpthread'],
    });
    libDir = join(BUILD, 'ipara-condition-lib');
    mkdirSync(libDir, { recursive: true });
    copyFileSync(oldLib, join(libDir, SONAME));
    const newDir = join(BUILD, 'ipara-condition-newlib');
    mkdirSync(newDir, { recursive: true });
    copyFileSync(newLib, join(newDir, SONAME));
    expected.old = await g(await start(libDir));
    expected.new = await g(await start(newDir));
    assert.notEqual(expected.old, expected.new, 'the update changes what g computes');
  });
  after(() => targets.forEach((t) => t.dispose()));

  it('the bundle names g in the apply condition, with the register and the call; the revert needs none', () => {
    const r = ulpPack(['--inspect', bundle, '--json']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.equal(r.json.manifest.format, '2.0.0');
    const conds = r.json.manifest.forward.report.conditions as Array<{
      functions: Array<{ name?: string }>;
      reason: string;
    }>;
    const c = conds.find((x) => /CODE_CALLERS_IN_FLIGHT/.test(x.reason))!;
    assert.deepEqual(
      c.functions.map((f) => f.name),
      ['g'],
    );
    assert.match(c.reason, /calls f at 0x[0-9a-f]+ with rcx/);
    // The new g was compiled knowing that f writes %rcx; the old f writes less: nothing to keep threads out of.
    assert.equal(r.json.manifest.reverse.report.conditions, undefined);
  });

  it('refuses while a thread is inside the old g, leaving the process as it was', async () => {
    const t = await start(libDir, ['inside']);
    const r = runCli('ulp-trigger', [String(t.pid), bundle, '--json']);
    assert.equal(r.code, 2, r.stdout + r.stderr);
    assert.equal(r.json?.error?.code, 'LOADER_FUNCTION_ACTIVE', r.stdout + r.stderr);
    assert.match(r.json.error.message, /is inside g/);
    assert.deepEqual(applyMappings(t.pid), [], 'nothing of the apply stays in the process');
    assert.equal(await g(t), expected.old, 'the main thread still computes with the old build');
    assert.ok(t.alive());
  });

  it('applies and reverts with no thread inside g; the results are each build’s own', async () => {
    const t = await start(libDir);
    const a = runCli('ulp-trigger', [String(t.pid), bundle, '--json']);
    assert.equal(a.code, 0, a.stdout + a.stderr);
    assert.deepEqual(a.json.switch.condition.inactive, ['g']);
    assert.equal(await g(t), expected.new);
    const v = runCli('ulp-trigger', [String(t.pid), bundle, '--revert', '--json']);
    assert.equal(v.code, 0, v.stdout + v.stderr);
    assert.equal(await g(t), expected.old);
    assert.ok(t.alive());
  });
});
