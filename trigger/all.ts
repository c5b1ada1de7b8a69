/**
 * `--all FIX.ulp`: every process on the machine that has one of the bundle's
 * builds mapped, each applied (or reverted) on its own; one failure never
 * stops the others. Processes are found through /proc/PID/maps, and a
 * mapping's build-id is read once per mapped file (device and inode) for the
 * whole run, since most processes map the same libraries.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { asUlpError } from '../common/cli.js';
import type { Bundle } from '../patches/index.js';
import { parseElfFromMemory } from '../elf/index.js';
import { parseMaps, RemoteMemory } from '../runtime/index.js';
import { ElfCache } from '../runtime/loader/index.js';
import { runOne, type RunOptions, type RunResult } from './apply.js';

export type ProcessOutcome = { pid: number; ok: true; result: RunResult } | { pid: number; ok: false; error: { code: string; message: string; hint?: string | undefined } };

export interface AllResult {
  soname: string;
  patchId: string;
  which: 'forward' | 'reverse';
  fromBuildId: string;
  toBuildId: string;
  processes: ProcessOutcome[];
  /** Processes whose memory this user may not read. */
  inaccessible: number;
  /**
   * Processes with the library that were left alone: the trigger's own
   * ancestors below the first service (ancestors()), which are waiting for
   * it. Patch one by its pid if it matters.
   */
  skipped: Array<{ pid: number; reason: 'ancestor' }>;
  totalMs: number;
}

/** Pids whose mappings include a build with one of `buildIds`. */
export function findProcesses(buildIds: ReadonlySet<string>): { pids: number[]; inaccessible: number } {
  const byFile = new Map<string, string | undefined>();
  const pids: number[] = [];
  let inaccessible = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    let text: string;
    try {
      text = readFileSync(`/proc/${pid}/maps`, 'utf8');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EACCES' || code === 'EPERM') inaccessible++; // another user's process: it may have the library
      continue; // otherwise it exited meanwhile
    }
    if (text === '') continue; // kernel thread, or a process this user cannot see into
    const mem = new RemoteMemory(pid);
    let found = false;
    let denied = false;
    for (const m of parseMaps(text)) {
      if (m.offset !== 0n || m.inode === 0 || !m.read) continue;
      const key = `${m.dev}:${m.inode}`;
      if (!byFile.has(key)) {
        try {
          byFile.set(key, parseElfFromMemory((a, n) => mem.read(a, n), { bias: m.start, expect: 'any' }).buildId);
        } catch (e) {
          if (asUlpError(e).code === 'PROC_PERMISSION_DENIED') denied = true;
          else byFile.set(key, undefined); // not an ELF object (a data file, a font...)
          if (denied) break;
          continue;
        }
      }
      const id = byFile.get(key);
      if (id && buildIds.has(id)) {
        found = true;
        break;
      }
    }
    if (denied) inaccessible++;
    else if (found) pids.push(pid);
  }
  return { pids, inaccessible };
}

/**
 * This process's ancestors that are waiting for it: its parent, the
 * parent's parent and so on, up to but not including the first one whose
 * parent is init. That one is a service (sshd's listener, cron, a terminal
 * server), patched like any other process; the ones below it (a shell, sudo,
 * sshd's session process, the automation tool's worker) only run ulp-trigger.
 */
export function ancestors(pid = process.pid): Set<number> {
  const parentOf = (p: number): number | undefined => {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      // The command name is in parentheses and may hold spaces or parentheses itself: ppid follows the last ')'.
      return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    } catch {
      return undefined;
    }
  };
  const out = new Set<number>();
  for (let p = parentOf(pid); p !== undefined && p > 1 && out.size < 4096; ) {
    const pp = parentOf(p);
    if (pp === undefined || pp <= 1) break;
    out.add(p);
    p = pp;
  }
  return out;
}

export function runAll(bundle: Bundle, opts: RunOptions & { onProcess?: (done: number, total: number) => void }): AllResult {
  const t0 = performance.now();
  const m = bundle.manifest;
  const [fromBuildId, toBuildId] = opts.which === 'forward' ? [m.builds.old.buildId, m.builds.new.buildId] : [m.builds.new.buildId, m.builds.old.buildId];
  const found = findProcesses(new Set([fromBuildId, toBuildId]));
  const mine = ancestors();
  const pids = found.pids.filter((p) => !mine.has(p));
  const skipped = found.pids.filter((p) => mine.has(p)).map((pid) => ({ pid, reason: 'ancestor' as const }));
  const processes: ProcessOutcome[] = [];
  // Most processes map the same libraries: parse each file once for the whole run.
  const elfCache = new ElfCache();
  pids.forEach((pid, i) => {
    opts.onProcess?.(i, pids.length);
    try {
      processes.push({ pid, ok: true, result: runOne(pid, bundle, { ...opts, progress: undefined, elfCache }) });
    } catch (e) {
      const err = asUlpError(e);
      processes.push({ pid, ok: false, error: { code: err.code, message: err.message, hint: err.hint } });
    }
  });
  return { soname: m.soname, patchId: m.patchId, which: opts.which, fromBuildId, toBuildId, processes, inaccessible: found.inaccessible, skipped, totalMs: performance.now() - t0 };
}
