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
 * Whether a function of `from` and one of `to` are the same code. Each pair
 * is asked once: the matching that asks (match.ts) is made once per pair of
 * builds and flipped for the other direction, so answers are not kept (a
 * memo per function cost more than the answers it never gave again).
 * Functions are walked from the build whose sha256 sorts first, so both
 * directions would decode the same side.
 */
export function sameCode(from: Build, to: Build): Same {
  const flip = to.sha256 < from.sha256;
  const [x, y] = flip ? [to, from] : [from, to];
  const place = inPlace(x, y);
  return (a, b) => {
    // Laid out alike, most functions are cleared without decoding (inplace.ts).
    if (place && a.start === b.start && a.end === b.end && place.codeUnchanged(a.start, a.end)) return true;
    const fx = flip ? b : a;
    const fy = flip ? a : b;
    const rx = { build: x, start: fx.start, end: fx.end };
    const ry = { build: y, start: fy.start, end: fy.end };
    return sameInPlace(rx, ry) ?? sameDigest(rx, ry);
  };
}
