/**
 * The layout rule's one exception: shifted field accesses whose structure
 * lives on a stack frame (confinement.ts) threaten no object the outgoing
 * build made once no call that made one is running. The update is then
 * compatible on a condition the trigger checks at the switch, with every
 * thread stopped: no thread is inside a *creator* (a function whose frame
 * holds such a structure) of the outgoing build.
 *
 * Both builds count, whatever the direction: the outgoing code's accesses
 * must be confined (else an object it made elsewhere would reach the
 * incoming code) and so must the incoming code's (else it could be handed
 * an object the outgoing build made). Every creator of the outgoing build
 * needs an entry redirect (a changed function with a counterpart, long
 * enough for the jump): one that kept its old entry could start afresh in
 * old code after the switch and hand a new-layout helper an old-layout frame.
 */
import type { FunctionPair } from '../code/match.js';
import type { Build, FunctionInfo } from '../model.js';
import { REGISTER_NAMES } from '../../elf/x86/decode.js';
import { confinement, type Access } from './confinement.js';

/** Bytes a creator needs for its entry redirect: endbr64 and a jmp rel32, with room to spare. */
const MIN_REDIRECT = 16;

export interface StackCondition {
  /** The creators of the `from` build: no thread may be inside one at the switch. */
  functions: FunctionInfo[];
  /** The `to` build's creators (the condition of the other direction). */
  toFunctions: FunctionInfo[];
}

export type StackVerdict =
  | { confined: true; condition: StackCondition }
  | {
      confined: false;
      /** Why not, one line each: an access that is not confined, or a creator without a redirect. */
      reasons: string[];
    };

/** A shifted field access as layout.ts reports it (its FieldShift). */
export interface Shift {
  function: string;
  at: number;
  register: string;
  from: number;
}

const memo = new WeakMap<readonly Shift[], StackVerdict>();

/**
 * `fromShifts` are the accesses in the `from` build, `toShifts` the same
 * accesses in the `to` build (layout.ts's evidence and its mirror); `pairs`
 * the direction's function pairs.
 */
export function stackConfined(
  from: Build,
  to: Build,
  fromShifts: readonly Shift[],
  toShifts: readonly Shift[],
  pairs: readonly FunctionPair[],
): StackVerdict {
  const known = memo.get(fromShifts);
  if (known) return known;
  const reasons: string[] = [];
  const a = confinedSide(from, fromShifts, reasons);
  const b = confinedSide(to, toShifts, reasons);
  let verdict: StackVerdict;
  if (!a || !b) verdict = { confined: false, reasons };
  else {
    for (const c of a) {
      const p = pairs.find((x) => x.a.start === c.start);
      if (!p)
        reasons.push(`the creator ${label(c)} of the ${from.label} build has no counterpart to redirect to`);
      else if (p.same)
        reasons.push(
          `the creator ${label(c)} of the ${from.label} build is unchanged, so it gets no entry redirect`,
        );
      else if (c.end - c.start < MIN_REDIRECT)
        reasons.push(`the creator ${label(c)} of the ${from.label} build is too short for an entry redirect`);
    }
    verdict = reasons.length
      ? { confined: false, reasons }
      : { confined: true, condition: { functions: a, toFunctions: b } };
  }
  memo.set(fromShifts, verdict);
  return verdict;
}

/** Each side is decided once: the reverse direction asks about the same accesses (the evidence and its mirror). */
const sides = new WeakMap<readonly Shift[], { creators: FunctionInfo[] | undefined; reasons: string[] }>();

/** The creators of every access of `build`, or undefined (with reasons added) when some access is not confined. */
function confinedSide(build: Build, shifts: readonly Shift[], reasons: string[]): FunctionInfo[] | undefined {
  let side = sides.get(shifts);
  if (!side) {
    const own: string[] = [];
    side = { creators: decideSide(build, shifts, own), reasons: own };
    sides.set(shifts, side);
  }
  reasons.push(...side.reasons);
  return side.creators;
}

function decideSide(build: Build, shifts: readonly Shift[], reasons: string[]): FunctionInfo[] | undefined {
  const byLabel = new Map(build.functions().map((f) => [label(f), f]));
  const accesses: Access[] = [];
  for (const s of shifts) {
    const f = byLabel.get(s.function);
    const base = REGISTER_NAMES.indexOf(s.register);
    if (!f || base < 0) {
      reasons.push(`${s.function}+0x${s.at.toString(16)} in the ${build.label} build cannot be located`);
      return undefined;
    }
    accesses.push({ function: f.start, at: s.at, base });
  }
  const results = confinement(build, accesses);
  const creators = new Set<number>();
  results.forEach((r, i) => {
    const s = shifts[i]!;
    if (r.confined) for (const c of r.creators) creators.add(c);
    else
      reasons.push(
        `${s.function}+0x${s.at.toString(16)} (0x${s.from.toString(16)}(%${s.register})) in the ${build.label} build: ${r.reason}`,
      );
  });
  if (results.some((r) => !r.confined)) return undefined;
  const byStart = new Map(build.functions().map((f) => [f.start, f]));
  return [...creators].sort((x, y) => x - y).map((c) => byStart.get(c)!);
}

function label(f: FunctionInfo): string {
  return f.name ?? `0x${f.start.toString(16)}`;
}
