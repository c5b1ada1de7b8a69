/**
 * The effects of entry redirects (plan: redirects.ts, code: redirect-code.ts,
 * journal: redirect-journal.ts): read what earlier switches wrote, make the
 * plan while the process runs, create the new journal's mapping before the
 * pause, write jumps and journal inside the pause, drop older journals after.
 *
 * Code pages are written through /proc/PID/mem or PTRACE_POKEDATA
 * (Session.poke): the kernel gives the process a private copy of each page
 * it changes, as it does for a debugger's breakpoint. A child forked later
 * inherits that copy, jumps included, which is right: it runs the same
 * builds with the same live one.
 */
import { STT_FUNC, STT_GNU_IFUNC, type ElfObject } from '../../elf/index.js';
import type { Mapping } from '../maps.js';
import type { RemoteMemory } from '../memory.js';
import type { Session } from '../session.js';
import { MAP, MFD, PROT } from '../sys/constants.js';
import type { ProcessObject } from './model.js';
import { hex } from '../../common/format.js';
import { journalMemfdName } from '../memfd-names.js';
import { encodeJournal, journalMapSize, readJournal, type Journal } from './redirect-journal.js';
import { buildKey, planRedirects, type CodeWrite, type RedirectPlan, type StepFunctions } from './redirects.js';

export interface RedirectState {
  journal: Journal | undefined;
  /** The previous journal's jumps that memory still holds. */
  active: Journal['redirects'];
  mappings: Mapping[];
}

export function readRedirectState(mem: RemoteMemory, maps: readonly Mapping[], soname: string): RedirectState {
  const { journal, mappings } = readJournal(mem, maps, soname);
  const active = (journal?.redirects ?? []).filter((r) => {
    const written = Buffer.from(r.written, 'hex');
    return mem.tryRead(BigInt(r.at), written.length)?.equals(written) ?? false;
  });
  return { journal, active, mappings };
}

function functionSymbols(elf: ElfObject): Map<string, { start: bigint; end: bigint }> {
  const out = new Map<string, { start: bigint; end: bigint }>();
  for (const s of [...elf.dynamicSymbols, ...elf.symtab]) {
    if (s.shndx === 0 || s.size === 0n || (s.type !== STT_FUNC && s.type !== STT_GNU_IFUNC) || out.has(s.name)) continue;
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
  return planRedirects({ builds: req.builds, target: req.target, previous: req.state.journal, active: req.state.active, step: req.step, code, lookup });
}

/** Maps an empty journal of `size` bytes (before the pause; a borrowed thread). */
export function mapJournal(s: Session, soname: string, size: number): { addr: bigint; size: number } {
  const mapSize = journalMapSize(size);
  const fd = s.sys.memfdCreate(journalMemfdName(soname), MFD.CLOEXEC);
  try {
    s.sys.ftruncate(fd, mapSize);
    return { addr: s.sys.mmap(0n, mapSize, PROT.READ, MAP.PRIVATE, fd, 0), size: mapSize };
  } finally {
    s.sys.close(fd);
  }
}

export interface RedirectOutcome {
  /** Jumps active after the switch. */
  redirects: Journal['redirects'];
  uncovered: Journal['uncovered'];
  written: number;
  restored: number;
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
export function threadsInside(threads: readonly ThreadPosition[], writes: readonly CodeWrite[]): Set<bigint> {
  const hit = new Set<bigint>();
  for (const w of writes) {
    const end = w.at + BigInt(Math.max(w.bytes.length, w.expect.length));
    for (const t of threads) {
      if ((t.rip > w.at && t.rip < end) || (t.inSyscall && t.rip - 2n >= w.at && t.rip - 2n < end)) hit.add(w.at);
    }
  }
  return hit;
}

/**
 * Inside the pause: writes the journal, then the jumps and restores, each
 * after checking the code still holds what the plan expects. `blocked` are
 * the sites a thread is executing (threadsInside): left as they are and
 * reported. Undoes its own writes if one fails.
 */
export function applyRedirects(s: Session, plan: RedirectPlan, journalAt: { addr: bigint; size: number }, head: Pick<Journal, 'soname' | 'generation' | 'live'>, blocked: ReadonlySet<bigint>): RedirectOutcome {
  const uncovered = [...plan.uncovered];
  const skip = new Set<bigint>();
  const holds = (w: CodeWrite) => s.memory.tryRead(w.at, w.expect.length)?.equals(w.expect) ?? false;
  for (const w of plan.writes) {
    if (blocked.has(w.at)) {
      skip.add(w.at);
      uncovered.push({ fn: w.redirect.from, reason: 'a thread was executing its entry bytes at every attempt' });
    } else if (!holds(w)) {
      skip.add(w.at);
      uncovered.push({ fn: w.redirect.from, reason: `its entry bytes at ${hex(w.at)} changed since they were read (another tool patched them?)` });
    }
  }
  const restores = plan.restores.filter((r) => holds(r));
  const writes = plan.writes.filter((w) => !skip.has(w.at));
  const redirects = plan.redirects
    .filter((r) => !skip.has(r.at))
    .map((r) => ({ at: hex(r.at), original: r.original.toString('hex'), written: r.written.toString('hex'), from: r.from, to: r.to }));
  const journal: Journal = { format: 1, ...head, pairs: plan.pairs, unpaired: plan.unpaired, redirects, uncovered };
  const bytes = encodeJournal(journal);
  if (bytes.length > journalAt.size) throw new Error(`redirect journal of ${bytes.length} bytes does not fit its ${journalAt.size}-byte mapping`);
  // The journal first: a switch killed half-way leaves one that names every jump it might have written.
  s.poke(journalAt.addr, bytes);
  const done: CodeWrite[] = [];
  try {
    for (const w of [...restores, ...writes]) {
      done.push(w);
      s.poke(w.at, w.bytes);
    }
  } catch (e) {
    for (const w of done.reverse()) {
      try {
        s.poke(w.at, w.expect);
      } catch {
        // Best effort: the journal still describes every site.
      }
    }
    throw e;
  }
  return { redirects, uncovered, written: writes.length, restored: restores.length };
}
