/**
 * Callers that must not be running at the switch because of gcc's -fipa-ra.
 *
 * When a function binds locally (static, hidden, or called directly rather
 * than through the PLT), gcc lets its callers keep values in call-clobbered
 * registers across a call to it, as long as the callee's code (and what it
 * calls) does not write them. The switch puts a jump at the entry of every
 * changed function of the outgoing build to its counterpart. A thread that
 * is inside an outgoing function at that moment (running it, or with a frame
 * of it deeper in its stack) keeps running the old code, and its next
 * `call f` reaches the *incoming* f: when that f writes a register the old
 * caller keeps live across the call, the caller reads garbage.
 *
 * Per direct call site of the outgoing build, the check is
 *
 *     live after the call ∩ (what f clobbers after the switch − what it clobbered before)
 *
 * where "after the switch" follows redirected entries into the incoming
 * build, transitively (an unchanged g calling a changed f clobbers more
 * too). Only outgoing functions whose code differs from the incoming build
 * (changed ones, and those without a counterpart) are checked: a function
 * whose code is the same in both builds keeps exactly the registers its
 * incoming copy keeps, and the incoming build's compiler made everything
 * that copy calls respect them.
 *
 * The listed functions need an activeness condition: no thread inside them
 * at the switch. Revert is the same question with the roles swapped.
 */
import { Flow } from '../../elf/x86/decode.js';
import type { Build, FunctionInfo } from '../model.js';
import { callGraphOf, clobbersOf, lazyClobbersOf, transitiveClobbers, type CallGraph } from './clobbers.js';
import { functionCodeOf } from './function-code.js';
import { instructionsOf } from './align.js';
import { liveness } from './liveness.js';
import type { FunctionPair, Matching } from './match.js';
import { programOf } from './program.js';
import { CALL_CLOBBERED, regNames } from '../../elf/x86/registers.js';

export interface HazardRange {
  /** The label of the build the range is in ('old' for apply, 'new' for revert). */
  build: string;
  start: number;
  end: number;
  /** The function's name when it has one. */
  name?: string;
  /** The first call site that makes it a hazard, in words ("calls f at 0x1127 with rcx live, which the new f writes"). */
  reason: string;
}

export interface InFlightHazards {
  /** Functions of the old build that no thread may be inside when the new build is switched in. */
  apply: HazardRange[];
  /** Functions of the new build that no thread may be inside when the old build is switched back in. */
  revert: HazardRange[];
}

/**
 * The hazards of both directions for the pair `matching` describes
 * (matchFunctions(oldBuild, newBuild): `a` in the old build, `b` in the new).
 */
export function inFlightHazards(oldBuild: Build, newBuild: Build, matching: Matching): InFlightHazards {
  return {
    apply: hazards(oldBuild, newBuild, matching.pairs, matching.onlyA, 'a'),
    revert: hazards(newBuild, oldBuild, matching.pairs, matching.onlyB, 'b'),
  };
}

/**
 * One direction: the functions of `from` that no thread may be inside when
 * `to` is switched in, for `matching` = matchFunctions(from, to) (the
 * packer's analyzePair runs once per direction with exactly these).
 */
export function inFlightCallers(from: Build, to: Build, matching: Matching): HazardRange[] {
  return hazards(from, to, matching.pairs, matching.onlyA, 'a');
}

const named = (f: FunctionInfo) => (f.name === undefined ? {} : { name: f.name });

const indexes = new WeakMap<Build, Map<FunctionInfo, number>>();

/**
 * Each function's position in build.functions(): a search by start when its functions are sorted
 * (function-code.ts), else a map made once per build (both directions ask for both builds').
 */
function functionIndex(build: Build): (f: FunctionInfo) => number | undefined {
  const code = functionCodeOf(build);
  if (code) {
    return (f) => {
      const i = code.indexOf(f);
      return i < 0 ? undefined : i;
    };
  }
  let m = indexes.get(build);
  if (!m) indexes.set(build, (m = new Map(build.functions().map((f, i) => [f, i]))));
  const map = m;
  return (f) => map.get(f);
}

