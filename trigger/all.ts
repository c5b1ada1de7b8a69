/**
 * `--all FIX.ulp`: every process on the machine that has one of the bundle's
 * builds mapped, each applied (or reverted) on its own; one failure never
 * stops the others. Processes are found through /proc/PID/maps, and a
 * mapping's build-id is read once per mapped file (device and inode) for the
 * whole run, since most processes map the same libraries.
 *
 * Each process is reported as it finishes (onResult), and a stop asked for
 * between processes (SIGINT/SIGTERM/SIGHUP in the command) ends the run after the
 * current one: a process is never left half done, and the result lists
 * the ones not attempted. The work on one process is synchronous (ptrace
 * must stay on this thread), so the event loop turns once between
 * processes to let such a request in.
 *
 * With `jobs` above 1, that many worker threads (all-worker.ts) work on
 * different processes at once, each its own tracer; most of a process's
 * time is spent waiting for its threads to stop, which another worker
 * uses. The main thread only hands out pids and collects outcomes, so it
 * sees a stop request at once and each worker finishes the process at hand.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { asUlpError } from '../common/cli.js';
import type { Bundle } from '../patches/index.js';
import { parseElfFromMemory } from '../elf/index.js';
import { headerMappings, RemoteMemory } from '../runtime/index.js';
import { ElfCache } from '../runtime/loader/index.js';
import { runOne, type RunOptions, type RunResult } from './apply.js';
import {
  EMPTY_SCOPE,
  inScope,
  needsFacts,
  parsePasswd,
  realUid,
  unitOf,
  userName,
  type ProcessFacts,
  type Scope,
} from './scope.js';

export type ProcessOutcome =
  | { pid: number; ok: true; result: RunResult }
  | { pid: number; ok: false; error: { code: string; message: string; hint?: string | undefined } };

export interface AllResult {
  soname: string;
  patchId: string;
  which: 'forward' | 'reverse';
  fromBuildId: string;
  toBuildId: string;
  processes: ProcessOutcome[];
  /**
   * The processes found, before any is attached to (what `--all --dry-run`
   * lists first): who each is and which of the bundle's builds it runs.
   */
  matches: Match[];
  /** Processes in scope whose memory this user may not read. */
  inaccessible: number;
  /**
   * Processes with the library that were left alone: the trigger's own
   * ancestors below the first service (ancestors()), which are waiting for
   * it. Patch one by its pid if it matters.
   */
  skipped: Array<{ pid: number; reason: 'ancestor' }>;
  /** The run was stopped (by a signal, in the command) before every process was done. */
  interrupted?: { signal: string; notAttempted: number[] };
  totalMs: number;
}

export interface AllOptions extends RunOptions {
  /** Called before each process. */
  onProcess?: (done: number, total: number) => void;
  /** Called as each process finishes, in the order they are done. */
  onResult?: (outcome: ProcessOutcome, done: number, total: number) => void;
  /** Asked between processes: a reason (a signal's name) ends the run there. */
  stopRequested?: () => string | undefined;
  /**
   * How many processes are worked on at once, each on its own worker thread (default 1: in this thread);
   * `auto`: autoJobs() for the processes found and this machine's CPUs (the command's default).
   */
  jobs?: number | 'auto';
  /** `--all --pid`: only these processes are considered. */
  among?: readonly number[];
  /** `--exclude`, `--user`, `--comm`, `--unit`: only the processes in this scope are considered. */
  scope?: Scope;
  /** Called with the matches once they are found, before any process is attached to. */
  onMatches?: (matches: Match[]) => void;
}

/** A process found with one of the bundle's builds, described from /proc alone. */
export interface Match {
  pid: number;
  comm: string | undefined;
  uid: number | undefined;
  user: string | undefined;
  unit: string | undefined;
  /** Which of the bundle's builds it runs: `old` (manifest builds.old) or `new`. */
  build: 'old' | 'new';
  buildId: string;
}

/** What a worker is started with: the bundle (structured-cloned) and the options that are plain data. */
export interface WorkerData {
  bundle: unknown;
  opts: Pick<RunOptions, 'which' | 'dryRun' | 'session' | 'allowAliasing'>;
}
export interface WorkerRequest {
  pid: number;
}
export interface WorkerReply {
  outcome: ProcessOutcome;
}

