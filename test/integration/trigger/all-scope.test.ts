/**
 * `ulp-trigger --all` scoped by `--exclude`, `--user`, `--comm` and `--unit`,
 * `--all --dry-run`'s list of matches, and the exit code of a run that could
 * not inspect every process. Real processes of a demo library built for this
 * file alone (no other test's process has its builds), so the machine's own
 * processes are never touched.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  rmdirSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cliArgs, ROOT, runCli } from '../../../lab/cli.js';
import { buildDemo, rounds, type Demo } from '../../../lab/demo.js';
import type { Target } from '../../../lab/target.js';

const SYSTEMD_CGROUP = '/sys/fs/cgroup/systemd';
const isRoot = process.getuid?.() === 0;

describe('ulp-trigger --all scoped', function () {
  this.timeout(240_000);
  const tag = `scope-${process.pid}-${Date.now()}`;
  let demo: Demo;
  let dir: string;
  before(() => {
    demo = buildDemo({ relro: 'full', tag });
    dir = mkdtempSync(join(tmpdir(), 'ulp-scope-'));
    chmodSync(dir, 0o755);
  });
  after(() => {
    demo?.dispose();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const versionNow = async (t: Target) => {
    const mark = t.output().length;
    return rounds((await t.waitFor((o) => rounds(o.slice(mark)).length >= 1)).slice(mark)).at(-1)!.version;
  };
  /** The demo program under another name: its command name (/proc/PID/comm) is that name. */
  const startNamed = (name: string, version: number): Target => {
    const exe = join(dir, name);
    if (!existsSync(exe)) copyFileSync(demo.exe, exe);
    return demo.startWith(version, () => [exe]);
  };
  const pidsOf = (list: Array<{ pid: number }>) => list.map((p) => p.pid).sort((a, b) => a - b);

  describe('usage', () => {
    for (const [args, what] of [
      [['1', 'x.ulp', '--exclude', '2'], /--exclude .*without --all/],
      [['1', 'x.ulp', '--user', 'root'], /--user .*without --all/],
      [['1', 'x.ulp', '--comm', 'nginx'], /--comm .*without --all/],
      [['1', 'x.ulp', '--unit', 'nginx'], /--unit .*without --all/],
      [['1', 'x.ulp', '--allow-partial'], /--allow-partial goes with --all/],
      [['--all', 'x.ulp', '--exclude', 'two'], /"two" is not a process id/],
      [['--all', 'x.ulp', '--comm', 'a-name-of-sixteen'], /can never match/],
      [['--all', 'x.ulp', '--user', `no-such-user-${process.pid}`], /no such user/],
      [['--all', 'x.ulp', '--unit', 'a/b'], /not a systemd unit name/],
    ] as Array<[string[], RegExp]>) {
      it(`${args.join(' ')}: TRIGGER_USAGE, exit 64, nothing printed on stdout`, () => {
        const r = runCli('ulp-trigger', args);
        assert.equal(r.code, 64, r.stdout + r.stderr);
        assert.match(r.stderr, /\[TRIGGER_USAGE\]/);
        assert.match(r.stderr, what);
        assert.equal(r.stdout, '');
      });
    }
  });

  it('ANDs the filters and ORs the values of one: only the processes in scope are patched', async function () {
    if (!isRoot) this.skip(); // the processes are started as this user; --user 0 must name them
    const fix = demo.pack(1, 2);
    const a = demo.start(1);
    const b = startNamed('ulpscope-b', 1);
    const c = demo.start(1);
    const d = startNamed('ulpscope-d', 1);
    for (const t of [a, b, c, d]) await t.waitFor((o) => rounds(o).length >= 1);

    const nobody = runCli('ulp-trigger', [
      '--all',
      fix,
      '--json',
      '--user',
      '65534',
      '--comm',
      'demo_main',
      '--comm',
      'ulpscope-b',
    ]);
    assert.equal(nobody.code, 0, nobody.stdout + nobody.stderr);
    assert.deepEqual(nobody.json.matches, [], "every process here is root's");
    assert.deepEqual(nobody.json.processes, []);

    // a is excluded, d has another name: b (by name) and c (demo_main) are left.
    const r = runCli('ulp-trigger', [
      '--all',
      fix,
      '--json',
      '--exclude',
      String(a.pid),
      '--user',
      'root',
      '--user',
      '0',
      '--comm',
      'demo_main',
      '--comm',
      'ulpscope-b',
    ]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.deepEqual(pidsOf(r.json.processes), pidsOf([b, c]));
    assert.ok(
      r.json.processes.every((p: any) => p.ok && p.result.outcome === 'applied'),
      r.stdout,
    );
    assert.deepEqual(pidsOf(r.json.matches), pidsOf([b, c]));
    for (const t of [b, c]) assert.equal(await versionNow(t), '2');
    for (const t of [a, d]) assert.equal(await versionNow(t), '1', `${t.pid} is out of scope and untouched`);
  });

  it('--all --dry-run lists the matches from /proc (pid, comm, user, unit, build), then dry-runs each; nothing changes', async function () {
    if (!isRoot) this.skip();
    const fix = demo.pack(1, 2);
    const t = startNamed('ulpscope-dry', 1);
    const other = startNamed('ulpscope-dry2', 2);
    for (const x of [t, other]) await x.waitFor((o) => rounds(o).length >= 1);

    const j = runCli('ulp-trigger', [
      '--all',
      fix,
      '--dry-run',
      '--json',
      '--comm',
      'ulpscope-dry',
      '--comm',
      'ulpscope-dry2',
    ]);
    assert.equal(j.code, 0, j.stdout + j.stderr);
    const byPid = new Map(j.json.matches.map((m: any) => [m.pid, m]));
    const mine = byPid.get(t.pid) as any;
    assert.equal(mine.comm, 'ulpscope-dry');
    assert.equal(mine.uid, 0);
    assert.equal(mine.user, 'root');
    assert.equal(mine.build, 'old');
    assert.equal(mine.buildId, j.json.fromBuildId);
    const v2 = byPid.get(other.pid) as any;
    assert.equal(v2.build, 'new');
    assert.equal(v2.buildId, j.json.toBuildId);
    assert.deepEqual(pidsOf(j.json.matches), pidsOf([t, other]));
    const outcomes = new Map(j.json.processes.map((p: any) => [p.pid, p.ok && p.result.outcome]));
    assert.equal(outcomes.get(t.pid), 'dry-run');
    assert.equal(outcomes.get(other.pid), 'runs-new-build');

    const text = runCli('ulp-trigger', ['--all', fix, '--dry-run', '--comm', 'ulpscope-dry']);
    assert.equal(text.code, 0, text.stdout + text.stderr);
    assert.match(
      text.stdout,
      new RegExp(
        `1 process found \\(from /proc, none attached to yet\\):\\n\\s+${t.pid}\\s+ulpscope-dry\\s+root\\s+\\S+\\s+old build ${j.json.fromBuildId.slice(0, 8)}`,
      ),
    );
    assert.match(text.stdout, new RegExp(`\\n\\s+${t.pid}\\s+dry-run`));
    assert.equal(await versionNow(t), '1');
    assert.equal(await versionNow(other), '2');
  });

  it('--unit finds the process by the systemd unit of its cgroup, with or without ".service"', async function () {
    if (!isRoot || !existsSync(join(SYSTEMD_CGROUP, 'cgroup.procs'))) this.skip(); // needs a writable name=systemd hierarchy
    const unit = `ulpscope-${process.pid}`;
    const cg = join(SYSTEMD_CGROUP, `${unit}.service`);
    try {
      mkdirSync(cg);
    } catch {
      this.skip();
    }
    const fix = demo.pack(1, 2);
    const inUnit = demo.start(1);
    const outside = demo.start(1);
    try {
      for (const t of [inUnit, outside]) await t.waitFor((o) => rounds(o).length >= 1);
      writeFileSync(join(cg, 'cgroup.procs'), String(inUnit.pid));
      const dry = runCli('ulp-trigger', ['--all', fix, '--dry-run', '--json', '--unit', unit]);
      assert.equal(dry.code, 0, dry.stdout + dry.stderr);
      assert.deepEqual(
        dry.json.matches.map((m: any) => [m.pid, m.unit]),
        [[inUnit.pid, `${unit}.service`]],
      );
      const r = runCli('ulp-trigger', [
        '--all',
        fix,
        '--json',
        '--unit',
        `${unit}.service`,
        '--unit',
        'no-such-unit',
      ]);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.deepEqual(pidsOf(r.json.processes), [inUnit.pid]);
      assert.equal(await versionNow(inUnit), '2');
      assert.equal(await versionNow(outside), '1');
    } finally {
      try {
        writeFileSync(join(SYSTEMD_CGROUP, 'cgroup.procs'), String(inUnit.pid));
      } catch {
        // it exited
      }
      inUnit.dispose();
      outside.dispose();
      rmdirSync(cg);
    }
  });

  it('not as root: processes it may not inspect end the run with TRIGGER_PARTIAL_SCAN (exit 9) unless --allow-partial or a scope leaves them out', async function () {
    if (!isRoot) this.skip(); // needs a process of another user than the unprivileged one the trigger runs as
    const fix = demo.pack(1, 2);
    const t = startNamed('ulpscope-root', 1); // root's: the unprivileged user may not read its maps
    await t.waitFor((o) => rounds(o).length >= 1);
    const bundle = join(dir, 'fix.ulp');
    copyFileSync(fix, bundle);
    chmodSync(bundle, 0o644);
    const home = mkdtempSync(join(tmpdir(), 'ulp-nobody-'));
    chmodSync(home, 0o1777);
    const asNobody = (args: string[]) => {
      const r = spawnSync(
        'setpriv',
        [
          '--reuid=65534',
          '--regid=65534',
          '--clear-groups',
          process.execPath,
          ...cliArgs('ulp-trigger', ['--all', bundle, ...args]),
        ],
        {
          cwd: ROOT,
          encoding: 'utf8',
          env: { ...process.env, HOME: home, TMPDIR: home },
        },
      );
      return { code: r.status, stdout: r.stdout, stderr: r.stderr };
    };
    try {
      const json = asNobody(['--json', '--comm', 'ulpscope-root']);
      assert.equal(json.code, 9, json.stdout + json.stderr);
      const doc = JSON.parse(json.stdout);
      assert.equal(doc.inaccessible, 1);
      assert.deepEqual(doc.processes, []);

      const text = asNobody(['--comm', 'ulpscope-root']);
      assert.equal(text.code, 9, text.stdout + text.stderr);
      assert.match(text.stdout, /1 process could not be inspected/);
      assert.match(text.stderr, /error \[TRIGGER_PARTIAL_SCAN\]: 1 process in scope could not be inspected/);
      assert.match(text.stderr, /hint: .*--allow-partial/);

      const allowed = asNobody(['--json', '--comm', 'ulpscope-root', '--allow-partial']);
      assert.equal(allowed.code, 0, allowed.stdout + allowed.stderr);
      assert.equal(JSON.parse(allowed.stdout).inaccessible, 1);

      // Scoped to the user's own processes, root's is not in scope: not inspected, not counted.
      const own = asNobody(['--json', '--comm', 'ulpscope-root', '--user', 'nobody']);
      assert.equal(own.code, 0, own.stdout + own.stderr);
      assert.equal(JSON.parse(own.stdout).inaccessible, 0);

      assert.equal(await versionNow(t), '1');
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });
});
