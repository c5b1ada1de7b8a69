/**
 * Switch: with every thread stopped, make the target build live. Everything
 * was decided before the stop (switch-plan.ts) on values read while the
 * process ran; here the watched pages are read again in one system call,
 * the words the program or lazy binding may have changed since are decided
 * again (only those), and the writes are made: slots and function
 * pointers, then the redirect journal, then the jumps. Every write is
 * journaled; if one fails, they are undone newest first and the process
 * resumes on its old version.
 */
import { UlpError } from '../../common/errors.js';
import { PAGE_SIZE, pageAlignDown } from '../../elf/index.js';
import type { RemoteMemory } from '../memory.js';
import type { Journal } from './redirect-journal.js';
import type { RedirectPlan } from './redirects.js';
import type { ClassifyContext } from './relink.js';
import type { PauseIO, Watched } from './pause-io.js';
import {
  codeRanges,
  recheckWords,
  settleRedirects,
  type RedirectSettlement,
  type PatchBlock,
  type QuietRange,
  type RedirectSkip,
  type WordPlan,
  type WordRun,
} from './switch-plan.js';

export { emptyCounts, type PointerCounts, type WordWrite as JournalEntry } from './switch-plan.js';

/**
 * Reads the current value of every slot, fetching each page that holds slots
 * once instead of one read per slot (a large process has thousands).
 */
export function readSlots(mem: RemoteMemory, slots: readonly { addr: bigint }[]): bigint[] {
  const pages = new Map<bigint, Buffer | undefined>();
  return slots.map((s) => {
    const page = pageAlignDown(s.addr);
    const off = Number(s.addr - page);
    if (off + 8 > Number(PAGE_SIZE)) return mem.readU64(s.addr);
    if (!pages.has(page)) pages.set(page, mem.tryRead(page, Number(PAGE_SIZE)));
    const buf = pages.get(page);
    return buf ? buf.readBigUInt64LE(off) : mem.readU64(s.addr);
  });
}

/** Everything the pause needs, made before it. */
export interface PausePlan {
  words: WordPlan;
  ctx: ClassifyContext;
  redirects: RedirectPlan;
  head: Pick<Journal, 'soname' | 'generation' | 'live'>;
  /** The code of the family's builds: jumps and restores there are merged into blocks (switch-plan.ts patchBlocks). */
  code: readonly QuietRange[];
  /** The redirects as written when no thread sits in their bytes and no code changed: the journal already encoded. */
  expected: RedirectSettlement;
  journalAt: { addr: bigint; size: number };
  /** Filled inside the pause (made here so that the pause does not allocate them). */
  slotNow: bigint[];
  siteNow: bigint[];
}

/** The ranges the pause reads, in the order switchInPause indexes them: slots, function pointers, jump sites, restore sites. */
export function watchedRanges(
  slots: readonly { addr: bigint }[],
  sites: readonly { addr: bigint }[],
  redirects: RedirectPlan,
): Watched[] {
  return [
    ...slots.map((s) => ({ addr: s.addr, len: 8 })),
    ...sites.map((s) => ({ addr: s.addr, len: 8 })),
    ...redirects.writes.map((w) => ({ addr: w.at, len: w.expect.length })),
    ...redirects.restores.map((w) => ({ addr: w.at, len: w.expect.length })),
  ];
}

/** Reads the watched pages while the process runs and keeps them: the values the words are planned on, which the pause compares with. */
export function readForPlan(
  io: PauseIO,
  slots: number,
  sites: number,
): { slotValues: bigint[]; siteValues: bigint[] } {
  io.read();
  io.keep();
  return {
    slotValues: Array.from({ length: slots }, (_, i) => io.u64(i)),
    siteValues: Array.from({ length: sites }, (_, i) => io.u64(slots + i)),
  };
}

export function pausePlan(
  words: WordPlan,
  ctx: ClassifyContext,
  redirects: RedirectPlan,
  head: PausePlan['head'],
  journalAt: PausePlan['journalAt'],
): PausePlan {
  const code = codeRanges(ctx.family.builds);
  const expected = settleRedirects(redirects, head, code);
  checkJournalFits(expected, journalAt);
  return {
    words,
    ctx,
    redirects,
    head,
    code,
    expected,
    journalAt,
    slotNow: new Array<bigint>(words.slots.length),
    siteNow: new Array<bigint>(words.sites.length),
  };
}

function checkJournalFits(r: RedirectSettlement, at: PausePlan['journalAt']): void {
  if (r.journal.length > at.size)
    throw new Error(`redirect journal of ${r.journal.length} bytes does not fit its ${at.size}-byte mapping`);
}

export interface PauseOutcome {
  words: WordPlan;
  redirects: RedirectSettlement['outcome'];
  /** Time spent reading back and comparing, and writing (ms). */
  checkMs: number;
  writeMs: number;
}

/**
 * Inside the pause. `blocked`: jump sites a thread is executing
 * (redirect-switch.ts threadsInside), left as they are and reported.
 */
