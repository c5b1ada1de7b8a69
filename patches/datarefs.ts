/**
 * The data-reference map of a build as the bundle stores it (docs/BUNDLE.md,
 * "datarefs"). Thousands of sites for a library like libcrypto: each list is
 * a base64 string of unsigned LEB128 numbers, sites sorted and stored as
 * deltas, so a map costs a few bytes per site and is deterministic.
 *
 *   code:  per site: delta of the disp32 field's vaddr, (instruction end - field - 4), region offset
 *   words: per site: delta of the word's vaddr, relocation type, region offset
 */
import { z } from 'zod';
import { UlpError } from '../common/errors.js';
import { HexSchema } from './report.js';
import { hex, parseHex } from './hex.js';

export interface CodeRef {
  /** Link-time vaddr of the disp32 field. */
  site: number;
  /** Link-time vaddr of the end of its instruction (what RIP holds when the operand is computed). */
  end: number;
  /** Region offset it refers to. */
  offset: number;
}

export interface WordRef {
  /** Link-time vaddr of the relocated word (outside the region). */
  site: number;
  /** Region offset its value refers to once relocated. */
  offset: number;
  type: number;
}

export interface CoverageRange {
  start: number;
  end: number;
  reason: string;
}

export interface Coverage {
  /** Bytes of the executable sections (or PF_X segments when there are no section headers). */
  executable: number;
  /** Decoded as instructions: functions, stub sections, code reached from them. */
  decoded: number;
  /** nop/int3/zero runs between functions. */
  padding: number;
  /** Not decoded, but no RIP-relative operand in them can refer to the region. */
  scanned: number;
  /** Tables inside the code: addressed as data by decoded code, never entered. */
  tables: number;
  /** Ranges the map may miss references from; empty when coverage is proven. */
  uncovered: CoverageRange[];
  /** Ranges accounted for without decoding them, with the reason. */
  accounted: CoverageRange[];
}

export interface DataRefs {
  /** The build's writable region, [start, end) link-time vaddrs. */
  region: { start: number; end: number };
  code: CodeRef[];
  words: WordRef[];
  /** Relocations inside the region itself: the shared pages already hold canonical values there. */
  sharedWords: number;
  coverage: Coverage;
}

const RangeSchema = z.object({ start: HexSchema, end: HexSchema, reason: z.string() });
const PackedSchema = z.object({
  count: z.number().int().nonnegative(),
  packed: z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/, 'expected base64'),
});

export const DataRefsSchema = z
  .object({
    region: z.object({ start: HexSchema, end: HexSchema }),
    code: PackedSchema,
    words: PackedSchema,
    sharedWords: z.number().int().nonnegative(),
    coverage: z.object({
      /** True when `uncovered` is empty: every executable byte is decoded, padding or accounted for. */
      proven: z.boolean(),
      executable: z.number().int().nonnegative(),
      decoded: z.number().int().nonnegative(),
      padding: z.number().int().nonnegative(),
      scanned: z.number().int().nonnegative(),
      tables: z.number().int().nonnegative(),
      uncovered: z.array(RangeSchema),
      accounted: z.array(RangeSchema),
    }),
  })
  .refine(
    (m) => m.coverage.proven === (m.coverage.uncovered.length === 0),
    'coverage.proven disagrees with coverage.uncovered',
  );
export type StoredDataRefs = z.infer<typeof DataRefsSchema>;

/** One map per build: `old` for a revert that stages the old build, `new` for the patch. */
export const BundleDataRefsSchema = z.object({
  old: DataRefsSchema.nullable(),
  new: DataRefsSchema.nullable(),
});
export type BundleDataRefs = z.infer<typeof BundleDataRefsSchema>;

function uleb(out: number[], v: number): void {
  if (!Number.isSafeInteger(v) || v < 0) throw new Error(`datarefs: cannot encode ${v}`);
  do {
    let byte = v % 128;
    v = Math.floor(v / 128);
    if (v > 0) byte |= 0x80;
    out.push(byte);
  } while (v > 0);
}