/** runOne, with its failure as an outcome: one process's failure never stops the others. */
export function runOneOutcome(pid: number, bundle: Bundle, opts: RunOptions): ProcessOutcome {
  try {
    return { pid, ok: true, result: runOne(pid, bundle, { ...opts, progress: undefined }) };
  } catch (e) {
    const err = asUlpError(e);
    return { pid, ok: false, error: { code: err.code, message: err.message, hint: err.hint } };
  }
}

/** Structured cloning turns Buffers into plain Uint8Arrays: makes them Buffers again, at any depth. */
export function toBuffers(value: unknown): unknown {
  if (value instanceof Uint8Array)
    return Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  if (Array.isArray(value)) return value.map(toBuffers);
  if (value instanceof Map) return new Map([...value].map(([k, v]) => [k, toBuffers(v)]));
  if (value && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = toBuffers(v);
    return out;
  }
  return value;
}

/** What /proc says about a process for the scope, each fact undefined when it cannot be read. */
export function readFacts(pid: number): ProcessFacts {
  const text = (name: string) => {
    try {
      return readFileSync(`/proc/${pid}/${name}`, 'utf8');
    } catch {
      return undefined;
    }
  };
  const status = text('status');
  const cgroup = text('cgroup');
  return {
    pid,
    comm: text('comm')?.replace(/\n$/, ''),
    uid: status === undefined ? undefined : realUid(status),
    unit: cgroup === undefined ? undefined : unitOf(cgroup),
  };
}

/** The host's user names (name to uid); empty when /etc/passwd cannot be read. */
export function readUsers(): Map<string, number> {
  try {
    return parsePasswd(readFileSync('/etc/passwd', 'utf8'));
  } catch {
    return new Map();
  }
}

/**
 * Pids whose mappings include a build with one of `buildIds`: among every
 * process, or among `among` only (`--all --pid`: a service's own processes,
 * when others on the machine map the same build and must be left alone),
 * and within `scope`. The scope is decided from /proc/PID/status, comm and
 * cgroup, which any user may read, before the maps: a process out of scope
 * is never inspected, nor counted as inaccessible.
 */
export function findProcesses(
  buildIds: ReadonlySet<string>,
  among?: readonly number[],
  scope: Scope = EMPTY_SCOPE,
): {
  pids: number[];
  found: Array<{ pid: number; buildId: string; facts: ProcessFacts | undefined }>;
  inaccessible: number;
} {
  const byFile = new Map<string, string | undefined>();
  const found: Array<{ pid: number; buildId: string; facts: ProcessFacts | undefined }> = [];
  let inaccessible = 0;
  const withFacts = needsFacts(scope);
  for (const entry of among ? [...new Set(among)].map(String) : readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    const facts = withFacts ? readFacts(pid) : undefined;
    if (!inScope(facts ?? { pid, comm: undefined, uid: undefined, unit: undefined }, scope)) continue;
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
    let hit: string | undefined;
    let denied = false;
    for (const m of headerMappings(text)) {
      const key = m.key;
      if (!byFile.has(key)) {
        try {
          byFile.set(
            key,
            parseElfFromMemory((a, n) => mem.read(a, n), { bias: m.start, expect: 'any' }).buildId,
          );
        } catch (e) {
          if (asUlpError(e).code === 'PROC_PERMISSION_DENIED') denied = true;
          else byFile.set(key, undefined); // not an ELF object (a data file, a font...)
          if (denied) break;
          continue;
        }
      }
      const id = byFile.get(key);
      if (id && buildIds.has(id)) {
        hit = id;
        break;
      }
    }
    if (denied) inaccessible++;
    else if (hit) found.push({ pid, buildId: hit, facts });
  }
  return { pids: found.map((f) => f.pid), found, inaccessible };
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
  for (let p = parentOf(pid); p !== undefined && p > 1 && out.size < 4096;) {
    const pp = parentOf(p);
    if (pp === undefined || pp <= 1) break;
    out.add(p);
    p = pp;
  }
  return out;
}

