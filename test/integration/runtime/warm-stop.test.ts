/**
 * The warm-up of the pause's stop path (runtime/warm-stop.ts) traces a
 * process of the tracer's own: it must leave it running, untraced, as it
 * was, and the once-per-thread wrapper must never warm up twice.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { prepareStopPath, warmStop, warmStopPath } from '../../../runtime/warm-stop.js';

function status(pid: number): { state: string; tracer: number } {
  const text = readFileSync(`/proc/${pid}/status`, 'utf8');
  return {
    state: /^State:\s+(\S)/m.exec(text)![1]!,
    tracer: Number(/^TracerPid:\s+(\d+)/m.exec(text)![1]),
  };
}

describe('warming up the pause stop path on a process of our own', function () {
  if (process.getuid?.() !== 0) return;

  it('stops and resumes a sleeping process and leaves it asleep, untraced', () => {
    const c = spawn('sleep', ['30'], { stdio: 'ignore' });
    try {
      // Traced before it exec'd, or after: both are a process of our own that must come out as it went in.
      assert.equal(warmStop(c.pid!), true);
      const after = status(c.pid!);
      assert.equal(after.tracer, 0, 'detached');
      assert.match(after.state, /[SR]/, 'running or asleep, not stopped');
    } finally {
      c.kill('SIGKILL');
    }
  });

  it('gives up, without throwing, on a process that is not there', () => {
    // Above any pid_max the kernel allows (2^22): never a live process.
    assert.equal(warmStop(2 ** 31 - 1), false);
  });

  it('warms up once per thread: after the first time, nothing is spawned or traced', () => {
    prepareStopPath();
    warmStopPath();
    prepareStopPath();
    assert.equal(warmStopPath(), undefined);
  });
});
