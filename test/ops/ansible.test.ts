/**
 * The operators' playbook (ops/ansible/ulp-rollout.yml) run for real by
 * ansible-playbook against localhost (connection: local) on running demo
 * programs: it copies a signed bundle, dry-runs, applies with
 * `ulp-trigger --all --json`, reads the JSON into a per-host summary, fails
 * the host when a process failed, and reverts through `ulp_revert`. Also: a
 * damaged bundle, ansible's own processes having the library loaded (they
 * are marked and do not fail the host), and the fleet gates (a failed dry run
 * stops the rollout everywhere; a batch with a failed host is the last one),
 * with three inventory hosts that are all this machine. What is checked is
 * what an operator sees: the default output, parsed, and the targets' own
 * output.
 *
 * ansible-core is not on a clean machine: without ansible-playbook this test
 * fails (it does not skip) and says how to install it.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from '../helpers/cli.js';
import { buildDemo, rounds, type Demo } from '../helpers/demo.js';
import type { Target } from '../helpers/target.js';

const PLAYBOOK_DIR = join(ROOT, 'ops', 'ansible');
const INSTALL = 'apt-get install -y --no-install-recommends ansible-core';

/** ulp-trigger from the TS sources, as tests run it (test/helpers/cli.ts); tsx by absolute URL, so any cwd works. */
const TRIGGER = [process.execPath, '--import', import.meta.resolve('tsx'), join(ROOT, 'bin', 'ulp-trigger.ts')];

/** One task's result on one host, as the default stdout callback prints it. */
interface HostResult {
  status: 'ok' | 'changed' | 'failed' | 'skipping';
  changed?: boolean;
  msg?: unknown;
}
interface PlaybookRun {
  code: number;
  output: string;
  /** Every task header printed, in order, with the results printed under it. */
  tasks: Array<{ name: string; hosts: Record<string, HostResult> }>;
  /** PLAY RECAP. */
  stats: Record<string, { ok: number; changed: number; failed: number; skipped: number }>;
}

/**
 * Reads ansible-playbook's default output, what an operator sees (ansible-core
 * has no json stdout callback; that one is in the ansible.posix collection).
 * Results are JSON after "=>" (the default callback_result_format), on one line
 * or, for debug, indented over several lines closed by a "}" alone.
 */
function parsePlaybookOutput(code: number, output: string): PlaybookRun {
  const run: PlaybookRun = { code, output, tasks: [], stats: {} };
  let task: PlaybookRun['tasks'][number] | undefined;
  const lines = output.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    let m: RegExpExecArray | null;
    if ((m = /^TASK \[(.*)\] \**$/.exec(line))) {
      task = { name: m[1]!, hosts: {} };
      run.tasks.push(task);
    } else if (/^(PLAY|NO MORE HOSTS)/.test(line)) {
      task = undefined;
    } else if ((m = /^(ok|changed|fatal|skipping): \[([^\]]+)\](?:: FAILED!)?(?: => (.*))?$/.exec(line)) && task) {
      let json = m[3];
      if (json === '{') while (i + 1 < lines.length && json !== undefined && !json.endsWith('\n}')) json += '\n' + lines[++i];
      const result = json ? (JSON.parse(json) as Partial<HostResult>) : {};
      const host = m[2]!.split(' -> ')[0]!; // "host -> localhost" when delegated
      task.hosts[host] = { ...result, status: m[1] === 'fatal' ? 'failed' : (m[1] as HostResult['status']) };
    } else if ((m = /^(\S+)\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=\d+\s+failed=(\d+)\s+skipped=(\d+)/.exec(line))) {
      run.stats[m[1]!] = { ok: Number(m[2]), changed: Number(m[3]), failed: Number(m[4]), skipped: Number(m[5]) };
    }
  }
  return run;
}

