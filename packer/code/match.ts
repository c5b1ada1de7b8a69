/**
 * Which function of one build is which function of the other. The code
 * report, the layout check (analyze/layout.ts) and the trigger's entry
 * redirects all need the same answer, so it is computed here once per pair
 * of builds:
 *
 *  1. by name: every function when both builds have .symtab, else the
 *     exported ones (the only names a stripped build keeps);
 *  2. by content: the remaining unnamed functions with identical code (same.ts),
 *     in place first, then by digest as a multiset;
 *  3. by position (stripped builds' unnamed functions): between two consecutive anchors (pairs
 *     from 1 and 2, in the same order in both builds) the functions left
 *     over on each side are the same functions, changed, when they come in
 *     the same order and their instructions mostly align (align.ts); the
 *     linker keeps a source file's functions in source order, so a fix
 *     leaves its neighbours where they were.
 */
import type { Build, FunctionInfo } from '../model.js';
import { instructionsOf, shapeOverlap } from './align.js';
import { sameDigest } from './compare.js';
import { fingerprintOf, sameCode } from './same.js';

export type MatchedBy = 'name' | 'content' | 'position';

export interface FunctionPair {
  a: FunctionInfo;
  b: FunctionInfo;
  /** The same code (same.ts); pairs by content always are, pairs by position never. */
  same: boolean;
  by: MatchedBy;
}

export interface Matching {
  /** Both builds have .symtab: every function has a name. */
  named: boolean;
  pairs: FunctionPair[];
  /** Functions of `from` without a counterpart (removed, or changed beyond recognition). */
  onlyA: FunctionInfo[];
  /** Functions of `to` without a counterpart. */
  onlyB: FunctionInfo[];
}

/**
 * Share of the larger function's instructions that must have a same-shaped
 * counterpart for a pair by position. A pair is where the trigger redirects
 * old entries, so a wrong one would send calls to another function: among
 * several leftovers between two anchors the bar is high...
 */
const MIN_ALIGNED = 0.6;
/** ...and lower when each side has only that one function left between its anchors (small functions change a lot with one added check). */
const MIN_ALIGNED_ALONE = 0.3;

const memo = new WeakMap<Build, WeakMap<Build, Matching>>();

export function matchFunctions(from: Build, to: Build): Matching {
  let inner = memo.get(from);
  if (!inner) memo.set(from, (inner = new WeakMap()));
  let m = inner.get(to);
  if (!m) {
    const reverse = memo.get(to)?.get(from);
    m = reverse ? flip(reverse) : computeMatching(from, to);
    inner.set(to, m);
  }
  return m;
}

function flip(m: Matching): Matching {
  return {
    named: m.named,
    pairs: m.pairs.map((p) => ({ ...p, a: p.b, b: p.a })),
    onlyA: m.onlyB,
    onlyB: m.onlyA,
  };
}

