/**
 * `ulp-trigger --all` stopped by SIGINT, SIGTERM or SIGHUP: it prints each process's
 * line as that process is done (into a pipe, not a terminal), finishes the
 * process at hand, then stops with a summary of what was not attempted and
 * exit code 8. Every process of the fleet is then either fully patched (it
 * has a result line) or untouched (listed as not attempted, nothing of ulp
 * mapped); a second run completes the rest.
 *
 * No timing: the signal is sent once the first result line has been read,
 * with the trigger held stopped (SIGSTOP) while it is queued, so the trigger
 * takes it at the next process boundary whatever the machine's load; the
 * fleet is large enough that processes remain after that boundary.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readBundleFile } from '../../../patches/index.js';
import { readStatus } from '../../../trigger/status.js';
import { cliArgs, ROOT, runCli } from '../../../lab/cli.js';
import { compile } from '../../../lab/compile.js';
import { buildDemo, type Demo } from '../../../lab/demo.js';
import { startTarget, type Target } from '../../../lab/target.js';

const FLEET = 24;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `ulp-trigger --all FIX` and sends `sig` once the first result line has arrived. */
function runAndSignal(fix: string, sig: NodeJS.Signals, extra: string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, cliArgs('ulp-trigger', ['--all', fix, ...extra]), {
      cwd: ROOT,
      env: { ...process.env },
    });
    let stdout = '';
    let stderr = '';
    let sent = false;
    child.stdout.on('data', (d) => {
      stdout += d;
      if (!sent && /^\s+\d+\s+\S/m.test(stdout)) {
        sent = true;
        // Held stopped while the signal is queued: it is taken when the trigger runs again, at its next process boundary.
        child.kill('SIGSTOP');
        child.kill(sig);
        child.kill('SIGCONT');
      }
    });
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

function ulpMapped(pid: number): boolean {
  return /ulp:/.test(readFileSync(`/proc/${pid}/maps`, 'utf8'));
}

describe('ulp-trigger --all stopped by a signal', function () {
  this.timeout(300_000);
  let demo: Demo;
  let fleetExe: string;
  let dir: string;
  before(() => {
    demo = buildDemo({ relro: 'full', tag: `all-signals-${process.pid}-${Date.now()}` });
    dir = mkdtempSync(join(tmpdir(), 'ulp-all-signals-'));
    mkdirSync(join(dir, 'lib'));
    copyFileSync(demo.lib(1), join(dir, 'lib', 'libdemo.so.1'));
    fleetExe = compile({
      sources: ['bench/fleet_main.c'],
      out: 'fleet_main',
      flags: ['-O2', '-Wl,-z,relro,-z,now'],
      libs: [`-L${join(dir, 'lib')}`, '-l:libdemo.so.1'],
    });
  });
  after(() => {
    demo?.dispose();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const cases: Array<[NodeJS.Signals, string[]]> = [
    ['SIGINT', []],
    ['SIGTERM', []],
    ['SIGHUP', []],
    // Worker threads join as they start: each finishes the process it has.
    ['SIGTERM', ['--jobs', '3']],
  ];
  for (const [sig, extra] of cases) {
    it(`on ${sig}${extra.length ? ` (${extra.join(' ')})` : ''}: finishes the process(es) at hand, lists the rest as not attempted, exits 8; a second run completes them`, async () => {
      const fix = demo.pack(1, 2);
      const { builds } = readBundleFile(fix).manifest;
      // Under a shell that waits for it: fleet_main dies with its parent (PR_SET_PDEATHSIG), and the shell of
      // startTarget exits at once, which would kill the fleet if it exited after fleet_main set that up.
      const leader: Target = startTarget(['sh', '-c', `'${fleetExe}' ${FLEET} wait & wait`], {
        LD_LIBRARY_PATH: join(dir, 'lib'),
      });
      const out = await leader.waitFor((o) => /^ready$/m.test(o), 120_000);
      const fleet = [...out.matchAll(/^pid (\d+)$/gm)].map((m) => Number(m[1]));
      try {
        assert.equal(fleet.length, FLEET);
        const r = await runAndSignal(fix, sig, extra);
        assert.equal(r.code, 8, r.stdout + r.stderr);
        const done = [...r.stdout.matchAll(/^\s+(\d+)\s+applied/gm)].map((m) => Number(m[1]));
        const summary = new RegExp(
          `^stopped by ${sig} after .*not attempted \\(untouched\\): ([\\d, ]+)$`,
          'm',
        ).exec(r.stdout);
        assert.ok(summary, r.stdout);
        const left = summary[1]!.split(', ').map(Number);
        assert.ok(done.length >= 1 && left.length >= 1, r.stdout);
        assert.deepEqual(
          [...done, ...left].sort((a, b) => a - b),
          [...fleet].sort((a, b) => a - b),
          'every process is either done or not attempted',
        );
        assert.match(
          r.stdout,
          new RegExp(
            `^${FLEET} processes with libdemo.so.1 .* loaded: ${done.length} ok, 0 failed, ${left.length} not attempted;`,
            'm',
          ),
        );

        for (const pid of done) {
          const lib = readStatus(pid).libraries.find((l) => l.soname === 'libdemo.so.1');
          assert.equal(lib?.live, builds.new.buildId, `process ${pid} is patched`);
          assert.equal(lib?.mixed, false, `process ${pid} is fully switched`);
        }
        for (const pid of left) {
          assert.equal(ulpMapped(pid), false, `process ${pid} was not touched`);
          assert.equal(
            readStatus(pid).libraries.find((l) => l.soname === 'libdemo.so.1'),
            undefined,
            `process ${pid} was not touched`,
          );
        }

        const again = runCli('ulp-trigger', ['--all', fix, '--json', ...extra]);
        assert.equal(again.code, 0, again.stdout + again.stderr);
        const outcome = new Map(
          again.json.processes.map((p: any) => [p.pid, p.ok ? p.result.outcome : p.error.code]),
        );
        for (const pid of done) assert.equal(outcome.get(pid), 'already-applied');
        for (const pid of left) assert.equal(outcome.get(pid), 'applied');
        assert.doesNotMatch(leader.output(), /BAD/, 'every process computed right throughout');
      } finally {
        for (const pid of fleet) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            /* gone */
          }
        }
        leader.dispose();
      }
    });
  }

  it('refuses a --jobs that is not a count from 1 to 64, or without --all, before touching anything', () => {
    for (const args of [
      ['--all', 'x.ulp', '--jobs', '0'],
      ['--all', 'x.ulp', '--jobs', 'two'],
      ['--all', 'x.ulp', '--jobs', '65'],
      ['1', 'x.ulp', '--jobs', '2'],
    ]) {
      const r = runCli('ulp-trigger', [...args, '--json']);
      assert.equal(r.code, 64, args.join(' ') + r.stdout + r.stderr);
      assert.equal(r.json.error.code, 'TRIGGER_USAGE');
      assert.match(r.json.error.message, /--jobs/);
    }
  });
});