/** The outgoing build's functions to keep threads out of, when `incoming` is switched in. */
function hazards(
  outgoing: Build,
  incoming: Build,
  pairs: FunctionPair[],
  unpaired: FunctionInfo[],
  side: 'a' | 'b',
): HazardRange[] {
  const other = side === 'a' ? 'b' : 'a';
  // The same arrays programOf's tables index: nothing is decoded before it is known to be needed.
  const indexOut = functionIndex(outgoing);
  const indexInc = functionIndex(incoming);

  // Entry redirects: every changed pair, outgoing function -> incoming counterpart.
  const redirect = new Map<number, number>();
  const checked = new Set<number>();
  for (const p of pairs) {
    if (p.same) continue;
    const f = indexOut(p[side]);
    if (f === undefined) continue;
    checked.add(f);
    const g = indexInc(p[other]);
    if (g !== undefined) redirect.set(f, g);
  }
  for (const f of unpaired) {
    const i = indexOut(f);
    if (i !== undefined) checked.add(i);
  }
  if (redirect.size === 0) return [];

  // The common case first, from the functions the redirected ones and their counterparts reach alone:
  // when no counterpart clobbers more than the function it replaces, nothing can clobber more after the
  // switch (the redirected entries only ever take the place of larger sets).
  // What callers were compiled against is at least what the code surely writes (a lower bound); what a
  // call may write after the switch is at most what the code may write (an upper bound). Guesses (unknown
  // instructions, unfollowed jumps) then count against the switch, never for it.
  const lazyBefore = lazyClobbersOf(outgoing, true);
  const lazyIncoming = lazyClobbersOf(incoming);
  if (lazyBefore && lazyIncoming) {
    // The layout check decoded every changed function of both builds already (align.ts memoises them).
    const codeOut = functionCodeOf(outgoing)!;
    const codeInc = functionCodeOf(incoming)!;
    const fnsOut = outgoing.functions();
    const fnsInc = incoming.functions();
    for (const [f, g] of redirect) {
      const a = fnsOut[f]!;
      const b = fnsInc[g]!;
      codeOut.decodedElsewhere(f, () => instructionsOf(outgoing, a.start, a.end));
      codeInc.decodedElsewhere(g, () => instructionsOf(incoming, b.start, b.end));
    }
    // The cheaper set first: a function whose callers already assume every call-clobbered register
    // lost (most of them: they call into another object) needs its counterpart's set not at all.
    let grows = false;
    for (const [f, g] of redirect) {
      const kept = CALL_CLOBBERED & ~lazyBefore(f);
      if (kept !== 0 && (lazyIncoming(g) & kept) !== 0) {
        grows = true;
        break;
      }
    }
    if (!grows) return [];
  }

  const out = programOf(outgoing);
  const inc = programOf(incoming);
  const before = clobbersOf(out, true);
  const incClobbers = clobbersOf(inc);
  // When no counterpart clobbers more than the function it replaces, nothing can clobber more after the
  // switch (the redirected entries only ever take the place of larger sets): the common case, decided
  // without the transitive sets after the switch.
  let counterpartGrows = false;
  for (const [f, g] of redirect) if (incClobbers[g]! & ~before[f]! & CALL_CLOBBERED) counterpartGrows = true;
  if (!counterpartGrows) return [];
  const after = transitiveClobbers(callGraphOf(out), (f) => {
    const g = redirect.get(f);
    return g === undefined ? undefined : incClobbers[g]!;
  });
  // What a call of f clobbers across the switch: a call made after it enters the counterpart when f's
  // entry is redirected; one in progress (a thread inside the old f) finishes the old f, whose own calls
  // reach new code.
  const entering = (f: number) => {
    const g = redirect.get(f);
    return g === undefined ? after[f]! : incClobbers[g]! | after[f]!;
  };
  // Only a function that reaches a redirected entry can clobber more after the switch: for any other the
  // code is the same before and after, whatever the bounds say of it.
  const affected = reachingAny(callGraphOf(out), [...redirect.keys()]);
  const more = (f: number) => (affected[f] ? entering(f) & ~before[f]! & CALL_CLOBBERED : 0);
  // Nothing clobbers more after the switch (the common case): no caller can be at risk, decoded or not.
  let grows = false;
  for (let f = 0; f < out.functions.length && !grows; f++) grows = more(f) !== 0;
  if (!grows) return [];
  // Call sites whose callee clobbers more after the switch, first: liveness (the costly part) only when there are some.
  const sites: number[] = [];
  const result: HazardRange[] = [];
  for (const h of [...checked].sort((x, y) => x - y)) {
    const fn = out.functions[h]!;
    if (!out.decoded[h]) {
      // Its call sites are not known: it may be such a caller.
      result.push({
        build: outgoing.label,
        start: fn.start,
        end: fn.end,
        ...named(fn),
        reason: 'its code could not be decoded, so the registers it keeps across calls are not known',
      });
      continue;
    }
    for (let i = out.first[h]!; i < out.last[h]!; i++) {
      const f = out.callee[i]!;
      if (out.flow[i] === Flow.Call && f >= 0 && more(f)) sites.push(i);
    }
  }
  if (sites.length === 0) return result;
  const live = liveness(out, before);
  let last = -1;
  for (const i of sites) {
    const h = out.fn[i]!;
    if (h === last) continue; // one reason per function
    const f = out.callee[i]!;
    const n = out.next[i]!;
    const hit = (n >= 0 ? live[n]! : 0) & more(f);
    if (hit === 0) continue;
    last = h;
    const fn = out.functions[h]!;
    const callee = out.functions[f]!;
    const calleeName = callee.name ?? `0x${callee.start.toString(16)}`;
    const why = redirect.has(f)
      ? `the ${incoming.label} ${calleeName} writes`
      : `${calleeName} reaches ${incoming.label} code that writes`;
    result.push({
      build: outgoing.label,
      start: fn.start,
      end: fn.end,
      ...named(fn),
      reason: `calls ${calleeName} at 0x${out.addr[i]!.toString(16)} with ${regNames(hit).join(', ')} live across the call, which ${why}`,
    });
  }
  result.sort((x, y) => x.start - y.start);
  return result;
}

/** Per function: whether its code reaches (calls or jumps into, transitively) one of `targets`, or is one. */
function reachingAny(graph: CallGraph, targets: readonly number[]): Uint8Array {
  const n = graph.own.length;
  const callers: number[][] = Array.from({ length: n }, () => []);
  for (let f = 0; f < n; f++) for (const g of graph.reaches[f]!) callers[g]!.push(f);
  const hit = new Uint8Array(n);
  const work = [...targets];
  for (const t of targets) hit[t] = 1;
  while (work.length > 0)
    for (const f of callers[work.pop()!]!)
      if (!hit[f]) {
        hit[f] = 1;
        work.push(f);
      }
  return hit;
}