/**
 * Fewer processes than this are done on the trigger's own thread alone: a
 * worker thread loads the modules again before it takes its first process
 * (about as long as this thread takes for that many first applies), so on
 * a small fleet it only takes CPU from the targets and the tracer.
 */
export const POOL_MIN_PROCESSES = 32;

/**
 * `--jobs` when not given: two tracers (this thread and one worker) on a
 * machine with two CPUs or more and a fleet worth a worker's start, else
 * one. Measured on 2 cores (docs/PERFORMANCE.md): a second tracer works
 * while the first waits for its target's stops; more than one per CPU only
 * adds workers loading modules on a machine with no idle core.
 */
export function autoJobs(processes: number, cpus: number): number {
  return processes >= POOL_MIN_PROCESSES ? Math.max(1, Math.min(2, cpus)) : 1;
}

/** One turn of the event loop: signal listeners run in it (libuv reads its signal pipe when it polls). */
const loopTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

export async function runAll(bundle: Bundle, opts: AllOptions): Promise<AllResult> {
  const t0 = performance.now();
  const m = bundle.manifest;
  const [fromBuildId, toBuildId] =
    opts.which === 'forward'
      ? [m.builds.old.buildId, m.builds.new.buildId]
      : [m.builds.new.buildId, m.builds.old.buildId];
  const found = findProcesses(new Set([fromBuildId, toBuildId]), opts.among, opts.scope);
  const mine = ancestors();
  const pids = found.pids.filter((p) => !mine.has(p));
  const skipped = found.pids.filter((p) => mine.has(p)).map((pid) => ({ pid, reason: 'ancestor' as const }));
  const users = readUsers();
  const matches: Match[] = found.found
    .filter((f) => !mine.has(f.pid))
    .map((f) => {
      const facts = f.facts ?? readFacts(f.pid);
      return {
        pid: f.pid,
        comm: facts.comm,
        uid: facts.uid,
        user: userName(facts.uid, users),
        unit: facts.unit,
        build: f.buildId === m.builds.old.buildId ? 'old' : 'new',
        buildId: f.buildId,
      };
    });
  opts.onMatches?.(matches);
  const {
    onProcess,
    onResult,
    stopRequested,
    jobs = 1,
    among: _among,
    scope: _scope,
    onMatches: _onMatches,
    ...runOpts
  } = opts;
  const run: PoolRun = {
    pids,
    bundle,
    runOpts,
    ...(onProcess ? { onProcess } : {}),
    ...(onResult ? { onResult } : {}),
    ...(stopRequested ? { stopRequested } : {}),
  };
  const n = jobs === 'auto' ? autoJobs(pids.length, availableParallelism()) : jobs;
  const { processes, interrupted } =
    n > 1 && pids.length > 1 ? await runPool(run, Math.min(n, pids.length)) : await runInline(run);
  // A stop asked for during the last process finds nothing left to stop: the run is complete.
  return {
    soname: m.soname,
    patchId: m.patchId,
    which: opts.which,
    fromBuildId,
    toBuildId,
    matches,
    processes,
    inaccessible: found.inaccessible,
    skipped,
    ...(interrupted ? { interrupted } : {}),
    totalMs: performance.now() - t0,
  };
}

interface PoolRun {
  pids: number[];
  bundle: Bundle;
  runOpts: RunOptions;
  onProcess?: AllOptions['onProcess'];
  onResult?: AllOptions['onResult'];
  stopRequested?: AllOptions['stopRequested'];
}

interface PoolOutcome {
  processes: ProcessOutcome[];
  interrupted: AllResult['interrupted'];
}

/** One process after the other on this thread. */
async function runInline(r: PoolRun): Promise<PoolOutcome> {
  const processes: ProcessOutcome[] = [];
  // Most processes map the same libraries: parse each file once for the whole run.
  const elfCache = new ElfCache();
  for (const [i, pid] of r.pids.entries()) {
    await loopTurn();
    const reason = r.stopRequested?.();
    if (reason !== undefined)
      return { processes, interrupted: { signal: reason, notAttempted: r.pids.slice(i) } };
    r.onProcess?.(i, r.pids.length);
    const outcome = runOneOutcome(pid, r.bundle, { ...r.runOpts, elfCache });
    processes.push(outcome);
    r.onResult?.(outcome, i + 1, r.pids.length);
  }
  return { processes, interrupted: undefined };
}

