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
import { ElfCache } from '../runtime/loader/elf-cache.js';
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
    } catch {
      continue; // exited meanwhile
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

export function runAll(bundle: Bundle, opts: RunOptions & { onProcess?: (done: number, total: number) => void }): AllResult {
  const t0 = performance.now();
  const m = bundle.manifest;
  const [fromBuildId, toBuildId] = opts.which === 'forward' ? [m.builds.old.buildId, m.builds.new.buildId] : [m.builds.new.buildId, m.builds.old.buildId];
  const { pids, inaccessible } = findProcesses(new Set([fromBuildId, toBuildId]));
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
  return { soname: m.soname, patchId: m.patchId, which: opts.which, fromBuildId, toBuildId, processes, inaccessible, totalMs: performance.now() - t0 };
}
