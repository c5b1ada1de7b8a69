/**
 * Every apply and revert that changed or failed to change a process goes to
 * the system log (issue 14 item 5): ident `ulp`, one message per process with
 * its pid, command name, library, build-ids, patch id and result, in the
 * key=value form of `--outdated --apply`'s ULP-RESULT lines. Sent through
 * logger(1) (util-linux, on every Debian system), all lines of a run in one
 * call: Node has no syslog client, and /dev/log is a datagram socket Node
 * cannot write to. A host without a syslog daemon loses the messages, never
 * the apply: logging failures are ignored. $ULP_SYSLOG=0 turns it off;
 * $ULP_SYSLOG_SOCKET names another socket (tests).
 */
import { spawnSync } from 'node:child_process';
import { readComm } from '../runtime/procfs.js';
import type { ProcessOutcome } from './all.js';
import type { RunResult } from './apply.js';

const field = (v: string) => (/^[^\s"=\\]+$/.test(v) ? v : JSON.stringify(v));

/** The message for one process: what was done, or the error that stopped it. Pure but for the command name, given. */
export function logLine(
  which: 'forward' | 'reverse',
  pid: number,
  comm: string | undefined,
  soname: string,
  outcome: { result: RunResult } | { error: { code: string; message: string } },
  ids: { from: string; to: string; patchId: string },
): string {
  const parts = [
    which === 'forward' ? 'apply' : 'revert',
    `pid=${pid}`,
    `comm=${field(comm ?? '?')}`,
    `lib=${field(soname)}`,
    `from=${ids.from}`,
    `to=${ids.to}`,
    `patch=${ids.patchId}`,
  ];
  if ('result' in outcome) {
    parts.push(`result=${outcome.result.outcome}`);
    if (outcome.result.pauseMs !== undefined) parts.push(`pause_ms=${outcome.result.pauseMs.toFixed(2)}`);
  } else parts.push('result=failed', `code=${outcome.error.code}`, `reason=${field(outcome.error.message)}`);
  return parts.join(' ');
}

/** Results that are worth a log line: all but a dry run, which changes nothing (a no-op is logged: someone asked for it). */
export function worthLogging(outcome: string): boolean {
  return outcome !== 'dry-run';
}

export function toSyslog(lines: readonly string[]): void {
  if (lines.length === 0 || process.env.ULP_SYSLOG === '0') return;
  const socket = process.env.ULP_SYSLOG_SOCKET;
  try {
    spawnSync('logger', ['-t', 'ulp', ...(socket ? ['-u', socket] : [])], {
      input: lines.map((l) => l.replace(/\n/g, ' ')).join('\n') + '\n',
      stdio: ['pipe', 'ignore', 'ignore'],
      timeout: 10_000,
    });
  } catch {
    // No logger, or it hung: the log is lost, the result stands.
  }
}

/** Log lines for every process of an --all run. */
export function allLines(
  which: 'forward' | 'reverse',
  soname: string,
  ids: { from: string; to: string; patchId: string },
  processes: readonly ProcessOutcome[],
): string[] {
  return processes
    .filter((p) => !p.ok || worthLogging(p.result.outcome))
    .map((p) =>
      logLine(which, p.pid, readComm(p.pid), soname, p.ok ? { result: p.result } : { error: p.error }, ids),
    );
}
