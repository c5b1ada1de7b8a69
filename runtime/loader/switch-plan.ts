/**
 * The switch as data: every byte the pause writes, decided before the pause
 * from values read while the process runs. Pure (no process, no ptrace):
 * the effects live in switch.ts (the pause) and switch-library.ts (before
 * and after it), and the dry run and the real run build their report from
 * the same plan (switchCounts).
 *
 * What can change between the plan and the stop is only what the process
 * itself writes: a lazy slot ld.so binds, a function pointer the program
 * stores in the shared data, code another tool patches. So the pause reads
 * those words again and compares them with the values the plan was made on;
 * only when one differs is that entry decided again (recheckWords), which
 * on a quiet process means a few thousand comparisons and nothing else.
 */
import { encodeJournal, type Journal } from './redirect-journal.js';
import { classifyPointer, type CodePointerSite } from './code-pointers.js';
import { classifySlot, type ClassifyContext, type Slot, type SlotState } from './relink.js';
import type { CodeWrite, RedirectPlan } from './redirects.js';
import type { ProcessObject } from './model.js';
import { RelocType } from '../../elf/types.js';

/** One word the switch writes, with the value it replaces (the rollback writes it back). */
export interface WordWrite {
  addr: bigint;
  before: bigint;
  after: bigint;
  /** A symbol slot rewritten or bound, or a load-time function pointer of the shared data retargeted. */
  kind: 'stale' | 'lazy' | 'pointer';
}

export interface PointerCounts {
  /** Load-time function pointers moved to the target build. */
  retargeted: number;
  /** Sites the program wrote itself: left alone. */
  overwritten: number;
  /** Already pointing at the target build. */
  current: number;
}

export type SlotCounts = Record<SlotState['kind'], number>;

const KINDS: SlotState['kind'][] = [
  'target',
  'stale',
  'lazy',
  'shared-data',
  'unmatched',
  'missing',
  'other',
];

export function emptyCounts(): SlotCounts {
  return Object.fromEntries(KINDS.map((k) => [k, 0])) as SlotCounts;
}

/** Bytes the pause writes at addr, and the bytes that undo them. */
export interface Patch {
  addr: bigint;
  bytes: Buffer;
  undo: Buffer;
}

/** Consecutive words written as one. */
export interface WordRun extends Patch {
  words: WordWrite[];
}

/**
 * Patches written with one write: consecutive patches that lie in one quiet
 * range, where the bytes between them are written back as the pause read
 * them (every thread stopped). A GOT of a library with thousands of imports
 * has its rewritten slots scattered among ones that stay, a library's code
 * its jumps among code that stays; one write per patch costs a system call
 * each. Function pointers of the shared data lie in no quiet range (the
 * program writes there), so they are never merged.
 */
export interface PatchBlock<P extends Patch = Patch> {
  addr: bigint;
  /** Bytes from addr. */
  len: number;
  patches: P[];
  /**
   * The block's bytes as written when its span still holds, in the pause,
   * what the plan read (pause-io.ts prepare): the patches over that read,
   * made before the pause. Absent: the patches are laid over the pause's own read.
   */
  image?: Buffer;
}

/** [start, end) runtime ranges nothing in the process writes once it runs, but ld.so binding a lazy slot (quietRanges) or nothing at all (code). */
export type QuietRange = readonly [bigint, bigint];

/**
 * Each object's RELRO segment (read-only once relocated) and its .got.plt,
 * the words from DT_PLTGOT to its last JUMP_SLOT: the three words ld.so
 * reserves and the lazy slots, which only ld.so writes, on a thread that
 * is stopped when the pause reads them.
 */
export function quietRanges(objects: readonly ProcessObject[]): QuietRange[] {
  const out: QuietRange[] = [];
  for (const o of objects) {
    const relro = o.elf.relro;
    if (relro) out.push([o.bias + relro.vaddr, o.bias + relro.vaddr + relro.memsz]);
    const pltgot = o.elf.dynamic?.pltgot;
    if (pltgot === undefined) continue;
    let last = -1n;
    for (const r of o.elf.relocations)
      if (r.type === RelocType.JUMP_SLOT && r.offset >= pltgot && r.offset > last) last = r.offset;
    if (last >= 0n) out.push([o.bias + pltgot, o.bias + last + 8n]);
  }
  return out.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
}

/** The slots and function pointers of a switch, the values they were decided on, and what to write. */
export interface WordPlan {
  quiet: readonly QuietRange[];
  slots: readonly Slot[];
  sites: readonly CodePointerSite[];
  slotValues: readonly bigint[];
  siteValues: readonly bigint[];
  /** Per slot, its state and, for a write, its index in `words` (the recheck replaces entries in place). */
  slotStates: readonly SlotState[];
  siteKinds: readonly ReturnType<typeof classifyPointer>['kind'][];
  words: WordWrite[];
  runs: WordRun[];
  blocks: PatchBlock<WordRun>[];
  counts: SlotCounts;
  pointers: PointerCounts;
}

