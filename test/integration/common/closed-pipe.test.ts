/**
 * A command whose reader has gone (`ulp-pack --help | head -1`) exits
 * quietly with its own exit code: the EPIPE of its next write is dropped,
 * not a stack trace (common/cli.ts dropOutputToClosedPipes, docs/CLI.md).
 *
 * The pipe's read end is closed before the command writes anything, so
 * every write meets EPIPE whatever the machine's load: the command starts
 * behind `sh -c 'read go; exec ...'` and is let go (stdin closed) only once
 * this process has closed its end of the pipe.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import type { Readable } from 'node:stream';
import { cliArgs, compiledProduct, type Program } from '../../../lab/cli.js';

interface Ended {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs `program args` with the read end of its stdout and/or stderr pipe closed before it starts. */
function runWithClosedPipe(program: Program, args: string[], closed: 'stdout' | 'stderr'): Promise<Ended> {
  const child = spawn('sh', ['-c', 'read go; exec "$0" "$@"', process.execPath, ...cliArgs(program, args)], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const kept = { stdout: '', stderr: '' };
  const open: 'stdout' | 'stderr' = closed === 'stdout' ? 'stderr' : 'stdout';
  child[open].on('data', (d) => (kept[open] += d));
  const gone: Readable = child[closed];
  gone.on('close', () => child.stdin.end());
  gone.destroy();
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, ...kept }));
  });
}

describe('a command writing into a closed pipe', function () {
  this.timeout(120_000);
  before(() => compiledProduct());

  for (const program of ['ulp-pack', 'ulp-trigger'] as const) {
    it(`${program} --help | head -1: exits 0, nothing on stderr`, async () => {
      const r = await runWithClosedPipe(program, ['--help'], 'stdout');
      assert.equal(r.signal, null);
      assert.equal(r.stderr, '', 'no EPIPE stack trace');
      assert.equal(r.code, 0);
    });
  }

  it('ulp-pack --bogus --json: the usage error in JSON is dropped, the exit code stays 64', async () => {
    const r = await runWithClosedPipe('ulp-pack', ['--bogus', '--json'], 'stdout');
    assert.equal(r.stderr, '');
    assert.equal(r.code, 64);
  });

  it('ulp-trigger --bogus 2>&1 | head -0: the error line is dropped, the exit code stays 64', async () => {
    const r = await runWithClosedPipe('ulp-trigger', ['--bogus'], 'stderr');
    assert.equal(r.stdout, '');
    assert.equal(r.code, 64);
  });
});
