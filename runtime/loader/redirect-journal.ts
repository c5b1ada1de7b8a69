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
 * Every switch writes a journal with the next generation, into a mapping
 * that does not hold the newest one (journalPlacement: the spare, or a new
 * mapping), and unmaps any third one after the pause; a reader takes the
 * highest generation. A jump
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
  const parsed = JournalSchema.safeParse(journalJson(read, addr, mapped));
  return parsed.success ? parsed.data : undefined;
}

/** The JSON a journal mapping holds, not yet checked against the schema; undefined without a journal. */
function journalJson(
  read: (addr: bigint, n: number) => Buffer | undefined,
  addr: bigint,
  mapped: number,
): unknown {
  const head = read(addr, HEADER);
  if (!head || !head.subarray(0, 8).equals(MAGIC)) return undefined;
  const len = head.readUInt32LE(8);
  if (len === 0 || HEADER + len > mapped) return undefined;
  const body = read(addr + BigInt(HEADER), len);
  if (!body) return undefined;
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    return undefined;
  }
}

export interface JournalFound {
  journal: Journal | undefined;
  /** Every journal mapping of the library, the current one included (journalPlacement decides which stay). */
  mappings: Mapping[];
  /** The mapping that holds `journal`. */
  current?: Mapping | undefined;
}

/** The library's newest journal in the process, if any. */
export function readJournal(mem: RemoteMemory, maps: readonly Mapping[], soname: string): JournalFound {
  const mappings = journalMappings(maps, soname);
  // Newest first, each checked against the schema only until one passes (the spare holds an older one).
  const found = mappings
    .map((m) => ({ m, json: journalJson((a, n) => mem.tryRead(a, n), m.start, Number(m.end - m.start)) }))
    .map(({ m, json }) => ({
      m,
      json,
      generation: (json as { generation?: unknown } | undefined)?.generation,
    }))
    .filter((x) => typeof x.generation === 'number')
    .sort((a, b) => (b.generation as number) - (a.generation as number));
  for (const { m, json } of found) {
    const parsed = JournalSchema.safeParse(json);
    if (parsed.success && parsed.data.soname === soname)
      return { journal: parsed.data, mappings, current: m };
  }
  return { journal: undefined, mappings, current: undefined };
}

/**
 * Where a switch writes its journal of `bytes` bytes, and which journal
 * mappings go after it. A mapping that does not hold the newest journal (the
 * spare the first switch maps beside its own, or one an earlier switch
 * superseded) and is large enough is written over in the pause: the switch
 * then needs no remote system call for its journal, and none to drop one.
 * The newest journal stays untouched until the next one is written, and is
 * the spare from then on; any other mapping is dropped. Without a mapping
 * to reuse, a new one is made (`spare`: with a second mapping of the same
 * memfd, when no journal is there to become the spare). A switch that fails
 * drops the mapping it wrote (switch-library.ts), so no reader takes a
 * journal of a switch that did not happen.
 */
export function journalPlacement(
  found: Pick<JournalFound, 'mappings' | 'current'>,
  bytes: number,
): { reuse: Mapping | undefined; drop: Mapping[]; spare: boolean } {
  const size = journalMapSize(bytes);
  const reuse = found.mappings.find((m) => m !== found.current && m.end - m.start >= BigInt(size));
  return {
    reuse,
    drop: found.mappings.filter((m) => m !== reuse && m !== found.current),
    spare: reuse === undefined && found.current === undefined,
  };
}

export const fnKey = (f: Pick<Fn, 'build' | 'start'>): string => `${f.build}:${f.start}`;