function slotWrite(slot: Slot, value: bigint, state: SlotState): WordWrite | undefined {
  return state.kind === 'stale' || state.kind === 'lazy'
    ? { addr: slot.addr, before: value, after: state.value, kind: state.kind }
    : undefined;
}

function siteWrite(
  site: CodePointerSite,
  value: bigint,
  kind: ReturnType<typeof classifyPointer>['kind'],
): WordWrite | undefined {
  return kind === 'load-time'
    ? { addr: site.addr, before: value, after: site.targetValue, kind: 'pointer' }
    : undefined;
}

function pointerCounts(kinds: readonly ReturnType<typeof classifyPointer>['kind'][]): PointerCounts {
  const p: PointerCounts = { retargeted: 0, overwritten: 0, current: 0 };
  for (const k of kinds) p[k === 'load-time' ? 'retargeted' : k === 'target' ? 'current' : 'overwritten']++;
  return p;
}

function assemble(
  quiet: readonly QuietRange[],
  slots: readonly Slot[],
  sites: readonly CodePointerSite[],
  slotValues: readonly bigint[],
  siteValues: readonly bigint[],
  slotStates: SlotState[],
  siteKinds: ReturnType<typeof classifyPointer>['kind'][],
): WordPlan {
  const counts = emptyCounts();
  const words: WordWrite[] = [];
  slotStates.forEach((st, i) => {
    counts[st.kind]++;
    const w = slotWrite(slots[i]!, slotValues[i]!, st);
    if (w) words.push(w);
  });
  siteKinds.forEach((k, i) => {
    const w = siteWrite(sites[i]!, siteValues[i]!, k);
    if (w) words.push(w);
  });
  const runs = wordRuns(words);
  return {
    quiet,
    slots,
    sites,
    slotValues,
    siteValues,
    slotStates,
    siteKinds,
    words,
    runs,
    blocks: patchBlocks(runs, quiet),
    counts,
    pointers: pointerCounts(siteKinds),
  };
}

/** Decides every word of the switch from the values the slots and sites hold now. */
export function planWords(
  slots: readonly Slot[],
  slotValues: readonly bigint[],
  sites: readonly CodePointerSite[],
  siteValues: readonly bigint[],
  ctx: ClassifyContext,
  quiet: readonly QuietRange[] = [],
): WordPlan {
  if (slotValues.length !== slots.length || siteValues.length !== sites.length)
    throw new Error('planWords: one value per slot and per site');
  const slotStates = slots.map((s, i) => classifySlot(s, slotValues[i]!, ctx));
  const siteKinds = sites.map((s, i) => classifyPointer(s, siteValues[i]!).kind);
  return assemble(quiet, slots, sites, slotValues, siteValues, slotStates, siteKinds);
}

/**
 * The plan for the values read inside the pause. `plan` itself when every
 * word holds what it held when the plan was made; otherwise the entries
 * whose word changed are classified again and the rest kept.
 */
export function recheckWords(
  plan: WordPlan,
  slotValues: ArrayLike<bigint>,
  siteValues: ArrayLike<bigint>,
  ctx: ClassifyContext,
): WordPlan {
  let changed = false;
  for (let i = 0; i < plan.slotValues.length && !changed; i++) changed = slotValues[i] !== plan.slotValues[i];
  for (let i = 0; i < plan.siteValues.length && !changed; i++) changed = siteValues[i] !== plan.siteValues[i];
  if (!changed) return plan;
  const sv = Array.from(slotValues);
  const pv = Array.from(siteValues);
  const slotStates = plan.slots.map((s, i) =>
    sv[i] === plan.slotValues[i] ? plan.slotStates[i]! : classifySlot(s, sv[i]!, ctx),
  );
  const siteKinds = plan.sites.map((s, i) =>
    pv[i] === plan.siteValues[i] ? plan.siteKinds[i]! : classifyPointer(s, pv[i]!).kind,
  );
  return assemble(plan.quiet, plan.slots, plan.sites, sv, pv, slotStates, siteKinds);
}

/** Words grouped into runs of adjacent addresses, each encoded once: one write per run. */
export function wordRuns(words: readonly WordWrite[]): WordRun[] {
  const sorted = [...words].sort((a, b) => (a.addr < b.addr ? -1 : a.addr > b.addr ? 1 : 0));
  const groups: WordWrite[][] = [];
  for (const w of sorted) {
    const last = groups.at(-1);
    if (last && last.at(-1)!.addr + 8n === w.addr) last.push(w);
    else groups.push([w]);
  }
  return groups.map((g) => ({
    addr: g[0]!.addr,
    bytes: encodeWords(g.map((w) => w.after)),
    undo: encodeWords(g.map((w) => w.before)),
    words: g,
  }));
}

/** The code segments of `builds`, sorted: nothing writes code but the switch. */
export function codeRanges(builds: readonly ProcessObject[]): QuietRange[] {
  return builds
    .flatMap((b) => b.code.map((c) => [c.start, c.end] as const))
    .sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
}

