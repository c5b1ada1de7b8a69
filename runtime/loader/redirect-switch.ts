/**
 * The effects of entry redirects (plan: redirects.ts, code: redirect-code.ts,
 * journal: redirect-journal.ts): read what earlier switches wrote, make the
 * plan while the process runs, create the new journal's mapping before the
 * pause (jumps and journal are written inside it by switch.ts), drop older
 * journals after.
 *
 * Code pages are written through /proc/PID/mem or PTRACE_POKEDATA
 * (pause-io.ts): the kernel gives the process a private copy of each page
 * it changes, as it does for a debugger's breakpoint. A child forked later
 * inherits that copy, jumps included, which is right: it runs the same
 * builds with the same live one.
 */
import { STT_FUNC, STT_GNU_IFUNC, type ElfObject } from '../../elf/index.js';
import type { Mapping } from '../maps.js';
import { sizeMemfd, type RemoteMemory } from '../memory.js';
import type { Session } from '../session.js';
import { MAP, MFD, PROT } from '../sys/constants.js';
import type { ProcessObject } from './model.js';
import { journalMemfdName } from '../memfd-names.js';
import { journalMapSize, readJournal, type Journal } from './redirect-journal.js';
import {
  buildKey,
  planRedirects,
  type CodeWrite,
  type RedirectPlan,
  type StepFunctions,
} from './redirects.js';

export interface RedirectState {
  journal: Journal | undefined;
  /** The previous journal's jumps that memory still holds. */
  active: Journal['redirects'];
  mappings: Mapping[];
  /** The mapping that holds `journal`. */
  current: Mapping | undefined;
}

export function readRedirectState(
  mem: RemoteMemory,
  maps: readonly Mapping[],
  soname: string,
): RedirectState {
  const { journal, mappings, current } = readJournal(mem, maps, soname);
  const active = (journal?.redirects ?? []).filter((r) => {
    const written = Buffer.from(r.written, 'hex');
    return mem.tryRead(BigInt(r.at), written.length)?.equals(written) ?? false;
  });
  return { journal, active, mappings, current };
}

function functionSymbols(elf: ElfObject): Map<string, { start: bigint; end: bigint }> {
  const out = new Map<string, { start: bigint; end: bigint }>();
  for (const s of [...elf.dynamicSymbols, ...elf.symtab]) {
    if (
      s.shndx === 0 ||
      s.size === 0n ||
      (s.type !== STT_FUNC && s.type !== STT_GNU_IFUNC) ||
      out.has(s.name)
    )
      continue;
    out.set(s.name, { start: s.value, end: s.value + s.size });
  }
  return out;
}

export interface RedirectPlanRequest {
  mem: RemoteMemory;
  builds: readonly ProcessObject[];
  target: ProcessObject;
  state: RedirectState;
  step: StepFunctions | undefined;
  /** Parses of build files the trigger has (the bundle's builds), by build-id: their .symtab names static functions too. */
  files: ReadonlyMap<string, ElfObject>;
}

/** Plans while the process runs; the code read is the original code (earlier jumps taken out). */
export function planSwitchRedirects(req: RedirectPlanRequest): RedirectPlan {
  const symbols = new Map<string, Map<string, { start: bigint; end: bigint }>>();
  const lookup = (b: ProcessObject, name: string) => {
    const k = buildKey(b);
    let m = symbols.get(k);
    if (!m) symbols.set(k, (m = functionSymbols(req.files.get(k) ?? b.elf)));
    return m.get(name);
  };
  const code = (b: ProcessObject, start: bigint, end: bigint) => {
    const addr = b.bias + start;
    const buf = req.mem.tryRead(addr, Number(end - start));
    if (!buf) return undefined;
    for (const r of req.state.active) {
      const at = BigInt(r.at);
      const original = Buffer.from(r.original, 'hex');
      if (at + BigInt(original.length) <= addr || at >= addr + BigInt(buf.length)) continue;
      original.copy(buf, Number(at - addr));
    }
    return buf;
  };
  return planRedirects({
    builds: req.builds,
    target: req.target,
    previous: req.state.journal,
    active: req.state.active,
    step: req.step,
    code,
    lookup,
  });
}