function computeMatching(from: Build, to: Build): Matching {
  const named = !from.stripped && !to.stripped;
  const fa = from.functions();
  const fb = to.functions();
  const keep = named ? () => true : (f: FunctionInfo) => f.exported;
  const na = byName(fa, keep);
  const nb = byName(fb, keep);
  const same = sameCode(from, to);

  const pairs: FunctionPair[] = [];
  const pairedA = new Set<FunctionInfo>();
  const pairedB = new Set<FunctionInfo>();
  const pair = (a: FunctionInfo, b: FunctionInfo, isSame: boolean, by: MatchedBy) => {
    pairs.push({ a, b, same: isSame, by });
    pairedA.add(a);
    pairedB.add(b);
  };
  for (const [name, a] of na) {
    const b = nb.get(name);
    if (b) pair(a, b, same(a, b), 'name');
  }
  {
    // Functions without a name (stripped builds; PLT and assembly ranges known only from the unwind
    // table even with .symtab) pair by content. A name that exists on one side only is an added or
    // removed function, never matched by content.
    const unnamed = (fns: FunctionInfo[], names: Map<string, FunctionInfo>, paired: Set<FunctionInfo>) =>
      fns.filter((x) => !paired.has(x) && (x.name === undefined || (!named && !names.has(x.name))));
    const restA = unnamed(fa, na, pairedA);
    const restB = unnamed(fb, nb, pairedB);
    const bByStart = new Map(restB.map((x) => [x.start, x]));
    const leftA: FunctionInfo[] = [];
    for (const a of restA) {
      const b = bByStart.get(a.start);
      if (b && !pairedB.has(b) && same(a, b)) pair(a, b, true, 'content');
      else leftA.push(a);
    }
    for (const [a, b] of byContent(
      from,
      to,
      leftA,
      restB.filter((b) => !pairedB.has(b)),
    ))
      pair(a, b, true, 'content');
    // With .symtab, unnamed ranges are linker stubs and assembly without a symbol (the PLT): never guessed by position.
    if (!named) matchByPosition(from, to, fa, fb, pairs, pairedA, pairedB, pair);
  }
  pairs.sort((x, y) => x.a.start - y.a.start);
  return { named, pairs, onlyA: fa.filter((f) => !pairedA.has(f)), onlyB: fb.filter((f) => !pairedB.has(f)) };
}

/**
 * Above this many functions of one size, a size's functions are matched by
 * their digests; up to it, each leftover is walked in step with the
 * candidates of its size (a failing walk mostly stops within a few bytes).
 * The bound keeps the walks linear in the number of functions: a library
 * of thousands of same-sized stubs would otherwise walk every pair of them.
 * On libcrypto (sizes with up to 288 functions), 64 measured a little below
 * 16 and as low as no bound.
 */
export const MAX_WALKED = 64;

/**
 * Step 2 as a multiset: each function of `left` (in order) takes the first
 * function of `pool` (in order) not taken yet whose digest equals its own
 * (same.ts fingerprintOf). The digest counts the size, so only functions of
 * one size can match; where a size has few, they are compared in step
 * (compare.ts sameDigest: the digests' answer without digesting either),
 * which takes the same function as the digests would.
 */
export function byContent(
  from: Build,
  to: Build,
  left: readonly FunctionInfo[],
  pool: readonly FunctionInfo[],
): Array<[FunctionInfo, FunctionInfo]> {
  const bySize = new Map<number, FunctionInfo[]>();
  for (const b of pool) {
    const list = bySize.get(b.end - b.start);
    if (list) list.push(b);
    else bySize.set(b.end - b.start, [b]);
  }
  const digested = new Map<number, Map<string, FunctionInfo[]>>();
  const out: Array<[FunctionInfo, FunctionInfo]> = [];
  for (const a of left) {
    const size = a.end - a.start;
    const list = bySize.get(size);
    if (!list) continue;
    let b: FunctionInfo | undefined;
    // A size's list changes only when walked, and only gets shorter: each size keeps one way.
    if (list.length > MAX_WALKED) {
      let byDigest = digested.get(size);
      if (!byDigest) {
        digested.set(size, (byDigest = new Map()));
        for (const x of list) {
          const fp = fingerprintOf(to, x);
          const same = byDigest.get(fp);
          if (same) same.push(x);
          else byDigest.set(fp, [x]);
        }
      }
      b = byDigest.get(fingerprintOf(from, a))?.shift();
    } else {
      const ra = { build: from, start: a.start, end: a.end };
      const i = list.findIndex((x) => sameDigest(ra, { build: to, start: x.start, end: x.end }));
      if (i >= 0) b = list.splice(i, 1)[0];
    }
    if (b) out.push([a, b]);
  }
  return out;
}

function byName(fns: FunctionInfo[], keep: (f: FunctionInfo) => boolean): Map<string, FunctionInfo> {
  const m = new Map<string, FunctionInfo>();
  for (const f of fns) if (f.name !== undefined && keep(f) && !m.has(f.name)) m.set(f.name, f);
  return m;
}