class Reader {
  private pos = 0;
  constructor(private readonly buf: Buffer) {}
  get done(): boolean {
    return this.pos >= this.buf.length;
  }
  uleb(): number {
    let v = 0;
    let scale = 1;
    for (;;) {
      if (this.pos >= this.buf.length) throw bad('a number runs past the end of the list');
      const b = this.buf[this.pos++]!;
      v += (b & 0x7f) * scale;
      if (!Number.isSafeInteger(v)) throw bad('a number is too large');
      if ((b & 0x80) === 0) return v;
      scale *= 128;
    }
  }
}

function bad(why: string): UlpError {
  return new UlpError(
    'BUNDLE_MANIFEST_INVALID',
    `the bundle's data-reference map is damaged: ${why}`,
    'The bundle is damaged or was not written by ulp-pack; rebuild it.',
  );
}

export function encodeDataRefs(m: DataRefs): StoredDataRefs {
  const code: number[] = [];
  let prev = 0;
  for (const r of [...m.code].sort((a, b) => a.site - b.site)) {
    uleb(code, r.site - prev);
    uleb(code, r.end - r.site - 4);
    uleb(code, r.offset);
    prev = r.site;
  }
  const words: number[] = [];
  prev = 0;
  for (const r of [...m.words].sort((a, b) => a.site - b.site)) {
    uleb(words, r.site - prev);
    uleb(words, r.type);
    uleb(words, r.offset);
    prev = r.site;
  }
  const range = (r: CoverageRange) => ({
    start: hex(BigInt(r.start)),
    end: hex(BigInt(r.end)),
    reason: r.reason,
  });
  const c = m.coverage;
  return {
    region: { start: hex(BigInt(m.region.start)), end: hex(BigInt(m.region.end)) },
    code: { count: m.code.length, packed: Buffer.from(code).toString('base64') },
    words: { count: m.words.length, packed: Buffer.from(words).toString('base64') },
    sharedWords: m.sharedWords,
    coverage: {
      proven: c.uncovered.length === 0,
      executable: c.executable,
      decoded: c.decoded,
      padding: c.padding,
      scanned: c.scanned,
      tables: c.tables,
      uncovered: c.uncovered.map(range),
      accounted: c.accounted.map(range),
    },
  };
}

/** Unpacks a stored map; refuses one whose lists do not decode to their counts or leave the region. */
export function decodeDataRefs(s: StoredDataRefs): DataRefs {
  const num = (h: string) => Number(parseHex(h));
  const region = { start: num(s.region.start), end: num(s.region.end) };
  const size = region.end - region.start;
  if (!(size > 0)) throw bad('the region is empty');
  const list = <T>(
    p: { count: number; packed: string },
    what: string,
    one: (r: Reader, prev: number) => T & { site: number },
  ): T[] => {
    const r = new Reader(Buffer.from(p.packed, 'base64'));
    const out: T[] = [];
    let prev = 0;
    while (!r.done) {
      const x = one(r, prev);
      prev = x.site;
      out.push(x);
    }
    if (out.length !== p.count) throw bad(`the ${what} list holds ${out.length} sites, not ${p.count}`);
    return out;
  };
  const offset = (r: Reader) => {
    const o = r.uleb();
    if (o >= size) throw bad(`offset 0x${o.toString(16)} lies outside the region`);
    return o;
  };
  const code = list<CodeRef>(s.code, 'code', (r, prev) => {
    const site = prev + r.uleb();
    const end = site + 4 + r.uleb();
    return { site, end, offset: offset(r) };
  });
  const words = list<WordRef>(s.words, 'word', (r, prev) => {
    const site = prev + r.uleb();
    const type = r.uleb();
    return { site, type, offset: offset(r) };
  });
  const range = (x: { start: string; end: string; reason: string }) => ({
    start: num(x.start),
    end: num(x.end),
    reason: x.reason,
  });
  const c = s.coverage;
  return {
    region,
    code,
    words,
    sharedWords: s.sharedWords,
    coverage: {
      executable: c.executable,
      decoded: c.decoded,
      padding: c.padding,
      scanned: c.scanned,
      tables: c.tables,
      uncovered: c.uncovered.map(range),
      accounted: c.accounted.map(range),
    },
  };
}
