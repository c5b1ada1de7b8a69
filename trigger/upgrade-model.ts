/**
 * `--outdated --apply`, the pure part: which processes share one bundle
 * (one per running build and on-disk build of a library), the bundle's file
 * name in the bundles folder, what still needs a restart afterwards, and the
 * text output with its batch lines (one `ULP-RESULT:` line per process and
 * library, `NEEDRESTART-PID:` lines in needrestart's batch format). The
 * effects (packing, applying, scanning) are in upgrade.ts.
 */
import type { OutdatedLibrary, OutdatedProcess, OutdatedReport, Reason } from './outdated-model.js';

/** The processes of one library that one bundle serves: they run `from`, the disk has `to`. */
export interface UpgradeGroup {
  library: OutdatedLibrary;
  from: string;
  to: string;
  processes: OutdatedProcess[];
}

/**
 * Patchable processes grouped by (running build, on-disk build): each group
 * is packed once, whatever the number of processes.
 */
export function upgradeGroups(report: Pick<OutdatedReport, 'libraries'>): UpgradeGroup[] {
  const out: UpgradeGroup[] = [];
  for (const library of report.libraries) {
    const to = library.onDisk.buildId;
    if (!to) continue;
    const byFrom = new Map<string, OutdatedProcess[]>();
    for (const p of library.processes) {
      if (p.state !== 'patchable' || !p.running.buildId) continue;
      byFrom.set(p.running.buildId, [...(byFrom.get(p.running.buildId) ?? []), p]);
    }
    for (const [from, processes] of byFrom) out.push({ library, from, to, processes });
  }
  return out;
}

export { bundleFileName } from '../packer/bundle-name.js';

/** What happened to one process for one library. */
export type UpgradeOutcome =
  | 'applied'
  | 'applied-partly'
  | 'already-applied'
  | 'runs-new-build'
  | 'not-applied'
  | 'failed'
  | 'refused'
  | 'inaccessible'
  | 'skipped';

export interface UpgradeProcessResult {
  pid: number;
  command: string;
  soname: string | undefined;
  library: string;
  from: string | undefined;
  to: string | undefined;
  result: UpgradeOutcome;
  patchId?: string;
  bundle?: string;
  pauseMs?: number;
  /** Why it was not patched (refused by the packer, the trigger's error, an ancestor left alone). */
  reason?: Reason;
  /** Patched, and the old build's code now on a memfd copy (true), or still on its deleted file (false: needrestart lists it). */
  retained?: boolean;
  /** Why the old build's code could not move. */
  retainError?: Reason;
}

export interface UpgradeBundle {
  soname: string | undefined;
  library: string;
  from: string;
  to: string;
  /** packed: written now; reused: found in the folder from an earlier run; failed: none (reason). */
  state: 'packed' | 'reused' | 'failed';
  path?: string;
  patchId?: string;
  reason?: Reason;
}

export interface UpgradeResult {
  bundlesDir: string;
  bundles: UpgradeBundle[];
  /** One entry per process and library that --outdated listed as not patched before the run. */
  processes: UpgradeProcessResult[];
  /** --outdated after the run: the truth about what is left. */
  after: OutdatedReport;
  totalMs: number;
}

/** Processes that still run a replaced build, by command name (needrestart's grouping), from a --outdated report. */
export function needingRestart(report: Pick<OutdatedReport, 'libraries'>): Map<string, number[]> {
  const byComm = new Map<string, Set<number>>();
  for (const l of report.libraries) {
    for (const p of l.processes) {
      if (p.state === 'patched') continue;
      if (!byComm.has(p.command)) byComm.set(p.command, new Set());
      byComm.get(p.command)!.add(p.pid);
    }
  }
  const out = new Map<string, number[]>();
  for (const comm of [...byComm.keys()].sort())
    out.set(
      comm,
      [...byComm.get(comm)!].sort((a, b) => a - b),
    );
  return out;
}

/** A value of a batch line: bare when it has no spaces, quotes or equals signs, else in double quotes. */
const field = (v: string) => (/^[^\s"=\\]+$/.test(v) ? v : JSON.stringify(v));

/** One line per process and library: what was done, for logs and scripts (the apt hook writes these to its log). */
export function resultLine(p: UpgradeProcessResult): string {
  const parts = [
    `pid=${p.pid}`,
    `comm=${field(p.command)}`,
    `lib=${field(p.soname ?? p.library)}`,
    `result=${p.result}`,
  ];
  if (p.from) parts.push(`from=${p.from}`);
  if (p.to) parts.push(`to=${p.to}`);
  if (p.patchId) parts.push(`patch=${p.patchId}`);
  if (p.pauseMs !== undefined) parts.push(`pause_ms=${p.pauseMs.toFixed(2)}`);
  if (p.retained !== undefined) parts.push(`old_code=${p.retained ? 'memfd' : 'file'}`);
  if (p.retainError)
    parts.push(`old_code_code=${p.retainError.code}`, `old_code_reason=${field(p.retainError.message)}`);
  if (p.reason) parts.push(`code=${p.reason.code}`, `reason=${field(p.reason.message)}`);
  return `ULP-RESULT: ${parts.join(' ')}`;
}

const short = (id: string | undefined) => (id ? id.slice(0, 12) : 'no-build-id');

export function renderUpgrade(r: UpgradeResult): string {
  const lines: string[] = [];
  if (r.processes.length === 0) lines.push('no process runs a replaced shared library that is not patched');
  for (const b of r.bundles) {
    const head = `${b.soname ?? b.library} (${b.library}): ${short(b.from)} -> ${short(b.to)}`;
    if (b.state === 'failed') lines.push(`${head}: not packed: ${b.reason?.message} [${b.reason?.code}]`);
    else
      lines.push(
        `${head}: ${b.state === 'packed' ? 'packed' : 'reusing'} ${b.path} (patch ${b.patchId?.slice(0, 12)})`,
      );
  }
  for (const p of r.processes) {
    const what = p.reason
      ? `${p.result}: ${p.reason.message} [${p.reason.code}]`
      : p.result +
        (p.pauseMs !== undefined ? `, paused ${p.pauseMs.toFixed(2)} ms` : '') +
        (p.retainError
          ? `; the old build's code stays on its deleted file (needrestart lists it): ${p.retainError.message} [${p.retainError.code}]`
          : '');
    lines.push(`  pid ${p.pid} (${p.command}) ${p.soname ?? p.library}: ${what}`);
  }
  const restart = needingRestart(r.after);
  const patched = r.processes.filter((p) => p.result === 'applied' || p.result === 'applied-partly').length;
  lines.push(
    `result: ${patched} patched; ${restart.size === 0 ? 'no process needs a restart for a replaced library' : `still to restart: ${[...restart.values()].reduce((n, x) => n + x.length, 0)} processes (--outdated says why)`}`,
  );
  lines.push('');
  for (const p of r.processes) lines.push(resultLine(p));
  for (const [comm, pids] of restart) lines.push(`NEEDRESTART-PID: ${comm}=${pids.join(',')}`);
  return lines.join('\n') + '\n';
}