/**
 * Step 3: anchors are the pairs so far that keep their order (the longest
 * chain increasing in both builds); each gap between two anchors pairs its
 * leftovers in order, when their code mostly aligns.
 */
function matchByPosition(
  from: Build,
  to: Build,
  fa: FunctionInfo[],
  fb: FunctionInfo[],
  pairs: FunctionPair[],
  pairedA: Set<FunctionInfo>,
  pairedB: Set<FunctionInfo>,
  pair: (a: FunctionInfo, b: FunctionInfo, same: boolean, by: MatchedBy) => void,
): void {
  const anchors = increasingChain([...pairs].sort((x, y) => x.a.start - y.a.start));
  let prevA = -1;
  let prevB = -1;
  for (let k = 0; k <= anchors.length; k++) {
    // Anchors come in the order of fa and of fb (both sorted by start): each is found by walking on from the one before.
    let nextA = fa.length;
    let nextB = fb.length;
    if (k < anchors.length) {
      const anchor = anchors[k]!;
      nextA = prevA + 1;
      while (nextA < fa.length && fa[nextA] !== anchor.a) nextA++;
      nextB = prevB + 1;
      while (nextB < fb.length && fb[nextB] !== anchor.b) nextB++;
    }
    // Nearly every anchor follows the one before on both sides: no gap, nothing to copy.
    if (nextA <= prevA + 1 || nextB <= prevB + 1) {
      prevA = nextA;
      prevB = nextB;
      continue;
    }
    const gapA = fa.slice(prevA + 1, nextA).filter((f) => !pairedA.has(f));
    const gapB = fb.slice(prevB + 1, nextB).filter((f) => !pairedB.has(f));
    if (gapA.length > 0 && gapB.length > 0) {
      // In order: each leftover of `from` takes the first leftover of `to`, after the last one taken, that aligns.
      let j = 0;
      for (const a of gapA) {
        for (let t = j; t < gapB.length && t < j + 4; t++) {
          if (
            similar(
              from,
              a,
              to,
              gapB[t]!,
              gapA.length === 1 && gapB.length === 1 ? MIN_ALIGNED_ALONE : MIN_ALIGNED,
            )
          ) {
            pair(a, gapB[t]!, false, 'position');
            j = t + 1;
            break;
          }
        }
      }
    }
    prevA = nextA;
    prevB = nextB;
  }
}

/** Whether two functions are one function changed: most instructions of the larger have a counterpart of the same shape. */
function similar(from: Build, a: FunctionInfo, to: Build, b: FunctionInfo, threshold: number): boolean {
  const x = instructionsOf(from, a.start, a.end);
  const y = instructionsOf(to, b.start, b.end);
  return x !== undefined && y !== undefined && shapeOverlap(x, y) >= threshold;
}

/** The longest subsequence of pairs (sorted by a.start) whose b.start increases too (patience sorting). */
function increasingChain(sorted: FunctionPair[]): FunctionPair[] {
  const tails: number[] = [];
  /** b.start of each tail. */
  const ends: number[] = [];
  const prev = new Int32Array(sorted.length).fill(-1);
  for (let i = 0; i < sorted.length; i++) {
    const v = sorted[i]!.b.start;
    let lo = 0;
    let hi = tails.length;
    // Nearly every pair follows the last tail (most functions keep their order): no search.
    if (hi === 0 || ends[hi - 1]! < v) lo = hi;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (ends[mid]! < v) lo = mid + 1;
      else hi = mid;
    }
    if (lo > 0) prev[i] = tails[lo - 1]!;
    tails[lo] = i;
    ends[lo] = v;
  }
  const out: FunctionPair[] = [];
  for (let i = tails.length ? tails[tails.length - 1]! : -1; i >= 0; i = prev[i]!) out.push(sorted[i]!);
  return out.reverse();
}