/**
 * Maps an empty journal of `size` bytes (before the pause; a borrowed
 * thread). With `spare`, the memfd is mapped a second time for the next
 * switch to write its journal into (journalPlacement): private mappings, so
 * what is written into one never shows in the other.
 */
export function mapJournal(
  s: Session,
  soname: string,
  size: number,
  spare = false,
): { addr: bigint; size: number; spare?: bigint } {
  const mapSize = journalMapSize(size);
  const fd = s.sys.memfdCreate(journalMemfdName(soname), MFD.CLOEXEC);
  try {
    sizeMemfd(s.pid, fd, mapSize);
    const addr = s.sys.mmap(0n, mapSize, PROT.READ, MAP.PRIVATE, fd, 0);
    let second: bigint | undefined;
    try {
      if (spare) second = s.sys.mmap(0n, mapSize, PROT.READ, MAP.PRIVATE, fd, 0);
    } catch {
      // No spare: the next switch maps a new journal, as without one.
    }
    return { addr, size: mapSize, ...(second !== undefined ? { spare: second } : {}) };
  } finally {
    s.sys.close(fd);
  }
}

/** Where a stopped thread will execute next; `inSyscall`: stopped in a system call, which the kernel may restart. */
export interface ThreadPosition {
  rip: bigint;
  inSyscall: boolean;
}

/**
 * The sites whose bytes a write would change under a stopped thread: its
 * instruction pointer inside them (not at their first byte, where it simply
 * takes the jump), or, for a thread in a system call, the `syscall`
 * instruction 2 bytes back, which the kernel re-executes when it restarts
 * the call after the stop.
 */
export function threadsInside(
  threads: readonly ThreadPosition[],
  writes: readonly CodeWrite[] | EntrySites,
): Set<bigint> {
  const sites = Array.isArray(writes) ? entrySites(writes as readonly CodeWrite[]) : (writes as EntrySites);
  const hit = new Set<bigint>();
  for (const t of threads) {
    sitesHolding(sites, t.rip, false, hit);
    if (t.inSyscall) sitesHolding(sites, t.rip - 2n, true, hit);
  }
  return hit;
}

/**
 * The bytes the jumps of a switch replace, as ranges sorted by start, with
 * the longest range's length: made before the pause, so that finding the
 * threads inside them (threadsInside) is a binary search per thread, with
 * nothing allocated.
 */
export interface EntrySites {
  at: readonly bigint[];
  end: readonly bigint[];
  longest: bigint;
}

export function entrySites(writes: readonly CodeWrite[]): EntrySites {
  const sorted = writes
    .map((w) => [w.at, w.at + BigInt(Math.max(w.bytes.length, w.expect.length))] as const)
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  let longest = 0n;
  for (const [a, e] of sorted) if (e - a > longest) longest = e - a;
  return { at: sorted.map((r) => r[0]), end: sorted.map((r) => r[1]), longest };
}

/** Adds the sites holding byte `pc` to `hit`: from their second byte on, or from the first when `fromFirst`. */
function sitesHolding(sites: EntrySites, pc: bigint, fromFirst: boolean, hit: Set<bigint>): void {
  const { at, end } = sites;
  // The first site that may hold pc starts at most `longest` bytes before it.
  const low = pc - sites.longest;
  let lo = 0;
  let hi = at.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (at[mid]! < low) lo = mid + 1;
    else hi = mid;
  }
  for (let i = lo; i < at.length && at[i]! <= pc; i++)
    if ((fromFirst ? pc >= at[i]! : pc > at[i]!) && pc < end[i]!) hit.add(at[i]!);
}
