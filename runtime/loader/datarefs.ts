/**
 * One address per datum. A staged build's code reaches the library's
 * writable data through RIP-relative operands (`lea head(%rip)`); left
 * alone, they would address the staged build's own mapping of the shared
 * data: the same bytes under a second address. Pointer comparisons against
 * what the program stored earlier (a list sentinel, an object handed out)
 * would fail, and a futex wake through one address never reaches a thread
 * that sleeps on the other (glibc's private futexes are keyed by address).
 *
 * So before the build's bytes go into its memfd, every disp32 the bundle's
 * data-reference map lists is rewritten to reach the canonical build's copy
 * of the same datum. disp32 reaches ±2 GiB: the build must be mapped close
 * enough to the canonical region, which baseNear chooses. Relocated words
 * are done by the relocation plan (relocate.ts: data in the region keeps
 * its canonical address). Pure: bytes and numbers in, bytes and numbers out.
 */
import { UlpError } from '../../common/errors.js';
import { pageAlignDown, pageAlignUp, PF_X, type ElfObject } from '../../elf/index.js';
import type { Mapping } from '../maps.js';

export interface CodeDataRef {
  /** Link-time vaddr of the disp32 field. */
  site: number;
  /** Link-time vaddr of the end of its instruction. */
  end: number;
  /** Offset into the writable region it refers to. */
  offset: number;
}

/** The part of a bundle's map the stage needs, for the build being staged. */
export interface StagedDataRefs {
  /** The build's own writable region, link-time vaddrs. */
  region: { start: number; end: number };
  code: readonly CodeDataRef[];
}

const I32_MIN = -(2 ** 31);
const I32_MAX = 2 ** 31 - 1;

/** The lowest address a mapping may take (vm.mmap_min_addr's usual value), and the top of user space. */
const LOW = 0x10000n;
const HIGH = 0x7ffffffff000n;
/** Kept free below the stack: its growth up to the usual limits and the kernel's guard gap. */
const STACK_ROOM = 256n << 20n;

/**
 * The range of biases (runtime address = bias + link-time vaddr) at which
 * every listed displacement reaches the canonical region; undefined when
 * the map has no code site (any base will do).
 */
export function biasWindow(
  refs: StagedDataRefs,
  canonicalRegion: bigint,
): { min: bigint; max: bigint } | undefined {
  if (refs.code.length === 0) return undefined;
  // new disp = canonicalRegion + offset - (bias + end): keep it within int32 for every site.
  let lo = Infinity;
  let hi = -Infinity;
  for (const r of refs.code) {
    const d = r.offset - r.end;
    if (d < lo) lo = d;
    if (d > hi) hi = d;
  }
  return {
    min: canonicalRegion + BigInt(hi) - BigInt(I32_MAX),
    max: canonicalRegion + BigInt(lo) - BigInt(I32_MIN),
  };
}

/**
 * A page-aligned start for a reservation of `length` bytes that places the
 * image (link-time span starting at `spanStart`) inside `window`, in a hole
 * of the address space as `maps` shows it, as close to `near` as possible.
 * The lower half of the hole above the heap (brk grows there) and 256 MiB
 * below the stack stay free. Undefined when no hole fits.
 */
export function baseNear(
  maps: readonly Mapping[],
  length: bigint,
  spanStart: bigint,
  window: { min: bigint; max: bigint },
  near: bigint,
): bigint | undefined {
  const sorted = [...maps].filter((m) => m.end <= HIGH).sort((a, b) => (a.start < b.start ? -1 : 1));
  const holes: Array<[bigint, bigint]> = [];
  let prev: Mapping | undefined;
  for (const m of [...sorted, undefined]) {
    let start = prev ? prev.end : LOW;
    let end = m ? m.start : HIGH;
    // Leave room for the heap to grow (brk) and for the stack and its guard gap.
    if (prev?.path === '[heap]') start += (end - start) / 2n;
    if (m?.path === '[stack]') end -= STACK_ROOM;
    if (end > start) holes.push([start, end]);
    prev = m;
  }
  // The reservation start A gives bias A - spanStart.
  const aMin = window.min + spanStart;
  const aMax = window.max + spanStart;
  let best: bigint | undefined;
  const dist = (a: bigint) => (a > near ? a - near : near - a);
  for (const [hs, he] of holes) {
    const lo = pageAlignUp(hs > aMin ? hs : aMin);
    const hi = pageAlignDown(he - length < aMax ? he - length : aMax);
    if (lo > hi) continue;
    // The closest point of [lo, hi] to `near`.
    const a = near <= lo ? lo : near >= hi ? hi : pageAlignDown(near);
    if (a < lo || a > hi) continue;
    if (best === undefined || dist(a) < dist(best)) best = a;
  }
  return best;
}

/**
 * A copy of the build's file bytes with every listed displacement pointing
 * at the canonical copy of its datum. Each site is checked against the
 * build first: the displacement found there must refer to the offset the
 * map says, inside an executable segment, or the map is not this build's.
 */
export function rewriteCode(
  bytes: Buffer,
  elf: ElfObject,
  refs: StagedDataRefs,
  bias: bigint,
  canonicalRegion: bigint,
): Buffer {
  const out = Buffer.from(bytes);
  const code = elf.loadSegments
    .filter((p) => (p.flags & PF_X) !== 0)
    .map((p) => ({ start: Number(p.vaddr), end: Number(p.vaddr + p.filesz), offset: Number(p.offset) }));
  for (const r of refs.code) {
    const seg = code.find((s) => r.site >= s.start && r.site + 4 <= s.end);
    const at = seg ? seg.offset + r.site - seg.start : -1;
    if (
      !seg ||
      r.end < r.site + 4 ||
      r.end > r.site + 15 ||
      refs.region.start + r.offset !== r.end + out.readInt32LE(at)
    ) {
      throw new UlpError(
        'LOADER_DATAREFS_MISMATCH',
        `the bundle's data-reference map does not fit the build: no RIP-relative operand at 0x${r.site.toString(16)} refers to region offset 0x${r.offset.toString(16)}`,
        'The bundle is inconsistent; rebuild it with ulp-pack.',
        { site: `0x${r.site.toString(16)}` },
      );
    }
    const disp = canonicalRegion + BigInt(r.offset) - (bias + BigInt(r.end));
    if (disp < BigInt(I32_MIN) || disp > BigInt(I32_MAX)) throw outOfReach(bias, canonicalRegion);
    out.writeInt32LE(Number(disp), at);
  }
  return out;
}

export function outOfReach(bias: bigint | undefined, canonicalRegion: bigint): UlpError {
  return new UlpError(
    'LOADER_DATAREFS_OUT_OF_REACH',
    `no free address range within ±2 GiB of the library's data at 0x${canonicalRegion.toString(16)} can hold the build${bias !== undefined ? ` (the kernel placed it at bias 0x${bias.toString(16)})` : ''}: its code could not address the live data directly`,
    'The process has mapped the address space around the library full; nothing was changed. Restart the process to update it, or pass --allow-aliasing to accept data reached through a second address.',
    { canonicalRegion: `0x${canonicalRegion.toString(16)}` },
  );
}
