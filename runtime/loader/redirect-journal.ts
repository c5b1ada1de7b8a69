/**
 * The journal of a library's entry redirects, kept in the process (state
 * lives in the process): a private read-only mapping of a memfd named
 * `ulp:redirects:<soname>`, written from the tracer inside the switch's
 * pause. It holds what a later trigger (a revert, a stacked patch, --status)
 * cannot learn from memory alone: the original bytes under every jump, which
 * functions of which builds are counterparts (the bundles' pairs, kept across
 * switches so that a revert in any order still knows them), and which old
 * functions stay reachable without a redirect, and why.
 *
 * Private, not shared: a child of a fork inherits the redirected code pages
 * and a copy of the journal that describes them; a trigger run on the child
 * later changes the child's copy only.
 *
 * Every switch writes a new journal with the next generation and unmaps the
 * older ones after the pause; a reader takes the highest generation. A jump
 * is active only while the code still holds its written bytes, so a journal
 * written by a switch that was killed before its code writes still reads
 * true.
 */
import { z } from 'zod';
import type { Mapping } from '../maps.js';
import { journalMemfdName, memfdNameOfPath } from '../memfd-names.js';
import type { RemoteMemory } from '../memory.js';

const HEX = /^0x[0-9a-f]+$/;
const Hex = z.string().regex(HEX);
const Bytes = z.string().regex(/^[0-9a-f]*$/);

/** A function of one build, in link-time vaddrs. */
export const FnSchema = z.object({ build: z.string(), start: Hex, end: Hex, name: z.string().optional() });
export type Fn = z.infer<typeof FnSchema>;

export const JournalSchema = z.object({
  format: z.literal(1),
  soname: z.string(),
  generation: z.number().int().nonnegative(),
  /** The build the switch that wrote this journal made live. */
  live: z.string(),
  /** Counterparts: every pair of every bundle step switched in this process. */
  pairs: z.array(z.object({ a: FnSchema, b: FnSchema })),
  /** Functions a bundle step named as changed or removed without a counterpart. */
  unpaired: z.array(FnSchema),
  /** Jumps written: at (runtime address) the bytes `written` replace `original`. */
  redirects: z.array(z.object({ at: Hex, original: Bytes, written: Bytes, from: FnSchema, to: FnSchema })),
  /** Functions of builds that are not live which no jump covers, with the reason. */
  uncovered: z.array(z.object({ fn: FnSchema, reason: z.string() })),
});
export type Journal = z.infer<typeof JournalSchema>;

const MAGIC = Buffer.from('ULPREDIR');
const HEADER = 16;

/** The memfd mappings holding journals of `soname`. */
export function journalMappings(maps: readonly Mapping[], soname: string): Mapping[] {
  const name = journalMemfdName(soname); // cut to the length memfd_create accepts, as when it was made
  return maps.filter((m) => m.offset === 0n && memfdNameOfPath(m.path) === name);
}

export function encodeJournal(j: Journal): Buffer {
  const body = Buffer.from(JSON.stringify(j));
  const head = Buffer.alloc(HEADER);
  MAGIC.copy(head, 0);
  head.writeUInt32LE(body.length, 8);
  return Buffer.concat([head, body]);
}

/** Size of the mapping a journal of `bytes` needs, in whole pages. */
export function journalMapSize(bytes: number): number {
  return Math.ceil(bytes / 4096) * 4096;
}

export function decodeJournal(
  read: (addr: bigint, n: number) => Buffer | undefined,
  addr: bigint,
  mapped: number,
): Journal | undefined {
  const head = read(addr, HEADER);
  if (!head || !head.subarray(0, 8).equals(MAGIC)) return undefined;
  const len = head.readUInt32LE(8);
  if (len === 0 || HEADER + len > mapped) return undefined;
  const body = read(addr + BigInt(HEADER), len);
  if (!body) return undefined;
  try {
    const parsed = JournalSchema.safeParse(JSON.parse(body.toString('utf8')));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

export interface JournalFound {
  journal: Journal | undefined;
  /** Every journal mapping of the library, the current one included: the switch unmaps the others. */
  mappings: Mapping[];
}

/** The library's newest journal in the process, if any. */
export function readJournal(mem: RemoteMemory, maps: readonly Mapping[], soname: string): JournalFound {
  const mappings = journalMappings(maps, soname);
  let best: Journal | undefined;
  for (const m of mappings) {
    const j = decodeJournal((a, n) => mem.tryRead(a, n), m.start, Number(m.end - m.start));
    if (j && j.soname === soname && (!best || j.generation > best.generation)) best = j;
  }
  return { journal: best, mappings };
}

export const fnKey = (f: Pick<Fn, 'build' | 'start'>): string => `${f.build}:${f.start}`;
