/**
 * The operators' playbook (ops/ansible/ulp-rollout.yml) run for real by
 * ansible-playbook against localhost (connection: local) on running demo
 * programs: it copies a signed bundle, dry-runs, applies with
 * `ulp-trigger --all --json`, reads the JSON into a per-host summary, fails
 * the host when a process failed, and reverts through `ulp_revert`. Also: a
 * damaged bundle, ansible's own processes having the library loaded
 * (ulp-trigger leaves them alone as its ancestors: the summary lists them, they
 * are not patched, do not count and do not fail the host), and the fleet gates (a failed dry run
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
import { setTimeout as sleep } from 'node:timers/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from '../../../lab/cli.js';
import { buildDemo, rounds, type Demo } from '../../../lab/demo.js';
import { processState, ulpMappings } from '../../../lab/process-state.js';
import type { Target } from '../../../lab/target.js';

const PLAYBOOK_DIR = join(ROOT, 'ops', 'ansible');
const INSTALL = 'apt-get install -y --no-install-recommends ansible-core';

/** ulp-trigger from the TS sources, as tests run it (lab/cli.ts); tsx by absolute URL, so any cwd works. */
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
  let baseInaccessible: number;
  /** What the summary's count line says about processes: `n processes, ok ok, failed failed` and the machine's inaccessible ones. */
  const counts = (n: number, ok: number, failed: number) => `: ${n} processes, ${ok} ok, ${failed} failed${baseInaccessible > 0 ? `, ${baseInaccessible} inaccessible` : ''}`;
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
    // Some processes cannot be inspected even by root (a sandbox's supervisor in an outer
    // namespace, a security module's): the playbook must be told to accept those, and its
    // summary counts them. They are this machine's, not the test's.
    const r = spawnSync(TRIGGER[0]!, [...TRIGGER.slice(1), '--all', bundle, '--dry-run', '--json', '--key', pubKey], { encoding: 'utf8' });
    baseInaccessible = JSON.parse(r.stdout).inaccessible;
    assert.equal(typeof baseInaccessible, 'number', r.stdout + r.stderr);
  });
  after(() => {
    demo?.dispose();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  /** ansible-playbook's arguments and environment for a run with `vars` as extra vars, with the folder's ansible.cfg, as an operator would. */
  const playbookArgs = (inventory: string, vars: Record<string, unknown>, extra: string[] = []) => ['-i', inventory, 'ulp-rollout.yml', '-e', JSON.stringify(vars), ...extra];
  const playbookEnv = (env: Record<string, string>) => ({ ...process.env, ANSIBLE_CONFIG: join(PLAYBOOK_DIR, 'ansible.cfg'), ANSIBLE_NOCOLOR: '1', ANSIBLE_FORCE_COLOR: '0', ...env });
  const parsed = (code: number, output: string): PlaybookRun => {
    const run = parsePlaybookOutput(code, output);
    if (run.tasks.length === 0) throw new Error(`ansible-playbook ran no task (exit ${code}):\n${output}`);
    return run;
  };
  const playbook = (inventory: string, vars: Record<string, unknown>, extra: string[] = [], env: Record<string, string> = {}): PlaybookRun => {
    const r = spawnSync('ansible-playbook', playbookArgs(inventory, vars, extra), { cwd: PLAYBOOK_DIR, encoding: 'utf8', timeout: 100_000, maxBuffer: 64 << 20, env: playbookEnv(env) });
    if (r.error) throw r.error;
    return parsed(r.status ?? -1, r.stdout + r.stderr);
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
    ulp_allow_inaccessible: baseInaccessible > 0,
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
    assert.match(dry[1]!, new RegExp(`^ {2}[0-9a-f]{12} -> [0-9a-f]{12}${counts(3, 3, 0)}; \\d+ ms$`));
    assert.equal(dry[2], '  outcomes: dry-run 3');
    const applied = summary(run, 'apply');
    assert.match(applied[1]!, new RegExp(`${counts(3, 3, 0)}; \\d+ ms$`));
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
    assert.match(failure(again), /^Fail the host when fewer processes than expected have the library: 3 processes with libdemo\.so\.1 \(build [0-9a-f]{12} or [0-9a-f]{12}\) loaded, ulp_min_processes is 4$/);

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
      assert.ok(dry[1]!.includes(`${counts(3, 2, 1)}; `), dry[1]);
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
      assert.ok(applied[1]!.includes(`${counts(3, 2, 1)}; `), applied[1]);
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

  it("leaves ansible's own processes alone: listed as skipped, not patched, not counted, and the host does not fail", async () => {
    // Debian's python3 links libexpat and libz itself, so a bundle for those finds ansible's
    // processes too. Preloading the demo library into ansible makes that happen here. The
    // playbook runs under a shell that has the library too and outlives it: an ancestor of
    // ulp-trigger that can still be looked at after the run.
    const [t] = await start(1);
    // ulp_stop_timeout_ms goes through as --stop-timeout (were it malformed, ulp-trigger would exit 64 and the host fail).
    const vars = { ...common('own'), ulp_trigger_command: TRIGGER, ulp_dry_run: false, ulp_min_processes: 1, ulp_stop_timeout_ms: 300 };
    const holder = await underHolder(playbookArgs(localhost, vars), demo.lib(1));
    let run: PlaybookRun;
    try {
      run = parsed(await holder.run(), holder.output());
      // Whatever ulp-trigger does to a process it patches shows in its mappings (memfds named ulp:...) and in the library's slots.
      assert.deepEqual(ulpMappings(holder.pid), []);
      assert.deepEqual(holder.libState(), holder.libStateBefore);
    } finally {
      holder.stop();
    }
    assert.equal(run.code, 0, run.output.slice(-3000));
    assert.equal(run.stats.localhost!.failed, 0);
    const rec = report(vars, 'localhost-apply.json');
    assert.deepEqual(rec.processes.map((p: any) => p.pid), [t!.pid], 'only the target was tried');
    const skipped: number[] = rec.skipped.map((s: any) => s.pid);
    assert.ok(rec.skipped.every((s: any) => s.reason === 'ancestor'), JSON.stringify(rec.skipped));
    // The holder, the controller (connection=local) and the module's python at least.
    assert.ok(skipped.length >= 3 && skipped.includes(holder.pid), `skipped ${skipped} (holder ${holder.pid})`);
    const lines = summary(run, 'apply');
    assert.match(lines[1]!, new RegExp(`${counts(1, 1, 0)}, ${skipped.length} left alone; \\d+ ms$`), lines.join('\n'));
    assert.equal(lines[2], '  outcomes: applied 1');
    assert.match(lines[3]!, new RegExp(`^ {2}pid ${t!.pid}: applied, paused \\d+\\.\\d\\d ms$`));
    assert.deepEqual(lines.slice(4), skipped.map((pid) => `  left alone: pid ${pid} (ancestor of ulp-trigger)`));
    assert.deepEqual(await versions([t!]), ['2']);

    // ulp_min_processes counts the processes only, not those left alone.
    const again = playbook(localhost, { ...vars, ulp_min_processes: 2 }, [], { LD_PRELOAD: demo.lib(1) });
    assert.equal(again.code, 2);
    assert.match(summary(again, 'apply')[1]!, new RegExp(`${counts(1, 1, 0)}, \\d+ left alone; `));
    assert.match(failure(again), /^Fail the host when fewer processes than expected have the library: 1 processes with libdemo\.so\.1 \(build [0-9a-f]{12} or [0-9a-f]{12}\) loaded, not counting \d+ left alone \(ancestors of ulp-trigger\), ulp_min_processes is 2$/);
  });

  /**
   * A shell with `lib` preloaded that runs ansible-playbook `args` when told to and stays
   * alive afterwards until stop(), so the test can compare it before and after the run.
   */
  const underHolder = async (args: string[], lib: string) => {
    const dir = mkdtempSync(join(work, 'holder-'));
    const out = join(dir, 'output');
    const rc = join(dir, 'rc');
    // The shell says `ready` once it runs (ld.so has loaded and relocated the library by then).
    const sh = spawn('/bin/sh', ['-c', 'echo ready; read go; "$@" </dev/null >"$HOLD_OUT" 2>&1; echo $? >"$HOLD_RC"; read done', 'sh', 'ansible-playbook', ...args], {
      cwd: PLAYBOOK_DIR,
      env: { ...playbookEnv({ LD_PRELOAD: lib }), HOLD_OUT: out, HOLD_RC: rc },
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    const pid = sh.pid!;
    const stop = () => {
      sh.stdin!.end();
      if (sh.exitCode === null && sh.signalCode === null) sh.kill('SIGKILL');
    };
    /** The library's mappings and slots: what a patch would change. */
    const libState = () => {
      const { maps, slots } = processState(pid);
      return { maps: maps.split('\n').filter((l) => l.endsWith(lib)), slots: [...slots].filter(([k]) => k.startsWith(lib + '+')).map(([k, v]) => `${k}=0x${v.toString(16)}`) };
    };
    let libStateBefore: ReturnType<typeof libState>;
    try {
      await new Promise<void>((resolve, reject) => {
        sh.stdout!.once('data', () => resolve());
        sh.once('exit', (code) => reject(new Error(`the holder shell exited (${code}) before it was ready`)));
      });
      libStateBefore = libState();
      assert.ok(libStateBefore.maps.length > 0 && libStateBefore.slots.length > 0, JSON.stringify(libStateBefore));
    } catch (e) {
      stop();
      throw e;
    }
    return {
      pid,
      libState,
      libStateBefore,
      /** Runs the playbook and returns its exit code; the holder stays. */
      async run(): Promise<number> {
        sh.stdin!.write('go\n');
        const end = Date.now() + 100_000;
        for (;;) {
          const text = existsSync(rc) ? readFileSync(rc, 'utf8') : '';
          if (/^\d+\n$/.test(text)) return Number(text);
          if (sh.exitCode !== null || Date.now() > end) throw new Error(`the holder shell ended or timed out (exit ${sh.exitCode}):\n${existsSync(out) ? readFileSync(out, 'utf8') : ''}`);
          await sleep(100);
        }
      },
      output: () => readFileSync(out, 'utf8'),
      stop,
    };
  };

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
      assert.match(failure(run, 'broken'), /ulp-trigger printed no JSON result \(exit \d+\): .*No such file or directory: b?'\/nonexistent\/ulp-trigger'/);
      for (const h of ['good-a', 'good-b']) assert.ok(summary(run, 'dry-run-apply', h)[1]!.includes(`${counts(2, 2, 0)}; `), h);
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
