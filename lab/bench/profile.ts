/**
 * CPU profiles of a command (`node --cpu-prof`), summarised by self time per
 * source file and per function: the evidence a benchmark gives when a
 * figure misses its goal. V8 samples the main thread; "(idle)" is time it
 * spent waiting (for the target, for I/O), "(garbage collector)" is GC.
 * The bundled ulp-pack's frames are named by the sources they came from,
 * through the bundle's source maps (lab/bundle.ts).
 */
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { SourceMap } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { PACK_CHUNKS } from '../bundle.js';
import { ROOT } from '../root.js';
import { markdownTable } from './common.js';

export interface ProfileEntry {
  name: string;
  /** ms (to 0.01); inclusive ms in Profile.inclusive. */
  selfMs: number;
  share: number;
}

export interface Profile {
  functions: ProfileEntry[];
  files: ProfileEntry[];
  /**
   * Inclusive time (self + callees) of the project's own functions (not
   * node's internals, not node_modules), each stack counted once per
   * function: where the time goes by caller, e.g. how much of the waiting
   * (runtime/sys/wait.ts) happens under borrow(), under the unwinder's
   * registration, or under the stub page's creation. Every project function
   * is listed, largest first.
   */
  inclusive: ProfileEntry[];
  /** Sampled time, idle included. */
  totalMs: number;
  /** Sampled time the thread was not idle. */
  busyMs: number;
}

/**
 * Self time per function and per file from a .cpuprofile (V8's sampled call
 * tree). With `within`, the inclusive list covers only the subtrees rooted
 * at the functions of that name (e.g. the code that runs inside the pause),
 * every function in them counted, node's own included.
 */
export function summariseProfile(file: string, top = 15, within?: RegExp): Profile {
  const prof = JSON.parse(readFileSync(file, 'utf8')) as {
    nodes: Array<{
      id: number;
      callFrame: { functionName: string; url: string; lineNumber: number };
      children?: number[];
    }>;
    samples: number[];
    timeDeltas: number[];
  };
  for (const n of prof.nodes) n.callFrame = unbundled(n.callFrame);
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map<number, number>();
  prof.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (prof.timeDeltas[i] ?? 0) / 1000));
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  const fn = new Map<string, number>();
  const files = new Map<string, number>();
  const inclusive = new Map<string, number>();
  let idle = 0;
  for (const [id, ms] of self) {
    const cf = byId.get(id)!.callFrame;
    if (cf.functionName === '(idle)') idle += ms;
    const file = fileOf(cf.url);
    const name = nameOf(cf);
    fn.set(name, (fn.get(name) ?? 0) + ms);
    files.set(file, (files.get(file) ?? 0) + ms);
    // Up the stack: every function on it gets the sample once (recursion counted once).
    const stack: Array<{ functionName: string; url: string; lineNumber: number }> = [];
    for (let at: number | undefined = id; at !== undefined; at = parent.get(at))
      stack.push(byId.get(at)!.callFrame);
    let frames = stack.filter((f) => isProjectFile(fileOf(f.url)));
    if (within) {
      let root = -1; // the outermost frame of that name: its whole subtree counts
      stack.forEach((f, i) => {
        if (within.test(f.functionName)) root = i;
      });
      frames = root < 0 ? [] : stack.slice(0, root + 1);
    }
    const seen = new Set<string>();
    for (const f of frames) {
      const key = nameOf(f);
      if (seen.has(key)) continue;
      seen.add(key);
      inclusive.set(key, (inclusive.get(key) ?? 0) + ms);
    }
  }
  const list = (m: Map<string, number>, n = top) =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([name, ms]) => ({ name, selfMs: Math.round(ms * 100) / 100, share: ms / total }));
  return {
    functions: list(fn),
    files: list(files),
    inclusive: list(inclusive, Infinity),
    totalMs: Math.round(total),
    busyMs: Math.round(total - idle),
  };
}

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber?: number;
}

const sourceMaps = new Map<string, SourceMap | undefined>();

/**
 * A frame of a chunk of the ulp-pack bundle as the frame of the source it
 * came from (its file and line), read from the chunk's source map; any other
 * frame, or one the map does not cover, as it is. Without this every
 * function of the packer would be in one file, and none counted as the
 * project's own.
 */
export function unbundled(cf: CallFrame): CallFrame {
  if (!cf.url.startsWith('file://') || !cf.url.includes(`/${PACK_CHUNKS}/`)) return cf;
  const path = fileURLToPath(cf.url);
  if (!sourceMaps.has(path)) {
    let map: SourceMap | undefined;
    try {
      map = new SourceMap(JSON.parse(readFileSync(`${path}.map`, 'utf8')));
    } catch {
      map = undefined; // no map beside it (a package's copy): the chunk's own names
    }
    sourceMaps.set(path, map);
  }
  const at = sourceMaps.get(path)?.findEntry(cf.lineNumber, cf.columnNumber ?? 0);
  if (!at || !('originalSource' in at) || !at.originalSource) return cf;
  return {
    ...cf,
    url: pathToFileURL(resolve(dirname(path), at.originalSource)).href,
    lineNumber: at.originalLine,
  };
}

/** A profile URL as a path relative to this checkout (dist/... for the compiled commands), wherever it is. */
function fileOf(url: string): string {
  const path = url.replace(/^file:\/\//, '');
  return (
    (path.startsWith(`${ROOT}/`) ? path.slice(ROOT.length + 1) : path).replace(
      /^.*\/node_modules\//,
      'node_modules/',
    ) || '(native)'
  );
}

function nameOf(cf: { functionName: string; url: string; lineNumber: number }): string {
  return `${cf.functionName || '(anonymous)'} ${fileOf(cf.url)}${cf.url ? `:${cf.lineNumber + 1}` : ''}`;
}

/** The project's own code: compiled (dist/) or run from source, not node's internals and not dependencies. */
function isProjectFile(file: string): boolean {
  return /^(dist\/)?(common|elf|patches|packer|runtime|trigger|bin|scripts)\//.test(file);
}

/** Summarises the profile `node --cpu-prof --cpu-prof-dir DIR` wrote into `dir`. */
export function profileIn(dir: string, top = 15, within?: RegExp): Profile {
  const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
  if (!file) throw new Error(`no .cpuprofile in ${dir}`);
  return summariseProfile(join(dir, file), top, within);
}

/** An empty folder for a profile (removed first if it exists). */
export function freshDir(dir: string): string {
  rmSync(dir, { recursive: true, force: true });
  return dir;
}

/**
 * Three tables: self time by file, self time by function (the first `top`
 * of each), and inclusive time of the project's functions (the first
 * `inclusiveTop`; 0 leaves the table out).
 */
export function renderProfile(p: Profile, top = 10, inclusiveTop = 0): string {
  const row = (f: ProfileEntry) => [f.name, f.selfMs.toFixed(0), `${(f.share * 100).toFixed(1)} %`];
  return [
    markdownTable(['file', 'self ms', 'share'], p.files.slice(0, top).map(row)),
    markdownTable(['function', 'self ms', 'share'], p.functions.slice(0, top).map(row)),
    ...(inclusiveTop > 0 && p.inclusive?.length
      ? [
          markdownTable(
            ['project function (inclusive: itself and what it calls)', 'ms', 'share'],
            p.inclusive.slice(0, inclusiveTop).map(row),
          ),
        ]
      : []),
  ].join('\n');
}
