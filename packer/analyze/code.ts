/**
 * code: which functions changed. Every change here is compatible (the new
 * build's code is mapped fresh); the list is what a person reviews and what
 * the trigger reports. With .symtab on both sides functions are matched by
 * name; otherwise exported functions are matched by name and the rest
 * (found through the unwind tables) by content, and counted.
 */
import type { Category, FunctionChanges } from '../../patches/index.js';
import { fingerprint, sameInPlace } from '../code/compare.js';
import { inPlace } from '../code/inplace.js';
import type { Build, FunctionInfo } from '../model.js';
import { Findings, listText, plural } from './findings.js';
import type { Pair } from './pair.js';

export interface CodeResult {
  category: Category;
  functions: FunctionChanges;
}

const hex = (n: number) => `0x${n.toString(16)}`;
const range = (f: FunctionInfo) => ({ start: hex(f.start), end: hex(f.end) });

const total = (fns: FunctionInfo[]) => ({ count: fns.length, bytes: fns.reduce((n, f) => n + (f.end - f.start), 0) });

function byName(fns: FunctionInfo[], keep: (f: FunctionInfo) => boolean): Map<string, FunctionInfo> {
  const m = new Map<string, FunctionInfo>();
  for (const f of fns) if (f.name !== undefined && keep(f) && !m.has(f.name)) m.set(f.name, f);
  return m;
}

/** Digests are per build and shared by both directions. */
const fingerprints = new WeakMap<Build, Map<number, string>>();

function fingerprintOf(b: Build, f: FunctionInfo): string {
  let m = fingerprints.get(b);
  if (!m) fingerprints.set(b, (m = new Map()));
  let fp = m.get(f.start);
  if (fp === undefined) m.set(f.start, (fp = fingerprint({ build: b, start: f.start, end: f.end })));
  return fp;
}

type Same = (a: FunctionInfo, b: FunctionInfo) => boolean;

/**
 * Answers are symmetric and shared by both directions: kept by the function
 * of the build whose sha256 sorts first, with its counterpart (nearly always
 * one).
 */
const answers = new WeakMap<FunctionInfo, Array<[FunctionInfo, boolean]>>();

/** Whether a function of `from` and one of `to` are the same code. */
function comparer(from: Build, to: Build): Same {
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
    const answer = sameInPlace({ build: x, start: fx.start, end: fx.end }, { build: y, start: fy.start, end: fy.end }) ?? fingerprintOf(x, fx) === fingerprintOf(y, fy);
    known.push([fy, answer]);
    return answer;
  };
}

export function analyzeCode(pair: Pair, onProgress?: (done: number, total: number) => void): CodeResult {
  const { from, to } = pair;
  const named = !from.stripped && !to.stripped;
  const fa = from.functions();
  const fb = to.functions();
  // Stripped builds: only exported names are reliable (dynsym); everything else is matched by content.
  const keep = named ? () => true : (f: FunctionInfo) => f.exported;
  const na = byName(fa, keep);
  const nb = byName(fb, keep);

  const same = comparer(from, to);
  const changed: string[] = [];
  const removed: string[] = [];
  // Named functions only for now; packer/code/match.ts replaces this with every matched function.
  const pairs: NonNullable<FunctionChanges['pairs']> = [];
  const unpaired: NonNullable<FunctionChanges['unpaired']> = [];
  let unchanged = 0;
  let i = 0;
  for (const [name, a] of na) {
    if (onProgress && i++ % 256 === 0) onProgress(i, na.size);
    const b = nb.get(name);
    if (!b) {
      removed.push(name);
      unpaired.push({ name, ...range(a) });
    } else if (same(a, b)) unchanged++;
    else {
      changed.push(name);
      pairs.push({ name, from: range(a), to: range(b) });
    }
  }
  const added = [...nb.keys()].filter((n) => !na.has(n));

  const functions: FunctionChanges = { named, changed, added, removed, unchanged, from: total(fa), to: total(fb), pairs, unpaired };
  const f = new Findings();
  if (!named) {
    const unnamed = (fns: FunctionInfo[], names: Map<string, FunctionInfo>) => fns.filter((x) => x.name === undefined || !names.has(x.name));
    const { unmatchedA, unmatchedB, matched } = matchByContent(from, unnamed(fa, na), to, unnamed(fb, nb), same);
    unchanged += matched;
    functions.unchanged = unchanged;
    // Until unnamed functions are paired (packer/code/match.ts), each changed one of the from-build is old code the trigger must name.
    for (const a of unmatchedA) unpaired.push(range(a));
    functions.unnamedChanged = { from: total(unmatchedA), to: total(unmatchedB) };
    if (unmatchedA.length || unmatchedB.length) {
      f.info('CODE_UNNAMED_CHANGED', `without symbols: ${plural(unmatchedA.length, 'function')} (${total(unmatchedA).bytes} bytes) of the ${from.label} build have no identical counterpart, ${plural(unmatchedB.length, 'function')} (${total(unmatchedB).bytes} bytes) of the ${to.label} build are new or changed`);
    }
  }
  if (changed.length) f.info('CODE_FUNCTION_CHANGED', `${plural(changed.length, 'function')} changed: ${listText(changed)}`, changed);
  if (added.length) f.info('CODE_FUNCTION_ADDED', `${plural(added.length, 'function')} added: ${listText(added)}`, added);
  if (removed.length) f.info('CODE_FUNCTION_REMOVED', `${plural(removed.length, 'function')} removed: ${listText(removed)}`, removed);

  const summary = named
    ? `${changed.length} changed, ${added.length} added, ${removed.length} removed, ${unchanged} unchanged`
    : `stripped: ${changed.length} exported changed, ${added.length} added, ${removed.length} removed; ${functions.unnamedChanged!.from.count} unnamed changed or removed, ${functions.unnamedChanged!.to.count} changed or added; ${unchanged} unchanged`;
  return { category: f.category(summary), functions };
}

/**
 * Unnamed functions (stripped builds) pair up by content: first in place
 * (same address, same code), then by digest, as a multiset.
 */
function matchByContent(from: Build, fa: FunctionInfo[], to: Build, fb: FunctionInfo[], same: Same): { matched: number; unmatchedA: FunctionInfo[]; unmatchedB: FunctionInfo[] } {
  const bByStart = new Map(fb.map((x) => [x.start, x]));
  const pairedB = new Set<FunctionInfo>();
  const restA: FunctionInfo[] = [];
  let matched = 0;
  for (const a of fa) {
    const b = bByStart.get(a.start);
    if (b && same(a, b)) {
      pairedB.add(b);
      matched++;
    } else restA.push(a);
  }
  const pool = new Map<string, FunctionInfo[]>();
  for (const b of fb) {
    if (pairedB.has(b)) continue;
    const fp = fingerprintOf(to, b);
    const list = pool.get(fp);
    if (list) list.push(b);
    else pool.set(fp, [b]);
  }
  const unmatchedA: FunctionInfo[] = [];
  for (const a of restA) {
    const candidates = pool.get(fingerprintOf(from, a));
    if (candidates?.length) {
      candidates.pop();
      matched++;
    } else unmatchedA.push(a);
  }
  return { matched, unmatchedA, unmatchedB: [...pool.values()].flat() };
}
