/**
 * Where to interrupt a running ulp-trigger: a delay after it started, a
 * delay after it attached to the target (the target's TracerPid becomes the
 * command's pid), or a milestone of the apply that the target's own
 * /proc/PID/maps shows as it happens. Milestones make the interesting
 * moments reproducible (a random delay rarely lands between two steps that
 * are a millisecond apart); random delays cover what the milestones miss.
 *
 * The milestones of staging a build, in order (runtime/loader/stage.ts):
 *   stub     the stub page appears (/memfd:ulp:stub), first run on a process only
 *   fork     the fork page appears (/memfd:ulp:fork), first switch of a library only
 *   mapped   the build's memfd is mapped (its marker first: an inaccessible mapping of its first page)
 *   unwind   libgcc_s.so.1 appears: the target's own dlopen, called on a borrowed
 *            thread so that the build's unwind tables can be registered
 *            (runtime/loader/unwind.ts); only in a process that had not loaded it
 *   staged   the marker is unmapped: staging finished, the switch is next
 *   aliased  the loader's build's writable data became the shared mapping: the pause has begun
 * A signal sent at a milestone lands a few microseconds after it (one read of
 * /proc/PID/maps, about 50 us here), so it hits the step that follows.
 */
import { readFileSync } from 'node:fs';
import type { ChildProcess } from 'node:child_process';
import { finished, type Run, type Runner } from './lib.js';

const sleeper = new Int32Array(new SharedArrayBuffer(4));
/** A synchronous sleep with sub-millisecond resolution (the event loop must not delay a signal). */
export function sleepSync(ms: number): void {
  if (ms > 0) Atomics.wait(sleeper, 0, 0, ms);
}

/** The pid tracing `pid` (0: none; -1: the process is gone). */
export function tracerOf(pid: number): number {
  try {
    return Number(/TracerPid:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
  } catch {
    return -1;
  }
}

export function exited(pid: number): boolean {
  try {
    return /^\d+ \(.*\) [ZX] /s.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true;
  }
}

export const MILESTONES = ['stub', 'fork', 'mapped', 'unwind', 'staged', 'aliased'] as const;
export type Milestone = (typeof MILESTONES)[number];

export type Point = { afterSpawn: number } | { afterAttach: number } | { milestone: Milestone };

export function describePoint(p: Point): string {
  if ('milestone' in p) return `at milestone ${p.milestone}`;
  if ('afterAttach' in p) return `${p.afterAttach.toFixed(1)} ms after attach`;
  return `${p.afterSpawn.toFixed(0)} ms after start`;
}

/** What of a staging is visible in a maps text; `role` is the memfd role of the build being staged. */
export interface MapsMarks {
  stub: boolean;
  fork: boolean;
  mapped: number;
  libgcc: boolean;
  staged: number;
  data: number;
}

export function marksOf(maps: string, role: 'new' | 'old'): MapsMarks {
  const lines = maps.split('\n');
  const build = `:${role}:`;
  return {
    stub: lines.some((l) => l.includes('/memfd:ulp:stub ')),
    fork: lines.some((l) => l.includes('/memfd:ulp:fork ')),
    mapped: lines.filter((l) => l.includes('/memfd:ulp:') && l.includes(build) && / 00000000 /.test(l))
      .length,
    libgcc: lines.some((l) => l.endsWith('/libgcc_s.so.1')),
    staged: finishedBuilds(lines.filter((l) => l.includes('/memfd:ulp:') && l.includes(build))),
    data: lines.filter((l) => l.includes('/memfd:ulp:data:')).length,
  };
}

/**
 * Build memfds (by inode) mapped from offset 0 readable and not inaccessibly:
 * staging maps an inaccessible marker of the first page before anything else
 * and unmaps it last (runtime/loader/stage.ts finishStaging).
 */
function finishedBuilds(buildLines: readonly string[]): number {
  const readable = new Set<string>();
  const marked = new Set<string>();
  for (const l of buildLines) {
    const m = /^\S+ (\S{4}) 00000000 \S+ (\d+) /.exec(l);
    if (!m) continue;
    if (m[1]!.startsWith('r')) readable.add(m[2]!);
    else marked.add(m[2]!);
  }
  return [...readable].filter((inode) => !marked.has(inode)).length;
}

/** Has `now` reached `m`, compared with the state before the command started? Pure. */
export function reached(m: Milestone, before: MapsMarks, now: MapsMarks): boolean {
  switch (m) {
    case 'stub':
      return now.stub && !before.stub;
    case 'fork':
      return now.fork && !before.fork;
    case 'mapped':
      return now.mapped > before.mapped;
    case 'unwind':
      return now.libgcc && !before.libgcc;
    case 'staged':
      return now.staged > before.staged;
    case 'aliased':
      // The staged build maps the data memfd at its own region first; the alias maps it over the loader's build.
      return before.data === 0 && now.data >= 2;
  }
}

function readMapsText(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/maps`, 'utf8');
  } catch {
    return '';
  }
}

export type Phase = 'outside-session' | 'in-session' | 'after-session' | 'not-sent';

export interface Interruption {
  run: Run;
  /** Where the signal landed: before the command attached, while it held the target, after it let go, or not at all (it had ended). */
  phase: Phase;
}

/**
 * Starts `ulp-trigger args` and sends `signal` to it at `point`. Busy-waits
 * in 0.1 ms steps (or one maps read per step for milestones) so that the
 * signal lands where it was meant to; gives up on the point after 60 s.
 */
export async function interruptAt(
  runner: Runner,
  args: string[],
  pid: number,
  signal: NodeJS.Signals,
  point: Point,
  role: 'new' | 'old' = 'new',
): Promise<Interruption> {
  const before = marksOf(readMapsText(pid), role);
  const child = runner.spawn('ulp-trigger', args);
  const done = finished(child);
  const t0 = performance.now();
  const over = () => exited(child.pid!) || performance.now() - t0 > 60_000;
  const send = (c: ChildProcess): Phase => {
    const tracer = tracerOf(pid);
    if (exited(c.pid!)) return 'not-sent';
    c.kill(signal);
    return tracer === c.pid ? 'in-session' : attachedOnce ? 'after-session' : 'outside-session';
  };
  let attachedOnce = false;
  let phase: Phase = 'not-sent';
  if ('afterSpawn' in point) {
    sleepSync(point.afterSpawn);
    attachedOnce = tracerOf(pid) === child.pid;
    phase = send(child);
  } else if ('afterAttach' in point) {
    while (tracerOf(pid) !== child.pid && !over()) sleepSync(0.1);
    if (tracerOf(pid) === child.pid) {
      attachedOnce = true;
      sleepSync(point.afterAttach);
      phase = send(child);
    }
  } else {
    for (;;) {
      if (tracerOf(pid) === child.pid) attachedOnce = true;
      if (reached(point.milestone, before, marksOf(readMapsText(pid), role))) {
        phase = send(child);
        break;
      }
      if (over()) break;
    }
  }
  return { run: await done, phase };
}