export function switchInPause(io: PauseIO, p: PausePlan, blocked: ReadonlySet<bigint>): PauseOutcome {
  const t0 = performance.now();
  io.read();
  const words = wordsNow(io, p);
  const settled = settleInPause(io, p, blocked, p.slotNow.length + p.siteNow.length);
  const t1 = performance.now();
  const done = writeWords(io, words.blocks);
  try {
    writeRedirects(io, settled, p.journalAt);
  } catch (e) {
    // writeRedirects took its own writes back; the words go too.
    undoBlocks(io, words.blocks, done);
    throw new UlpError(
      'SWITCH_ROLLED_BACK',
      `the switch failed while writing the entry redirects and was rolled back: ${(e as Error).message}`,
      'The process runs the version it ran before; see the cause above.',
      undefined,
      { cause: e },
    );
  }
  return { words, redirects: settled.outcome, checkMs: t1 - t0, writeMs: performance.now() - t1 };
}

/** The plan's words, unless one of the watched words changed since the plan was made (then those are decided again). */
function wordsNow(io: PauseIO, p: PausePlan): WordPlan {
  const nSlots = p.slotNow.length;
  const nSites = p.siteNow.length;
  if (io.sameWords(0, nSlots + nSites)) return p.words;
  for (let i = 0; i < nSlots; i++) p.slotNow[i] = io.u64(i);
  for (let i = 0; i < nSites; i++) p.siteNow[i] = io.u64(nSlots + i);
  return recheckWords(p.words, p.slotNow, p.siteNow, p.ctx);
}

/** The expected settlement, unless a thread sits in a jump's bytes or the code no longer holds what the plan read. */
function settleInPause(
  io: PauseIO,
  p: PausePlan,
  blocked: ReadonlySet<bigint>,
  first: number,
): RedirectSettlement {
  let skips: RedirectSkip[] | undefined;
  let gone: Set<bigint> | undefined;
  p.redirects.writes.forEach((w, i) => {
    if (blocked.has(w.at)) (skips ??= []).push({ at: w.at, reason: 'thread-inside' });
    else if (!io.holds(first + i, w.expect)) (skips ??= []).push({ at: w.at, reason: 'changed' });
  });
  const restoresAt = first + p.redirects.writes.length;
  p.redirects.restores.forEach((r, i) => {
    if (!io.holds(restoresAt + i, r.expect)) (gone ??= new Set()).add(r.at);
  });
  if (!skips && !gone) return p.expected;
  const settled = settleRedirects(p.redirects, p.head, p.code, skips, gone);
  checkJournalFits(settled, p.journalAt);
  return settled;
}

/** Writes the blocks in order; returns how many were written. */
function writeWords(io: PauseIO, blocks: readonly PatchBlock<WordRun>[]): number {
  let n = 0;
  try {
    for (; n < blocks.length; n++) io.writeBlock(blocks[n]!);
  } catch (err) {
    // A block that fails half-way is undone whole: restoring a word that still holds its old value is harmless.
    undoBlocks(io, blocks, n + 1);
    const planned = blocks.reduce((k, b) => k + b.patches.reduce((m, r) => m + r.words.length, 0), 0);
    throw new UlpError(
      'SWITCH_ROLLED_BACK',
      `the switch failed while writing ${planned} slots and was rolled back: ${(err as Error).message}`,
      'The process runs the version it ran before; see the cause above.',
      { planned },
      { cause: err },
    );
  }
  return n;
}

/**
 * Writes back what the patches of the first `count` blocks replaced, newest
 * first; `bestEffort`: a write that fails does not stop the others.
 */
function undoBlocks(io: PauseIO, blocks: readonly PatchBlock[], count: number, bestEffort = false): void {
  for (let i = Math.min(count, blocks.length) - 1; i >= 0; i--) {
    const patches = blocks[i]!.patches;
    for (let j = patches.length - 1; j >= 0; j--) {
      try {
        io.write(patches[j]!.addr, patches[j]!.undo);
      } catch (e) {
        if (!bestEffort) throw e;
      }
    }
  }
}

/** The journal first: a switch killed half-way leaves one that names every jump it might have written. */
function writeRedirects(io: PauseIO, r: RedirectSettlement, journalAt: PausePlan['journalAt']): void {
  io.write(journalAt.addr, r.journal);
  let n = 0;
  try {
    for (; n < r.blocks.length; n++) io.writeBlock(r.blocks[n]!);
  } catch (e) {
    // Best effort: the journal still describes every site.
    undoBlocks(io, r.blocks, n + 1, true);
    throw e;
  }
}

const ZERO_WORD = Buffer.alloc(8);

/**
 * Runs the pause's own code once before the pause, with the threads
 * running: the read, the comparisons and a write that changes nothing (a
 * zero word into the new journal's mapping, zero-filled still; through
 * /proc/PID/mem only, since no thread is stopped to poke with). A fresh
 * trigger's V8 would otherwise interpret and compile them inside the pause.
 * First the blocks' images are made (PauseIO.prepare): the pause then
 * writes each block as made, after one comparison of its span.
 */
export function warmUp(io: PauseIO, p: PausePlan): void {
  io.prepare(p.words.blocks);
  io.prepare(p.expected.blocks);
  io.read();
  wordsNow(io, p);
  settleInPause(io, p, new Set(), p.slotNow.length + p.siteNow.length);
  io.tryWriteNow(p.journalAt.addr, ZERO_WORD);
}
