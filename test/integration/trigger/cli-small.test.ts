/**
 * Small things users of ulp-trigger hit (issue 14 item 6): the version line,
 * usage errors shaped like every other error, a hint when PID and bundle are
 * swapped, --status on a process another tracer holds, and a target that
 * exits in the middle of an apply reported as PROC_EXITED.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { UlpError } from '../../../common/errors.js';
import { readBundleFile } from '../../../patches/index.js';
import { runOne } from '../../../trigger/apply.js';
import { runCli } from '../../../lab/cli.js';
import { buildDemo, rounds, type Demo } from '../../../lab/demo.js';

const trigger = (args: string[]) => runCli('ulp-trigger', args);

/** The state letter of /proc/PID/stat, or undefined once the process is reaped. */
function procState(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).charAt(0);
  } catch {
    return undefined;
  }
}

describe('ulp-trigger: small things users hit', function () {
  this.timeout(120_000);
  let demo: Demo;
  before(() => {
    demo = buildDemo({ tag: 'cli-small' });
  });
  after(() => demo?.dispose());

  it('-V and --version print the program and the version', () => {
    for (const flag of ['-V', '--version']) {
      const r = trigger([flag]);
      assert.equal(r.code, 0);
      assert.match(r.stdout, /^ulp-trigger \d+\.\d+\.\d+\n$/);
    }
  });

  it('usage errors name the program, the code and a hint, in text and in JSON', () => {
    const r = trigger(['--no-such-option']);
    assert.equal(r.code, 64);
    assert.equal(r.stdout, '');
    assert.equal(
      r.stderr,
      "ulp-trigger: error [TRIGGER_USAGE]: unknown option '--no-such-option'\n  hint: Run ulp-trigger --help.\n",
    );
    const j = trigger(['--bogus', '--json']);
    assert.equal(j.code, 64);
    assert.equal(j.json.error.code, 'TRIGGER_USAGE');
    assert.equal(j.json.error.hint, 'Run ulp-trigger --help.');
    const missing = trigger(['--key']);
    assert.equal(missing.code, 64);
    assert.match(
      missing.stderr,
      /^ulp-trigger: error \[TRIGGER_USAGE\]: option '--key <pubkey>' argument missing\n {2}hint: /,
    );
  });

  it('suggests the right order when the bundle comes before the pid', () => {
    const r = trigger(['fix.ulp', '1234', '--revert']);
    assert.equal(r.code, 64);
    assert.match(
      r.stderr,
      /error \[TRIGGER_USAGE\]: "fix\.ulp" is not a process id: the PID comes first\n {2}hint: Did you mean: ulp-trigger 1234 fix\.ulp --revert\n/,
    );
    // Two things that are not pids: no guess.
    assert.match(
      trigger(['a.ulp', 'b.ulp']).stderr,
      /"a\.ulp" is not a process id\n {2}hint: Run ulp-trigger --help\./,
    );
  });

  it('--status reads a process under strace, which an apply cannot attach to', async function () {
    const t = demo.start(1, ['100']);
    await t.waitFor((o) => rounds(o).length >= 1);
    const strace = spawn('strace', ['-p', String(t.pid), '-e', 'trace=none', '-o', '/dev/null'], {
      stdio: 'ignore',
    });
    try {
      // strace has attached when the kernel names it as the tracer.
      for (
        let i = 0;
        i < 500 &&
        !new RegExp(`TracerPid:\\s*${strace.pid}\\n`).test(readFileSync(`/proc/${t.pid}/status`, 'utf8'));
        i++
      )
        await new Promise((r) => setTimeout(r, 20));
      assert.match(
        readFileSync(`/proc/${t.pid}/status`, 'utf8'),
        new RegExp(`TracerPid:\\s*${strace.pid}\\n`),
        'strace did not attach',
      );
      const st = trigger(['--status', String(t.pid), '--json']);
      assert.equal(st.code, 0, st.stdout + st.stderr);
      assert.equal(st.json.pid, t.pid);
      assert.ok(st.json.objects.some((o: { soname?: string }) => o.soname === 'libdemo.so.1'));
      assert.match(trigger(['--status', String(t.pid)]).stdout, /libdemo\.so\.1/);
      const apply = trigger([String(t.pid), demo.pack(1, 2), '--json']);
      assert.equal(apply.code, 4);
      assert.equal(apply.json.error.code, 'PROC_ALREADY_TRACED');
    } finally {
      strace.kill('SIGKILL');
    }
  });

  for (const parent of ['init', 'a shell that reaps it at once'] as const) {
    it(`reports a target that exits after the checks, as the plan reads it, as PROC_EXITED, not "no such process" (reaped by ${parent})`, async () => {
      // Under a waiting shell the dead target vanishes from /proc at once; orphaned, it stays a zombie for a while.
      const t =
        parent === 'init'
          ? demo.start(1, ['100'])
          : demo.startWith(1, (exe) => ['sh', '-c', `${exe} 100; sleep 600`]);
      const pid = parent === 'init' ? t.pid : childOf(t.pid);
      await t.waitFor((o) => rounds(o).length >= 1);
      const bundle = readBundleFile(demo.pack(1, 2));
      let readings = 0;
      let caught: unknown;
      try {
        runOne(pid, bundle, {
          which: 'forward',
          // "reading process" comes after the checks of a live target, before the plan reads it: the target dies there.
          progress: (m) => {
            if (!m.startsWith('reading process') || ++readings !== 1) return;
            process.kill(pid, 'SIGKILL');
            const gone = parent === 'init' ? ['Z', 'X', undefined] : [undefined];
            for (let i = 0; i < 5000 && !gone.includes(procState(pid)); i++)
              Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 2);
            assert.ok(gone.includes(procState(pid)), `state ${procState(pid)}`);
          },
        });
      } catch (e) {
        caught = e;
      } finally {
        t.dispose();
      }
      assert.equal(readings, 1, 'the target was killed once the checks had passed');
      assert.ok(caught instanceof UlpError, String(caught));
      assert.equal(caught.code, 'PROC_EXITED', caught.message);
      assert.match(caught.message, new RegExp(`process ${pid} exited while`));
    });
  }
});

/** The one child of `pid` (the shell's program). */
function childOf(pid: number): number {
  for (let i = 0; i < 500; i++) {
    const kids = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim();
    if (kids) return Number(kids.split(' ')[0]);
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10);
  }
  throw new Error(`process ${pid} started no child`);
}
