/**
 * Switch: with every thread stopped, make the target build live. The plan
 * (which slots can matter) was made while the process ran; here each slot is
 * re-read and re-classified, because the program and lazy binding kept
 * writing until the stop. Every write is journaled; if one fails, the
 * journal is replayed backwards and the process resumes on its old version.
 */
import { UlpError } from '../../common/errors.js';
import { PAGE_SIZE, pageAlignDown } from '../../elf/index.js';
import type { Session } from '../session.js';
import type { RemoteMemory } from '../memory.js';
import { classifyPointer, type CodePointerSite } from './code-pointers.js';
import { classifySlot, type ClassifyContext, type Slot, type SlotState } from './relink.js';

export interface JournalEntry {
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

export interface SwitchResult {
  journal: JournalEntry[];
  /** Slot classification counts after the switch, for the report. */
  counts: Record<SlotState['kind'], number>;
  pointers: PointerCounts;
}

const KINDS: SlotState['kind'][] = ['target', 'stale', 'lazy', 'shared-data', 'unmatched', 'missing', 'other'];

export function emptyCounts(): Record<SlotState['kind'], number> {
  return Object.fromEntries(KINDS.map((k) => [k, 0])) as Record<SlotState['kind'], number>;
}

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

/** Decides and performs the relink on a fully stopped process: symbol slots, then the shared data's function pointers. */
export function relink(s: Session, slots: readonly Slot[], ctx: ClassifyContext, sites: readonly CodePointerSite[] = []): SwitchResult {
  const values = readSlots(s.memory, slots);
  const journal: JournalEntry[] = [];
  const counts = emptyCounts();
  slots.forEach((slot, i) => {
    const state = classifySlot(slot, values[i]!, ctx);
    counts[state.kind]++;
    if (state.kind === 'stale' || state.kind === 'lazy') journal.push({ addr: slot.addr, before: values[i]!, after: state.value, kind: state.kind });
  });
  const pointers: PointerCounts = { retargeted: 0, overwritten: 0, current: 0 };
  readSlots(s.memory, sites).forEach((value, i) => {
    const site = sites[i]!;
    const state = classifyPointer(site, value);
    if (state.kind === 'target') pointers.current++;
    else if (state.kind === 'overwritten') pointers.overwritten++;
    else {
      pointers.retargeted++;
      journal.push({ addr: site.addr, before: value, after: site.targetValue, kind: 'pointer' });
    }
  });
  const done: JournalEntry[] = [];
  try {
    for (const run of contiguousRuns(journal)) {
      // A run that fails half-way is rolled back whole: restoring a slot that still holds its old value is harmless.
      done.push(...run);
      s.poke(run[0]!.addr, words(run.map((e) => e.after)));
    }
  } catch (err) {
    rollback(s, done);
    throw new UlpError('SWITCH_ROLLED_BACK', `the switch failed while writing ${journal.length} slots and was rolled back: ${(err as Error).message}`, 'The process runs the version it ran before; see the cause above.', { planned: journal.length }, { cause: err });
  }
  return { journal, counts, pointers };
}

/** Journal entries grouped into runs of adjacent slots, so that each run is one write. */
function contiguousRuns(entries: readonly JournalEntry[]): JournalEntry[][] {
  const sorted = [...entries].sort((a, b) => (a.addr < b.addr ? -1 : a.addr > b.addr ? 1 : 0));
  const runs: JournalEntry[][] = [];
  for (const e of sorted) {
    const last = runs.at(-1);
    if (last && last.at(-1)!.addr + 8n === e.addr) last.push(e);
    else runs.push([e]);
  }
  return runs;
}

/** Restores journaled slots, newest first. Used on failure and by tests. */
export function rollback(s: Session, entries: readonly JournalEntry[]): void {
  for (const e of [...entries].reverse()) s.poke(e.addr, words([e.before]));
}

function words(values: readonly bigint[]): Buffer {
  const b = Buffer.alloc(8 * values.length);
  values.forEach((v, i) => b.writeBigUInt64LE(BigInt.asUintN(64, v), 8 * i));
  return b;
}