/** Patches (sorted by address, not overlapping) merged into blocks that each lie inside one quiet range (see PatchBlock). */
export function patchBlocks<P extends Patch>(
  patches: readonly P[],
  quiet: readonly QuietRange[],
): PatchBlock<P>[] {
  const blocks: PatchBlock<P>[] = [];
  let lastRange = -1;
  for (const p of patches) {
    const end = p.addr + BigInt(p.bytes.length);
    const q = quiet.findIndex(([a, b]) => p.addr >= a && end <= b);
    const last = blocks.at(-1);
    // A gap under a page keeps the block on pages the pause reads (each patch's own): the bytes between come from there.
    const gap = last ? p.addr - (last.addr + BigInt(last.len)) : -1n;
    if (last && q >= 0 && q === lastRange && gap >= 0n && gap < 4096n) {
      last.patches.push(p);
      last.len = Number(end - last.addr);
    } else blocks.push({ addr: p.addr, len: p.bytes.length, patches: [p] });
    lastRange = q;
  }
  return blocks;
}

export function encodeWords(values: readonly bigint[]): Buffer {
  const b = Buffer.alloc(8 * values.length);
  values.forEach((v, i) => b.writeBigUInt64LE(BigInt.asUintN(64, v), 8 * i));
  return b;
}

/** Why a planned jump is not written: a thread executes its bytes, or the bytes are not what the plan read. */
export interface RedirectSkip {
  at: bigint;
  reason: 'thread-inside' | 'changed';
}

/** The entry redirects as the pause writes them: the journal first, then restores and jumps. */
export interface RedirectSettlement {
  journal: Buffer;
  restores: CodeWrite[];
  writes: CodeWrite[];
  /** Restores and jumps as the pause writes them, undone by their expected bytes. */
  blocks: PatchBlock[];
  outcome: {
    redirects: Journal['redirects'];
    uncovered: Journal['uncovered'];
    written: number;
    restored: number;
  };
}

const hexAddr = (a: bigint) => '0x' + a.toString(16);

/**
 * What the redirect part of the switch writes, given the sites that must be
 * left alone and the restores whose jump is gone already. Called before the
 * pause with none of either (the expected case, whose journal is then
 * encoded in advance) and again inside it only when the pause found one.
 */
export function settleRedirects(
  plan: RedirectPlan,
  head: Pick<Journal, 'soname' | 'generation' | 'live'>,
  code: readonly QuietRange[],
  skips: readonly RedirectSkip[] = [],
  goneRestores: ReadonlySet<bigint> = new Set(),
): RedirectSettlement {
  const skip = new Map(skips.map((s) => [s.at, s.reason]));
  const uncovered = [...plan.uncovered];
  for (const w of plan.writes) {
    const why = skip.get(w.at);
    if (why === 'thread-inside')
      uncovered.push({
        fn: w.redirect.from,
        reason: 'a thread was executing its entry bytes at every attempt',
      });
    else if (why === 'changed')
      uncovered.push({
        fn: w.redirect.from,
        reason: `its entry bytes at ${hexAddr(w.at)} changed since they were read (another tool patched them?)`,
      });
  }
  const restores = plan.restores.filter((r) => !goneRestores.has(r.at));
  const writes = plan.writes.filter((w) => !skip.has(w.at));
  const redirects = plan.redirects
    .filter((r) => !skip.has(r.at))
    .map((r) => ({
      at: hexAddr(r.at),
      original: r.original.toString('hex'),
      written: r.written.toString('hex'),
      from: r.from,
      to: r.to,
    }));
  const journal = encodeJournal({
    format: 1,
    ...head,
    pairs: plan.pairs,
    unpaired: plan.unpaired,
    redirects,
    uncovered,
  });
  const patches = [...restores, ...writes]
    .map((w) => ({ addr: w.at, bytes: w.bytes, undo: w.expect }))
    .sort((a, b) => (a.addr < b.addr ? -1 : a.addr > b.addr ? 1 : 0));
  return {
    journal,
    restores,
    writes,
    blocks: patchBlocks(patches, code),
    outcome: { redirects, uncovered, written: writes.length, restored: restores.length },
  };
}

/** The report's figures of a switch, from its plan: the same for the dry run and the real run. */
export function switchCounts(
  words: WordPlan,
  redirects: RedirectSettlement['outcome'],
): {
  counts: SlotCounts;
  pointers: PointerCounts;
  rewritten: number;
  lazyBound: number;
  redirects: { active: number; written: number; restored: number; uncovered: Journal['uncovered'] };
} {
  return {
    counts: words.counts,
    pointers: words.pointers,
    rewritten: words.words.filter((w) => w.kind === 'stale').length,
    lazyBound: words.words.filter((w) => w.kind === 'lazy').length,
    redirects: {
      active: redirects.redirects.length,
      written: redirects.written,
      restored: redirects.restored,
      uncovered: redirects.uncovered,
    },
  };
}
