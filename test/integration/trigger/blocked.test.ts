/**
 * A process whose 27 threads all block with no timeout of their own, or an
 * hour's (futex, nanosleep, epoll_wait, read, sigwaitinfo: a server at
 * rest). The apply must not wait for any of them to wake, must leave each
 * blocked in the call it was in, and the next call the program makes runs
 * the new build; the revert likewise. (How long the apply takes is
 * measured in scripts/bench-pause.ts, not asserted here.)
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { readBundleFile } from '../../../patches/index.js';
import { closeTally, openTally, type Tally } from '../../../runtime/sys/tally.js';
import { runOne } from '../../../trigger/apply.js';
import { runCli } from '../../../lab/cli.js';
import { buildDemo, type Demo } from '../../../lab/demo.js';
import type { Target } from '../../../lab/target.js';

const CLOCK_NANOSLEEP = 230;
const RESTART_SYSCALL = 219;

/**
 * The system call each thread is blocked in (/proc/PID/task/TID/syscall), as
 * a sorted list of numbers. A timed sleep that a stop interrupted goes on in
 * restart_syscall with the time it had left: the same sleep, so it counts
 * as the call it restarts.
 */
function blockedIn(pid: number): number[] {
  return readdirSync(`/proc/${pid}/task`)
    .map((tid) => Number(readFileSync(`/proc/${pid}/task/${tid}/syscall`, 'utf8').split(' ')[0]))
    .map((nr) => (nr === RESTART_SYSCALL ? CLOCK_NANOSLEEP : nr))
    .sort((a, b) => a - b);
}

async function wake(t: Target): Promise<{ version: string; compute: string }> {
  const mark = t.output().length;
  process.kill(t.pid, 'SIGUSR1');
  const out = await t.waitFor((o) => /wake=\d+ version=\d+ compute=\d+/.test(o.slice(mark)));
  const [, version, compute] = /version=(\d+) compute=(\d+)/.exec(out.slice(mark))!;
  return { version: version!, compute: compute! };
}