function requireAnsible(): void {
  const r = spawnSync('ansible-playbook', ['--version'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) {
    throw new Error(`ansible-playbook is needed by this test and is not runnable (${r.error?.message ?? `exit ${r.status}: ${r.stderr}`}). Install it with: ${INSTALL}`);
  }
}

describe('ops/ansible/ulp-rollout.yml against localhost', function () {
  this.timeout(240_000); // ~45 s for the whole file on an idle 2-core machine
  let demo: Demo;
  let work: string;
  let bundle: string;
  let pubKey: string;
  const targets: Target[] = [];

  before(function () {
    requireAnsible();
    // A tag of its own: --all must find this test's targets and no others.
    demo = buildDemo({ relro: 'full', tag: `ansible-${process.pid}-${Date.now()}` });
    work = mkdtempSync(join(tmpdir(), 'ulp-ansible-'));
    const keys = generateKeyPairSync('ed25519');
    const privKey = join(work, 'release.key.pem');
    pubKey = join(work, 'release.pub.pem');
    writeFileSync(privKey, keys.privateKey.export({ type: 'pkcs8', format: 'pem' }));
    writeFileSync(pubKey, keys.publicKey.export({ type: 'spki', format: 'pem' }));
    bundle = demo.pack(1, 2, ['--sign', privKey]);
  });
  after(() => {
    demo?.dispose();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  /** Runs the playbook with `vars` as extra vars, with the folder's ansible.cfg, as an operator would. */
  const playbook = (inventory: string, vars: Record<string, unknown>, extra: string[] = [], env: Record<string, string> = {}): PlaybookRun => {
    const r = spawnSync('ansible-playbook', ['-i', inventory, 'ulp-rollout.yml', '-e', JSON.stringify(vars), ...extra], {
      cwd: PLAYBOOK_DIR,
      encoding: 'utf8',
      timeout: 100_000,
      maxBuffer: 64 << 20,
      env: { ...process.env, ANSIBLE_CONFIG: join(PLAYBOOK_DIR, 'ansible.cfg'), ANSIBLE_NOCOLOR: '1', ANSIBLE_FORCE_COLOR: '0', ...env },
    });
    if (r.error) throw r.error;
    const run = parsePlaybookOutput(r.status ?? -1, r.stdout + r.stderr);
    if (run.tasks.length === 0) throw new Error(`ansible-playbook ran no task (exit ${r.status}):\n${r.stdout}\n${r.stderr}`);
    return run;
  };
  const localhost = join(PLAYBOOK_DIR, 'inventory', 'localhost.ini');
  /** The settings every run shares: the bundle and key, a scratch folder as the hosts' bundle folder. */
  const common = (name: string) => ({
    ulp_bundle: bundle,
    ulp_public_key: pubKey,
    ulp_remote_dir: join(work, name, 'remote'),
    ulp_report_dir: mkdtempSync(join(work, `${name}-report-`)),
    // Already root here: su to root needs no password, so the play's become path runs too.
    ulp_become: process.getuid?.() === 0,
    ansible_become_method: 'su',
  });
  const summary = (run: PlaybookRun, step: string, host = 'localhost'): string[] => {
    const t = run.tasks.find((x) => x.name === `Summary (${step})` && x.hosts[host]);
    assert.ok(t, `no summary of ${step} for ${host}; tasks: ${run.tasks.map((x) => x.name).join(' | ')}`);
    return t.hosts[host]!.msg as string[];
  };
  const failure = (run: PlaybookRun, host = 'localhost'): string => {
    const t = run.tasks.find((x) => x.hosts[host]?.status === 'failed');
    assert.ok(t, `no task failed for ${host}`);
    return `${t.name}: ${String(t.hosts[host]!.msg)}`;
  };
  const report = (vars: { ulp_report_dir: string }, file: string) => JSON.parse(readFileSync(join(vars.ulp_report_dir, file), 'utf8'));

  const start = async (n: number) => {
    const ts = Array.from({ length: n }, () => demo.start(1, ['10']));
    targets.push(...ts);
    for (const t of ts) await t.waitFor((o) => rounds(o).length >= 1);
    return ts;
  };
  /** The round lines a target prints from now on (after a switch, what runs now). */
  const nextRound = async (t: Target) => {
    const mark = t.output().length;
    return rounds((await t.waitFor((o) => rounds(o.slice(mark)).length >= 2)).slice(mark)).at(-1)!;
  };
  const versions = async (ts: Target[]) => Promise.all(ts.map(async (t) => (await nextRound(t)).version));
  afterEach(() => {
    for (const t of targets.splice(0)) t.dispose();
  });

  it('copies the signed bundle, dry-runs, applies to every target with a per-host summary, and reverts with ulp_revert', async () => {
    const ts = await start(3);
    const vars = { ...common('apply'), ulp_trigger_command: TRIGGER, ulp_min_processes: 3 };
    const before = await Promise.all(ts.map(nextRound));

    const run = playbook(localhost, vars);
    assert.equal(run.code, 0, run.output.slice(-3000));
    assert.equal(run.stats.localhost!.failed, 0);
    // The bundle and the key are on the "host". The key was passed: a signed bundle is refused without one.
    assert.ok(existsSync(join(vars.ulp_remote_dir, bundle.split('/').at(-1)!)));
    assert.ok(existsSync(join(vars.ulp_remote_dir, 'release.pub.pem')));
    const pids = ts.map((t) => t.pid).sort((a, b) => a - b);
    const dry = summary(run, 'dry-run-apply');
    assert.match(dry[0]!, /^localhost: dry-run-apply libdemo\.so\.1 patch [0-9a-f]{12}$/);
    assert.match(dry[1]!, /^ {2}[0-9a-f]{12} -> [0-9a-f]{12}: 3 processes, 3 ok, 0 failed; \d+ ms$/);
    assert.equal(dry[2], '  outcomes: dry-run 3');
    const applied = summary(run, 'apply');
    assert.match(applied[1]!, /: 3 processes, 3 ok, 0 failed; \d+ ms$/);
    assert.equal(applied[2], '  outcomes: applied 3');
    assert.deepEqual(
      applied.slice(3).map((l) => Number(/^ {2}pid (\d+): applied, paused \d+\.\d\d ms$/.exec(l)?.[1])).sort((a, b) => a - b),
      pids,
      applied.join('\n'),
    );
    // The switch task reports a change; the dry run does not.
    assert.equal(run.tasks.find((t) => t.name === 'ulp-trigger --all apply')!.hosts.localhost!.status, 'changed');
    assert.equal(run.tasks.find((t) => t.name === 'ulp-trigger --all dry-run apply')!.hosts.localhost!.status, 'ok');
    // The change record is ulp-trigger's own JSON.
    const rec = report(vars, 'localhost-apply.json');
    assert.deepEqual(rec.processes.map((p: any) => p.pid).sort((a: number, b: number) => a - b), pids);
    assert.ok(rec.processes.every((p: any) => p.ok && p.result.outcome === 'applied'));

    // The targets run v2 now and kept their state.
    for (const [i, t] of ts.entries()) {
      const r = await nextRound(t);
      assert.equal(r.version, '2');
      assert.equal(r.compute, '36'); // 3 * 12: v2's code
      assert.equal(r.greet, 'HELLO'); // "HELLO FROM V2", cut at the first space by rounds()
      assert.ok(Number(r.counter) > Number(before[i]!.counter), `counter went on: ${before[i]!.counter} -> ${r.counter}`);
    }

    // Again: nothing to do, nothing reported as changed; and a host with fewer processes than expected fails.
    const again = playbook(localhost, { ...vars, ulp_dry_run: false, ulp_min_processes: 4 });
    assert.equal(summary(again, 'apply')[2], '  outcomes: already-applied 3');
    assert.equal(again.tasks.find((t) => t.name === 'ulp-trigger --all apply')!.hosts.localhost!.status, 'ok');
    assert.equal(again.code, 2);
    assert.match(failure(again), /^Fail the host when fewer processes than expected have the library: 3 processes \(not counting ansible's own\) with libdemo\.so\.1 .*ulp_min_processes is 4$/);

    const back = playbook(localhost, { ...vars, ulp_revert: true });
    assert.equal(back.code, 0, back.output.slice(-3000));
    assert.match(summary(back, 'dry-run-revert')[2]!, /^ {2}outcomes: dry-run 3$/);
    const reverted = summary(back, 'revert');
    assert.equal(reverted[2], '  outcomes: reverted 3');
    assert.ok(reverted.slice(3).every((l) => /^ {2}pid \d+: reverted, paused /.test(l)), reverted.join('\n'));
    assert.deepEqual(await versions(ts), ['1', '1', '1']);
  });

  it('fails the host and changes no process when the dry run fails on one of them', async () => {
    const ts = await start(3);
    const tracer = holdWithTracer(ts[0]!.pid);
    try {
      await tracer.ready;
      const run = playbook(localhost, { ...common('dry-fail'), ulp_trigger_command: TRIGGER });
      assert.equal(run.code, 2, 'ansible-playbook exits 2 when a host failed');
      assert.equal(run.stats.localhost!.failed, 1);
      const dry = summary(run, 'dry-run-apply');
      assert.match(dry[1]!, /: 3 processes, 2 ok, 1 failed; /);
      assert.ok(dry.includes(`  pid ${ts[0]!.pid}: FAILED PROC_ALREADY_TRACED: process ${ts[0]!.pid} is already traced by pid ${tracer.pid} (python3)`), dry.join('\n'));
      assert.match(failure(run), new RegExp(`^Fail the host when a process failed: 1 of 3 processes failed \\(dry-run-apply, exit 4\\): pid ${ts[0]!.pid} PROC_ALREADY_TRACED`));
      assert.ok(!run.tasks.some((t) => t.name === 'ulp-trigger --all apply'), 'the switch never ran');
      tracer.stop();
      assert.deepEqual(await versions(ts), ['1', '1', '1']);
    } finally {
      tracer.stop();
    }
  });

  it('without a dry run, patches the processes it can and fails the host for the one it cannot', async () => {
    const ts = await start(3);
    const tracer = holdWithTracer(ts[1]!.pid);
    try {
      await tracer.ready;
      const vars = { ...common('apply-fail'), ulp_trigger_command: TRIGGER, ulp_dry_run: false };
      const run = playbook(localhost, vars);
      assert.equal(run.code, 2);
      assert.ok(!run.tasks.some((t) => t.name.startsWith('Summary (dry-run')), 'no dry run');
      const applied = summary(run, 'apply');
      assert.match(applied[1]!, /: 3 processes, 2 ok, 1 failed; /);
      assert.equal(applied[2], '  outcomes: applied 2');
      assert.match(failure(run), new RegExp(`1 of 3 processes failed \\(apply, exit 4\\): pid ${ts[1]!.pid} PROC_ALREADY_TRACED`));
      const rec = report(vars, 'localhost-apply.json');
      assert.equal(rec.processes.find((p: any) => p.pid === ts[1]!.pid).error.code, 'PROC_ALREADY_TRACED');
      tracer.stop();
      assert.deepEqual(await versions(ts), ['2', '1', '2']);
    } finally {
      tracer.stop();
    }
  });

  it('fails the host with the error code when the bundle is refused, before touching any process', async () => {
    const ts = await start(1);
    const bad = join(work, 'damaged.ulp');
    const bytes = readFileSync(bundle);
    writeFileSync(bad, bytes.subarray(0, bytes.length >> 1)); // truncated
    const run = playbook(localhost, { ...common('bad'), ulp_bundle: bad, ulp_trigger_command: TRIGGER });
    assert.equal(run.code, 2);
    const dry = summary(run, 'dry-run-apply');
    assert.match(dry[0]!, /^localhost: dry-run-apply refused before any process: BUNDLE_CORRUPT \(exit 3\): /);
    assert.match(failure(run), /^Fail the host when ulp-trigger refused before any process: .*BUNDLE_CORRUPT \(exit 3\)/);
    assert.deepEqual(await versions(ts), ['1']);
  });

  it("tells ansible's own processes on the host apart: they are marked, and their failures do not fail the host", async () => {
    // Debian's python3 links libexpat and libz itself, so a bundle for those finds ansible's
    // processes too. Preloading the demo library into ansible makes that happen here.
    const [t] = await start(1);
    // ulp_stop_timeout_ms goes through as --stop-timeout (were it malformed, ulp-trigger would exit 64 and the host fail).
    const vars = { ...common('own'), ulp_trigger_command: TRIGGER, ulp_dry_run: false, ulp_min_processes: 1, ulp_stop_timeout_ms: 300 };
    const run = playbook(localhost, vars, [], { LD_PRELOAD: demo.lib(1) });
    assert.equal(run.code, 0, run.output.slice(-3000));
    const lines = summary(run, 'apply');
    const own = lines.filter((l) => /^ {2}pid \d+ \(ansible/.test(l));
    assert.ok(own.length >= 2, `the module's python and the controller at least:\n${lines.join('\n')}`);
    assert.ok(own.every((l) => /: applied, |\(ansible, ignored\): FAILED /.test(l)), lines.join('\n'));
    assert.ok(lines.includes(`  pid ${t!.pid}: applied, paused ${/paused (\S+ ms)/.exec(lines.find((l) => l.startsWith(`  pid ${t!.pid}:`))!)![1]}`), lines.join('\n'));
    const rec = report(vars, 'localhost-apply.json');
    assert.ok(rec.processes.length >= 3);
    assert.deepEqual(await versions([t!]), ['2']);
  });

  describe('a fleet of three hosts (all this machine), the first one broken', () => {
    // `broken` has no ulp-trigger where the inventory says (ulp is not installed there).
    const fleet = () => {
      const inv = join(work, 'fleet.yml');
      const local = { ansible_connection: 'local', ansible_python_interpreter: '/usr/bin/python3' };
      const hosts = { broken: { ...local, ulp_trigger_command: '/nonexistent/ulp-trigger' }, 'good-a': { ...local, ulp_trigger_command: TRIGGER }, 'good-b': { ...local, ulp_trigger_command: TRIGGER } };
      writeFileSync(inv, JSON.stringify({ ulp_fleet: { hosts } }));
      return inv;
    };
    const ran = (run: PlaybookRun, host: string) => run.tasks.some((t) => t.name === 'ulp-trigger --all apply' && t.hosts[host]);

    it('a failed dry run on one host stops the rollout on every host', async () => {
      const ts = await start(2);
      const run = playbook(fleet(), common('fleet-dry'));
      assert.equal(run.code, 2);
      assert.match(failure(run, 'broken'), /ulp-trigger printed no JSON result \(exit 127\): .*\/nonexistent\/ulp-trigger: not found/);
      for (const h of ['good-a', 'good-b']) assert.match(summary(run, 'dry-run-apply', h)[1]!, /: 2 processes, 2 ok, 0 failed; /);
      assert.ok(!['broken', 'good-a', 'good-b'].some((h) => ran(run, h)), 'no host switched');
      assert.deepEqual(await versions(ts), ['1', '1']);
    });

    it('in batches (ulp_serial=2, no dry run) a batch with a failed host is the last one', async () => {
      const ts = await start(2);
      const run = playbook(fleet(), { ...common('fleet-serial'), ulp_serial: 2, ulp_dry_run: false });
      assert.equal(run.code, 2);
      assert.match(failure(run, 'broken'), /ulp-trigger printed no JSON result/);
      // good-a shares the first batch with broken and goes on; good-b's batch never starts.
      assert.equal(summary(run, 'apply', 'good-a')[2], '  outcomes: applied 2');
      assert.ok(!ran(run, 'good-b'), "good-b's batch never ran");
      assert.deepEqual(await versions(ts), ['2', '2']);
    });
  });
});

/** Holds `pid` with a second tracer (PTRACE_SEIZE from python3), as gdb or strace would. */
function holdWithTracer(pid: number): { pid: number; ready: Promise<void>; stop(): void } {
  const child = spawn('python3', ['-c', `import ctypes,time\nlibc=ctypes.CDLL(None)\nassert libc.ptrace(0x4206,${pid},0,0)==0\nprint(1,flush=True)\ntime.sleep(60)`], { stdio: ['ignore', 'pipe', 'inherit'] });
  const ready = new Promise<void>((resolve, reject) => {
    child.stdout!.once('data', () => resolve());
    child.once('exit', (code) => reject(new Error(`the tracer exited (${code}) before seizing ${pid}`)));
  });
  return {
    pid: child.pid!,
    ready,
    stop: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    },
  };
}
