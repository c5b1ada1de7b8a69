/**
 * `ulp-trigger --all`: every process that has one of the bundle's builds
 * loaded is switched on its own, one failure does not stop the others, and
 * the exit code says that something failed.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cliArgs, ROOT, runCli } from '../../../lab/cli.js';
import { buildDemo, rounds, type Demo } from '../../../lab/demo.js';
import { startTarget, type Target } from '../../../lab/target.js';
import { NOBODY, runCliAs } from '../../../lab/other-user.js';

describe('ulp-trigger --all', function () {
  this.timeout(180_000);
  let demo: Demo;
  before(() => {
    // A tag of its own: no process of another test has these builds loaded.
    demo = buildDemo({ relro: 'full', tag: `all-${process.pid}-${Date.now()}` });
  });
  after(() => demo?.dispose());

  const versionNow = async (t: Target) => {
    const mark = t.output().length;
    return rounds((await t.waitFor((o) => rounds(o.slice(mark)).length >= 1)).slice(mark)).at(-1)!.version;
  };

  it('applies to every process with the old build, leaves others alone, and reverts them all', async () => {
    const fix = demo.pack(1, 2);
    const onV1 = [demo.start(1), demo.start(1), demo.start(1)];
    const onV2 = demo.start(2);
    const unrelated = startTarget(['sleep', '60']);
    try {
      for (const t of [...onV1, onV2]) await t.waitFor((o) => rounds(o).length >= 1);
      const r = runCli('ulp-trigger', ['--all', fix, '--json']);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      const byPid = new Map(r.json.processes.map((p: { pid: number }) => [p.pid, p]));
      assert.equal(byPid.size, 4, JSON.stringify(r.json.processes.map((p: { pid: number }) => p.pid)));
      for (const t of onV1) assert.equal((byPid.get(t.pid) as any).result.outcome, 'applied');
      assert.equal(
        (byPid.get(onV2.pid) as any).result.outcome,
        'runs-new-build',
        'loaded at start, never patched: not "already applied"',
      );
      assert.ok(!byPid.has(unrelated.pid));
      for (const t of [...onV1, onV2]) assert.equal(await versionNow(t), '2');
      assert.match(
        runCli('ulp-trigger', ['--all', fix]).stdout,
        /4 processes with libdemo.so.1 .* loaded: 4 ok, 0 failed/,
      );

      const back = runCli('ulp-trigger', ['--all', fix, '--revert', '--json']);
      assert.equal(back.code, 0, back.stdout + back.stderr);
      assert.ok(back.json.processes.every((p: any) => p.ok && p.result.outcome === 'reverted'));
      for (const t of [...onV1, onV2]) assert.equal(await versionNow(t), '1');
    } finally {
      unrelated.dispose();
    }
  });

  it('with --pid, looks only at the named processes: the others with the same build are left alone', async () => {
    const fix = demo.pack(1, 2);
    const [a, b, other] = [demo.start(1), demo.start(1), demo.start(1)];
    const unrelated = startTarget(['sleep', '60']);
    try {
      for (const t of [a, b, other]) await t.waitFor((o) => rounds(o).length >= 1);
      // A named process without the library is left out, as with --all alone.
      const r = runCli('ulp-trigger', [
        '--all',
        fix,
        '--pid',
        String(a.pid),
        '--pid',
        String(b.pid),
        '--pid',
        String(unrelated.pid),
        '--json',
      ]);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.deepEqual(r.json.processes.map((p: { pid: number }) => p.pid).sort(), [a.pid, b.pid].sort());
      assert.ok(r.json.processes.every((p: any) => p.ok && p.result.outcome === 'applied'));
      assert.equal(await versionNow(a), '2');
      assert.equal(await versionNow(b), '2');
      assert.equal(await versionNow(other), '1', 'not named: untouched');
      assert.equal(
        runCli('ulp-trigger', ['--status', String(other.pid), '--json']).json.libraries.length,
        0,
        'nothing of ulp in it',
      );

      const back = runCli('ulp-trigger', ['--all', fix, '--revert', '--pid', String(a.pid), '--json']);
      assert.equal(back.code, 0, back.stdout + back.stderr);
      assert.deepEqual(
        back.json.processes.map((p: any) => [p.pid, p.result.outcome]),
        [[a.pid, 'reverted']],
      );
      assert.equal(await versionNow(a), '1');
      assert.equal(await versionNow(b), '2');
    } finally {
      unrelated.dispose();
    }
  });

  it('refuses --pid without --all, and a --pid that is not a process id, touching nothing', async () => {
    const fix = demo.pack(1, 2);
    const t = demo.start(1);
    await t.waitFor((o) => rounds(o).length >= 1);
    for (const args of [
      [String(t.pid), fix, '--pid', String(t.pid)],
      ['--all', fix, '--pid', 'nginx'],
      ['--all', fix, '--pid', '0'],
      ['--status', String(t.pid), '--pid', String(t.pid)],
    ]) {
      const r = runCli('ulp-trigger', [...args, '--json']);
      assert.equal(r.code, 64, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
      assert.equal(r.json.error.code, 'TRIGGER_USAGE');
    }
    assert.equal(await versionNow(t), '1');
  });

  it('goes on past a process that fails and exits with that failure', async () => {
    const fix = demo.pack(1, 2);
    const [a, b] = [demo.start(1), demo.start(1)];
    for (const t of [a, b]) await t.waitFor((o) => rounds(o).length >= 1);
    // Another tracer holds `a`.
    const tracer = spawn(
      'python3',
      [
        '-c',
        `import ctypes,time\nlibc=ctypes.CDLL(None)\nlibc.ptrace(0x4206,${a.pid},0,0)\nprint(1,flush=True)\ntime.sleep(60)`,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    try {
      await new Promise<void>((resolve) => tracer.stdout!.once('data', () => resolve()));
      const r = runCli('ulp-trigger', ['--all', fix, '--json']);
      assert.equal(r.code, 4, r.stdout + r.stderr);
      const pa = r.json.processes.find((p: { pid: number }) => p.pid === a.pid);
      const pb = r.json.processes.find((p: { pid: number }) => p.pid === b.pid);
      assert.equal(pa.ok, false);
      assert.equal(pa.error.code, 'PROC_ALREADY_TRACED');
      assert.equal(pb.result.outcome, 'applied');
      assert.equal(await versionNow(a), '1');
      assert.equal(await versionNow(b), '2');
    } finally {
      tracer.kill('SIGKILL');
    }
  });

  it('leaves its own ancestors alone and lists them (the shell or automation that runs it)', async () => {
    const fix = demo.pack(1, 2);
    const t = demo.start(1);
    await t.waitFor((o) => rounds(o).length >= 1);
    // A shell that has the old build loaded runs the trigger (without passing the preload on to it).
    const quoted = [process.execPath, ...cliArgs('ulp-trigger', ['--all', fix, '--json'])]
      .map((a) => `'${a}'`)
      .join(' ');
    const r = spawnSync('sh', ['-c', `unset LD_PRELOAD; ${quoted}; echo "shell=$$"`], {
      cwd: ROOT,
      encoding: 'utf8',
      env: { ...process.env, LD_PRELOAD: demo.lib(1) },
    });
    const shell = Number(/shell=(\d+)/.exec(r.stdout)?.[1]);
    const json = JSON.parse(r.stdout.slice(0, r.stdout.lastIndexOf('shell=')));
    assert.deepEqual(json.skipped, [{ pid: shell, reason: 'ancestor' }], r.stdout + r.stderr);
    assert.ok(!json.processes.some((p: { pid: number }) => p.pid === shell));
    assert.equal(json.processes.find((p: { pid: number }) => p.pid === t.pid)?.result.outcome, 'applied');
    assert.equal(await versionNow(t), '2');
  });

  it('counts the processes it may not inspect instead of passing over them', async function () {
    if (process.getuid?.() !== 0) this.skip();
    const fix = demo.pack(1, 2);
    const t = demo.start(1); // root's: the unprivileged user may not read its maps
    await t.waitFor((o) => rounds(o).length >= 1);
    const pub = mkdtempSync(join(tmpdir(), 'ulp-nobody-'));
    chmodSync(pub, 0o1777);
    const bundle = join(pub, 'fix.ulp');
    copyFileSync(fix, bundle);
    chmodSync(bundle, 0o644);
    try {
      const r = runCliAs(NOBODY, 'ulp-trigger', ['--all', bundle, '--json'], pub);
      const json = JSON.parse(r.stdout);
      assert.ok(json.inaccessible >= 1, r.stdout + r.stderr);
      assert.deepEqual(json.processes, []);
      assert.equal(await versionNow(t), '1');
    } finally {
      rmSync(pub, { recursive: true, force: true });
    }
  });
});
