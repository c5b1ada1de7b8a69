/**
 * A bundle compatible on a condition (LAYOUT_STACK_CONFINED): libstack's
 * struct state gains a field in the middle, and lives only on stack_run's
 * stack (test/fixtures/layout/libstack.c). ulp-trigger must refuse while a
 * thread is inside stack_run (parked in a callback it made), with
 * LOADER_FUNCTION_ACTIVE naming the thread and the function, and leave the
 * process exactly as it was; with no thread inside, the patch applies, the
 * new code computes with the new layout, and the revert brings the old back.
 */
import assert from 'node:assert/strict';
import { closeSync, copyFileSync, mkdirSync, openSync, readFileSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { BUILD } from '../../../lab/compile.js';
import { runCli } from '../../../lab/cli.js';
import { applyMappings } from '../../../lab/process-state.js';
import { ulpPack } from '../../../lab/packer/run.js';
import { startTarget, type Target } from '../../../lab/target.js';
import { linkedProgram, sharedLib } from '../../../lab/versioned.js';

const SONAME = 'libstack.so.1';

function libstack(defines: string[], out: string): string {
  return sharedLib({
    sources: ['layout/libstack.c'],
    out,
    soname: SONAME,
    defines,
    flags: ['-s', '-Wl,--build-id'],
  });
}

/** The library's code as the process holds it: no byte of it may change on a refusal. */
function libraryCode(pid: number): Buffer {
  const parts: Buffer[] = [];
  for (const l of readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n')) {
    if (!l.includes(SONAME) || !/ r-xp /.test(l)) continue;
    const [lo, hi] = l
      .split(' ')[0]!
      .split('-')
      .map((x) => parseInt(x, 16));
    const fd = openSync(`/proc/${pid}/mem`, 'r');
    const b = Buffer.alloc(hi! - lo!);
    readSync(fd, b, 0, b.length, lo!);
    closeSync(fd);
    parts.push(b);
  }
  return Buffer.concat(parts);
}

describe('ulp-trigger and a bundle compatible while no thread is inside a creator', function () {
  this.timeout(240_000);
  let oldLib: string;
  let bundle: string;
  let exe: string;
  let libDir: string;
  const targets: Target[] = [];
  before(() => {
    oldLib = libstack([], 'libstack-base.so');
    const newLib = libstack(['-DGROWN', '-DFIX'], 'libstack-grown-fix.so');
    bundle = join(BUILD, 'libstack-stack-condition.ulp');
    const r = ulpPack([oldLib, newLib, '-o', bundle, '--json']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    exe = linkedProgram({
      sources: ['layout/stack_main.c'],
      out: 'stack_main',
      against: { [SONAME]: oldLib },
    });
    // The program finds libstack.so.1 through LD_LIBRARY_PATH: a folder holding the old build under its SONAME.
    libDir = join(BUILD, 'stack-condition-lib');
    mkdirSync(libDir, { recursive: true });
    copyFileSync(oldLib, join(libDir, SONAME));
  });
  after(() => targets.forEach((t) => t.dispose()));

  async function start(args: string[]): Promise<Target> {
    const t = startTarget([exe, ...args], { LD_LIBRARY_PATH: libDir });
    targets.push(t);
    await t.waitFor((o) => /ready first=33/.test(o));
    return t;
  }

  async function run(t: Target): Promise<string> {
    const mark = t.output().length;
    process.kill(t.pid, 'SIGUSR2');
    const out = await t.waitFor((o) => /run=\d+/.test(o.slice(mark)));
    return /run=(\d+)/.exec(out.slice(mark))![1]!;
  }

  it('the bundle carries the condition under format 2, naming stack_run', () => {
    const r = ulpPack(['--inspect', bundle, '--json']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.equal(r.json.manifest.format, '2.0.0', 'a trigger that reads only 1.x refuses it');
    const raw = JSON.stringify(r.json);
    assert.match(raw, /LAYOUT_STACK_CONFINED/);
    assert.match(raw, /stack_run/);
  });

  it('refuses while a thread is parked inside stack_run, leaving the process as it was; applies once it left', async () => {
    const t = await start(['park']);
    await t.waitFor((o) => /parked/.test(o));
    const codeBefore = libraryCode(t.pid);
    assert.ok(codeBefore.length > 0);
    const r = runCli('ulp-trigger', [String(t.pid), bundle, '--json']);
    assert.equal(r.code, 2, r.stdout + r.stderr);
    assert.equal(r.json?.error?.code, 'LOADER_FUNCTION_ACTIVE', r.stdout + r.stderr);
    assert.match(r.stdout + r.stderr, new RegExp(`thread ${t.pid} of process ${t.pid} is inside stack_run`));
    assert.deepEqual(applyMappings(t.pid), [], 'nothing of the apply stays in the process');
    assert.ok(libraryCode(t.pid).equals(codeBefore), 'no byte of the library changed (no entry redirect)');
    const st = runCli('ulp-trigger', ['--status', String(t.pid), '--json']);
    assert.doesNotMatch(JSON.stringify(st.json), /"applied"/, st.stdout);
    // The parked call finishes with the old layout, as it began.
    const mark = t.output().length;
    process.kill(t.pid, 'SIGUSR1');
    await t.waitFor((o) => /released result=33/.test(o.slice(mark)));
    assert.equal(await run(t), '33', 'still the old build');

    const a = runCli('ulp-trigger', [String(t.pid), bundle, '--json']);
    assert.equal(a.code, 0, a.stdout + a.stderr);
    assert.match(a.json.outcome, /^applied/);
    assert.equal(await run(t), '1033', 'the new build, with its own layout');
    const st2 = runCli('ulp-trigger', ['--status', String(t.pid), '--json']);
    assert.match(JSON.stringify(st2.json), /"applied"/, 'the status check above can see an apply');
    const v = runCli('ulp-trigger', [String(t.pid), bundle, '--revert', '--json']);
    assert.equal(v.code, 0, v.stdout + v.stderr);
    assert.equal(await run(t), '33', 'the old build again');
    assert.ok(t.alive());
  });

  it("refuses the revert while a thread is parked inside the new build's stack_run, and reverts once it left", async () => {
    const t = await start([]);
    const a = runCli('ulp-trigger', [String(t.pid), bundle, '--json']);
    assert.equal(a.code, 0, a.stdout + a.stderr);
    const mark = t.output().length;
    process.kill(t.pid, 'SIGHUP');
    await t.waitFor((o) => /parked/.test(o.slice(mark)));
    const v = runCli('ulp-trigger', [String(t.pid), bundle, '--revert', '--json']);
    assert.equal(v.code, 2, v.stdout + v.stderr);
    assert.equal(v.json?.error?.code, 'LOADER_FUNCTION_ACTIVE', v.stdout + v.stderr);
    assert.match(v.json.error.message, /is inside stack_run/);
    // Still the new build: the parked call ends with the new layout, as it began.
    const m2 = t.output().length;
    process.kill(t.pid, 'SIGUSR1');
    await t.waitFor((o) => /released result=1033/.test(o.slice(m2)));
    const again = runCli('ulp-trigger', [String(t.pid), bundle, '--revert', '--json']);
    assert.equal(again.code, 0, again.stdout + again.stderr);
    assert.equal(await run(t), '33');
    assert.ok(t.alive());
  });

  it('applies to a process with no thread inside stack_run, saying the condition held', async () => {
    const t = await start([]);
    const a = runCli('ulp-trigger', [String(t.pid), bundle, '--json']);
    assert.equal(a.code, 0, a.stdout + a.stderr);
    assert.deepEqual(a.json.switch.condition.inactive, ['stack_run']);
    const v = runCli('ulp-trigger', [String(t.pid), bundle, '--revert']);
    assert.equal(v.code, 0, v.stdout + v.stderr);
    assert.match(v.stdout, /condition held: no thread inside stack_run at the switch/);
    const again = runCli('ulp-trigger', [String(t.pid), bundle]);
    assert.equal(again.code, 0, again.stdout + again.stderr);
    assert.equal(await run(t), '1033');
    assert.ok(t.alive());
  });
});