describe('ulp-trigger on a process whose threads all block', function () {
  this.timeout(180_000);
  let demo: Demo;
  before(() => (demo = buildDemo({ main: 'blocked_main.c', tag: 'blocked' })));
  after(() => demo?.dispose());

  it('applies and reverts without waking a thread, each left in its blocking call', async () => {
    const fix = demo.pack(1, 2);
    const t = demo.start(1, ['22']);
    await t.waitFor((o) => /^ready threads=27 version=1 compute=33/m.test(o));
    // Every thread is in its blocking call before the trigger runs.
    await t.waitFor(() => blockedIn(t.pid).every((nr) => nr >= 0) && blockedIn(t.pid).length === 27);
    const before = blockedIn(t.pid);
    assert.ok(!before.includes(-1), 'no thread is running');
    for (const [args, version, compute] of [
      [[], '2', '36'],
      [['--revert'], '1', '33'],
      [[], '2', '36'],
    ] as const) {
      const r = runCli('ulp-trigger', [String(t.pid), fix, '--json', ...args]);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.equal(r.json.outcome, args.length ? 'reverted' : 'applied');
      const all = r.json.switch.pauses.filter((p: { kind: string }) => p.kind === 'all');
      assert.deepEqual(
        all.map((p: { threads: number }) => p.threads),
        [27],
        'one pause, every thread stopped once',
      );
      assert.ok(r.json.switch.pauseIo.writes > 0, 'the pause wrote');
      assert.deepEqual(blockedIn(t.pid), before, 'every thread is back in the call it was blocked in');
      assert.deepEqual(await wake(t), { version, compute });
    }
    assert.ok(t.alive());
  });

  it('stops each thread once in a first apply: the pause ends in the detach, not a resume and a stop again', async () => {
    const fix = demo.pack(1, 2);
    const t = demo.start(1, ['22']);
    await t.waitFor((o) => /^ready threads=27 version=1 compute=33/m.test(o));
    await t.waitFor(() => blockedIn(t.pid).every((nr) => nr >= 0) && blockedIn(t.pid).length === 27);
    const before = blockedIn(t.pid);
    openTally();
    let tally: Tally;
    let r;
    try {
      r = runOne(t.pid, readBundleFile(fix), { which: 'forward' });
    } finally {
      tally = closeTally();
    }
    assert.equal(r.outcome, 'applied');
    const stops = tally.get('ptrace:PTRACE_INTERRUPT') ?? 0;
    const all = r.switch!.pauses.filter((p) => p.kind === 'all');
    assert.deepEqual(
      all.map((p) => p.threads),
      [27],
    );
    // The pause stops all 27, staging borrows a thread a few times; stopping all again to detach made it 54 and more.
    assert.ok(stops >= 27 && stops < 2 * 27, `${stops} PTRACE_INTERRUPT for 27 threads`);
    assert.equal(tally.get('ptrace:PTRACE_DETACH'), 27, 'every thread detached');
    // Just let go, a thread may still be on its way back into its call (/proc says "running").
    await t.waitFor(() => blockedIn(t.pid).every((nr) => nr >= 0));
    assert.deepEqual(blockedIn(t.pid), before, 'every thread is back in the call it was blocked in');
    assert.deepEqual(await wake(t), { version: '2', compute: '36' });
    assert.ok(t.alive());
  });

  it('reverts and re-applies with the pause as the only stop: the journal goes into the spare mapping, no remote system call', async () => {
    const fix = demo.pack(1, 2);
    const bundle = readBundleFile(fix);
    const t = demo.start(1, ['22']);
    await t.waitFor((o) => /^ready threads=27 version=1 compute=33/m.test(o));
    await t.waitFor(() => blockedIn(t.pid).every((nr) => nr >= 0) && blockedIn(t.pid).length === 27);
    const before = blockedIn(t.pid);
    assert.equal(runOne(t.pid, bundle, { which: 'forward' }).outcome, 'applied');
    // The first switch maps the journal's memfd twice: its journal and the spare.
    const journals = () =>
      readFileSync(`/proc/${t.pid}/maps`, 'utf8')
        .split('\n')
        .filter((l) => l.includes('/memfd:ulp:redirects:'))
        .map((l) => l.split(/\s+/)[0]);
    const first = journals();
    assert.equal(first.length, 2, first.join('\n'));
    for (const [which, outcome, version, compute] of [
      ['reverse', 'reverted', '1', '33'],
      ['forward', 'applied', '2', '36'],
      ['reverse', 'reverted', '1', '33'],
    ] as const) {
      await t.waitFor(() => blockedIn(t.pid).every((nr) => nr >= 0));
      openTally();
      let tally: Tally;
      let r;
      try {
        r = runOne(t.pid, bundle, { which });
      } finally {
        tally = closeTally();
      }
      assert.equal(r.outcome, outcome);
      const calls = [...tally.keys()].filter((k) => /^(syscall|call)/.test(k));
      assert.deepEqual(calls, [], 'no remote system call or call');
      assert.equal(tally.get('ptrace:PTRACE_INTERRUPT'), 27, 'each thread stopped once, for the pause');
      assert.equal(tally.get('ptrace:PTRACE_DETACH'), 27, 'every thread detached');
      assert.deepEqual(journals(), first, 'the same two journal mappings, written in turn');
      await t.waitFor(() => blockedIn(t.pid).every((nr) => nr >= 0));
      assert.deepEqual(blockedIn(t.pid), before, 'every thread is back in the call it was blocked in');
      assert.deepEqual(await wake(t), { version, compute });
    }
    // --status reads the journal the last switch wrote into the spare: it vouches for the live build.
    const status = runCli('ulp-trigger', ['--status', String(t.pid), '--json']);
    assert.equal(status.code, 0, status.stdout + status.stderr);
    const lib = status.json.libraries.find((l: { soname: string }) => l.soname === 'libdemo.so.1');
    assert.equal(lib.live, bundle.manifest.builds.old.buildId);
    assert.equal(lib.mixed, false);
    assert.equal(lib.oldCode.known, true, 'the newest journal names the live build');
    assert.ok(t.alive());
  });
});