/**
 * A worker running all-worker: its compiled .js beside this file, or, when
 * this runs from the sources (tests, scripts through tsx), the .ts source
 * behind tsx's loader, which a worker does not always inherit.
 */
function startWorker(data: WorkerData): Worker {
  if (!import.meta.url.endsWith('.ts'))
    return new Worker(new URL('./all-worker.js', import.meta.url), { workerData: data });
  const source = new URL('./all-worker.ts', import.meta.url).href;
  return new Worker(
    `import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${JSON.stringify(source)}); });`,
    { eval: true, workerData: data },
  );
}

/**
 * This thread and `jobs - 1` worker threads, each given the next pid as soon
 * as it is free. A worker takes pids once it has started (loading the
 * modules takes a while): this thread works meanwhile, so a small fleet is
 * done before any worker is ready, and workers still starting when the pids
 * run out are ended. A stop request ends the handing out; each worker
 * finishes the process it has. A worker that dies (a bug) fails its process
 * and takes no more.
 */
async function runPool(r: PoolRun, jobs: number): Promise<PoolOutcome> {
  const processes: ProcessOutcome[] = [];
  let next = 0;
  let interrupted: AllResult['interrupted'];
  const take = (): number | undefined => {
    if (interrupted || next >= r.pids.length) return undefined;
    const reason = r.stopRequested?.();
    if (reason !== undefined) {
      interrupted = { signal: reason, notAttempted: [] };
      return undefined;
    }
    r.onProcess?.(next, r.pids.length);
    return r.pids[next++];
  };
  const record = (outcome: ProcessOutcome) => {
    processes.push(outcome);
    r.onResult?.(outcome, processes.length, r.pids.length);
  };
  const data: WorkerData = {
    bundle: r.bundle,
    opts: {
      which: r.runOpts.which,
      dryRun: r.runOpts.dryRun,
      allowAliasing: r.runOpts.allowAliasing,
      ...(r.runOpts.session ? { session: { ...r.runOpts.session, onStep: undefined } } : {}),
    },
  };
  type Member = { worker: Worker; state: 'starting' | 'busy' | 'done'; pid?: number | undefined };
  const members: Member[] = [];
  let allDone: () => void = () => {};
  const finished = new Promise<void>((resolve) => (allDone = resolve));
  const finish = (m: Member) => {
    m.state = 'done';
    m.pid = undefined;
    void m.worker.terminate();
    if (members.every((x) => x.state === 'done')) allDone();
  };
  const feed = (m: Member) => {
    const pid = take();
    if (pid === undefined) return finish(m);
    m.state = 'busy';
    m.pid = pid;
    m.worker.postMessage({ pid } satisfies WorkerRequest);
  };
  for (let i = 1; i < jobs; i++) {
    const m: Member = { worker: startWorker(data), state: 'starting' };
    members.push(m);
    m.worker.on('message', (reply: WorkerReply | 'ready') => {
      if (m.state === 'done') return;
      if (reply !== 'ready') record(toBuffers(reply.outcome) as ProcessOutcome);
      feed(m);
    });
    m.worker.on('error', (e) => {
      if (m.state === 'done') return;
      if (m.pid !== undefined) {
        const err = asUlpError(e);
        record({ pid: m.pid, ok: false, error: { code: err.code, message: err.message, hint: err.hint } });
      }
      finish(m);
    });
  }
  const elfCache = new ElfCache();
  for (;;) {
    await loopTurn(); // worker messages and signals come in here
    const pid = take();
    if (pid === undefined) break;
    record(runOneOutcome(pid, r.bundle, { ...r.runOpts, elfCache }));
  }
  for (const m of members) if (m.state === 'starting') finish(m);
  if (members.some((m) => m.state !== 'done')) await finished;
  if (interrupted) interrupted.notAttempted = r.pids.slice(next);
  return { processes, interrupted };
}
