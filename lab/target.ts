/**
 * Starts target programs for tests as real, independent processes.
 *
 * Targets are started detached through `sh -c 'prog & echo $!'` so that they
 * are not children of the test's Node process: libuv's SIGCHLD handling would
 * otherwise reap ptrace stops of its own children and report bogus exits
 * (docs/DEVELOPING.md, "Tests"). Their output goes to a file that the test polls.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Target {
  pid: number;
  /** Everything the target wrote to stdout and stderr so far. */
  output(): string;
  /**
   * Waits until `pred(output)` holds, or throws after `timeoutMs` (default 60 s: the deadline
   * only ends a wait that would hang; a target on a loaded machine may take seconds to print).
   */
  waitFor(pred: (out: string) => boolean, timeoutMs?: number): Promise<string>;
  alive(): boolean;
  kill(signal?: NodeJS.Signals): void;
  /** Kills the target and removes its output folder. Safe to call twice. */
  dispose(): void;
}

const shq = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

export function startTarget(argv: string[], env: Record<string, string> = {}): Target {
  const dir = mkdtempSync(join(tmpdir(), 'ulp-target-'));
  const log = join(dir, 'out.log');
  const envPart = Object.entries(env)
    .map(([k, v]) => `${k}=${shq(v)}`)
    .join(' ');
  const cmd = `${envPart} ${argv.map(shq).join(' ')} </dev/null >${shq(log)} 2>&1 & echo $!`;
  const pid = Number(execFileSync('sh', ['-c', cmd], { encoding: 'utf8' }).trim());
  if (!Number.isInteger(pid) || pid <= 0) throw new Error(`could not start ${argv[0]}`);
  const output = () => (existsSync(log) ? readFileSync(log, 'utf8') : '');
  const alive = () => {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      return !/^\d+ \(.*\) [ZX] /s.test(stat);
    } catch {
      return false;
    }
  };
  return {
    pid,
    output,
    alive,
    async waitFor(pred, timeoutMs = 60_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const out = output();
        if (pred(out)) return out;
        if (Date.now() > deadline)
          throw new Error(`timed out waiting for target ${pid}; output so far:\n${out.slice(-2000)}`);
        if (!alive()) throw new Error(`target ${pid} exited; output:\n${out.slice(-2000)}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    kill(signal = 'SIGKILL') {
      try {
        process.kill(pid, signal);
      } catch {
        /* already gone */
      }
    },
    dispose() {
      this.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
