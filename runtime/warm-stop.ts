/**
 * The pause's stop and resume, run once on a process of the tracer's own
 * before the target's pause, so that V8 has compiled them. `switch.ts
 * warmUp` runs the pause's writes beforehand, but stopping and resuming
 * threads can only run on a stopped process; in a fresh `ulp-trigger` (every
 * run of the command is one) they ran for the first time inside the
 * target's pause, interpreted, and were most of it: a re-apply of libssl on
 * a one-thread python3 paused 4–6 ms, 1.1 ms with this, against a floor of
 * 0.1 ms (docs/PERFORMANCE.md).
 *
 * The process is a `sleep` child: spawned early (`prepareStopPath`, so that
 * it has exec'd by the time it is traced), stopped and resumed a few times,
 * detached and killed (`warmStopPath`). Once per thread of the tracer (each
 * `--all` worker has its own compiled code). Any failure only means a colder
 * pause: nothing here touches the target.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { Session } from './session.js';

/** Long enough to outlive planning on a loaded machine; it ends by itself if the trigger dies first. */
const CHILD_SECONDS = '20';
/** Rounds of stop, registers, resume: enough for V8's inline caches to settle on one shape. */
const ROUNDS = 3;

let child: ChildProcess | undefined;
let done = false;

/** Starts the child the warm-up will trace, unless this thread has warmed up already. */
export function prepareStopPath(): void {
  if (done || child) return;
  try {
    const c = spawn('sleep', [CHILD_SECONDS], { stdio: 'ignore' });
    c.on('error', () => {});
    c.unref();
    // A run that ends before its pause (a refusal) takes the child with it.
    process.once('exit', () => c.kill('SIGKILL'));
    child = c;
  } catch {
    child = undefined;
  }
}

/**
 * Runs the warm-up on the prepared child, then kills it; the pid it used,
 * or undefined when there was nothing to do (warm already, no child) or the
 * child could not be traced.
 */
export function warmStopPath(): number | undefined {
  if (done) return undefined;
  done = true;
  const c = child;
  child = undefined;
  if (!c?.pid) return undefined;
  try {
    return warmStop(c.pid) ? c.pid : undefined;
  } finally {
    c.kill('SIGKILL');
  }
}

/**
 * Stops every thread of `pid`, reads their registers and resumes them,
 * ROUNDS times, then stops them once more and detaches, as the pause ends
 * when nothing follows the switch. False when the process could not be
 * traced; the process runs on untouched either way.
 */
export function warmStop(pid: number): boolean {
  try {
    const s = Session.open(pid, { deferSignals: false });
    try {
      for (let i = 0; i < ROUNDS; i++) {
        s.stopAll();
        for (const tid of s.tids()) s.regs(tid);
        s.resume();
      }
      s.stopAll();
    } finally {
      s.detach();
    }
    return true;
  } catch {
    return false;
  }
}
