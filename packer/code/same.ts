/**
 * "Is this function of one build the same code as that function of the
 * other?", answered once per pair of functions for both directions: in
 * place without decoding when the builds are laid out alike (inplace.ts),
 * else by walking both at the same address (compare.ts sameInPlace) or,
 * where they moved, in step (compare.ts sameDigest: the answer comparing
 * their digests gives, without digesting either). Digests (compare.ts
 * fingerprint) are made only where functions are matched by content, as a
 * multiset (match.ts).
 */
import type { Build, FunctionInfo } from '../model.js';
import { fingerprint, sameDigest, sameInPlace } from './compare.js';
import { inPlace } from './inplace.js';

/** Digests are per build and shared by both directions. */
const fingerprints = new WeakMap<Build, Map<number, string>>();

export function fingerprintOf(b: Build, f: FunctionInfo): string {
  let m = fingerprints.get(b);
  if (!m) fingerprints.set(b, (m = new Map()));
  let fp = m.get(f.start);
  if (fp === undefined) m.set(f.start, (fp = fingerprint({ build: b, start: f.start, end: f.end })));
  return fp;
}

export type Same = (a: FunctionInfo, b: FunctionInfo) => boolean;

/**
 * Answers are symmetric and shared by both directions: kept by the function
 * of the build whose sha256 sorts first, with its counterpart (nearly always
 * one).
 */
const answers = new WeakMap<FunctionInfo, Array<[FunctionInfo, boolean]>>();

/** Whether a function of `from` and one of `to` are the same code. */
export function sameCode(from: Build, to: Build): Same {
  const flip = to.sha256 < from.sha256;
  const [x, y] = flip ? [to, from] : [from, to];
  const place = inPlace(x, y);
  return (a, b) => {
    // Laid out alike, most functions are cleared without decoding (inplace.ts), which needs no memo.
    if (place && a.start === b.start && a.end === b.end && place.codeUnchanged(a.start, a.end)) return true;
    const fx = flip ? b : a;
    const fy = flip ? a : b;
    let known = answers.get(fx);
    if (!known) answers.set(fx, (known = []));
    for (const [other, answer] of known) if (other === fy) return answer;
    const rx = { build: x, start: fx.start, end: fx.end };
    const ry = { build: y, start: fy.start, end: fy.end };
    const answer = sameInPlace(rx, ry) ?? sameDigest(rx, ry);
    known.push([fy, answer]);
    return answer;
  };
}
